"""Accuracy of deformable registrations: landmark errors (TRE, rTRE) and mask overlap (Dice, Hausdorff).

Definitions (docs/explanation/deformable.md):

* **TRE** (target registration error) of a landmark ``p`` on the reference grid: the distance,
  in pixels, between where the estimated and the true field send it into the floating image,
  ``|(p + u_est(p)) - (p + u_true(p))|`` (:func:`tre`).
* **rTRE** (relative TRE, the ANHIR challenge's measure; Borovec et al., IEEE TMI 2020): the TRE
  divided by the image diagonal ``sqrt(width^2 + height^2)`` (:func:`rtre`).

  The landmark functions (:func:`landmark_grid`, :func:`tre`, :func:`rtre`, :func:`tre_summary`)
  and the mask metrics below live in :mod:`comir.deformation` (its ``landmarks`` and ``overlap``
  modules), below the stages, because the register rule scores its fields with them
  (:mod:`comir.testset.deformation`); this module gathers them under their definitions.
* **Dice** of two masks: ``2 |A and B| / (|A| + |B|)`` (:func:`dice`).
* **Hausdorff distances** between the boundaries of two masks (a boundary pixel: a mask pixel
  with a 4-neighbour outside the mask or outside the image): every boundary pixel of each mask
  gets its Euclidean distance to the nearest boundary pixel of the other (exact, by
  ``scipy.ndimage.distance_transform_edt``); :func:`hausdorff` is the largest of these distances,
  :func:`hausdorff95` their 95th percentile, pooled over both directions (as MedPy's ``hd95``),
  which ignores the farthest 5 % of the boundary (a few stray pixels).
"""

from comir.deformation.landmarks import TRE_SUMMARY_KEYS, landmark_grid, rtre, tre, tre_summary
from comir.deformation.overlap import dice, hausdorff, hausdorff95, surface_distances

__all__ = [
    "TRE_SUMMARY_KEYS",
    "dice",
    "hausdorff",
    "hausdorff95",
    "landmark_grid",
    "rtre",
    "surface_distances",
    "tre",
    "tre_summary",
]
