"""The evidence of a registration on CoMIRs, for its calibrated confidence (docs/method.md, section 15).

A registration method returns a transform whether or not it found the right one.
Its *evidence* is measured the same way for every method, on the two CoMIRs it
registered (:func:`evidence`):

* ``quality``: the Pearson correlation of the reference CoMIR and the floating
  CoMIR warped by the result, on their valid overlap, after a Gaussian blur of
  ``smooth_sigma`` px (the cascade's score);
* ``prominence``: how far ``quality`` stands above the same pair's correlation
  at ``alternatives`` seeded random rigid transforms with the same least overlap,
  in standard deviations of those, so that CoMIRs with large smooth structures
  (which correlate well at many transforms) do not pass for a match;
* ``overlap``: the fraction of the smaller image's valid pixels that overlap.

:mod:`comir.calibration` turns it into the probability of a right result.
"""

from __future__ import annotations

import math

import numpy as np

from comir.calibration import NO_EVIDENCE
from comir.register.base import fill_invalid, to_single_channel
from comir.register.fft_search import overlap_ncc


def _smoothed(image: np.ndarray, mask: np.ndarray | None, basis: np.ndarray | None, sigma: float) -> tuple:
    """One channel of ``image`` (with ``basis``; invalid pixels filled), blurred by ``sigma`` px; and its basis."""
    import cv2

    single, basis = to_single_channel(fill_invalid(np.asarray(image, dtype=np.float32), mask), basis)
    if sigma > 0:
        single = cv2.GaussianBlur(single, (0, 0), float(sigma), borderType=cv2.BORDER_REFLECT)
    return single, basis


def random_rigid(rng: np.random.Generator, shape: tuple[int, int], count: int) -> np.ndarray:
    """``count`` rigid 2x3 matrices: any rotation about the centre, translations up to half the image (px).

    Parameters
    ----------
    rng : numpy.random.Generator
        The random stream.
    shape : tuple of int
        ``(H, W)`` of the image whose centre they rotate about.
    count : int
        How many matrices.

    Returns
    -------
    numpy.ndarray
        ``(count, 2, 3)`` matrices: angles uniform in ``[0, 2 pi)``, shifts uniform in
        ``[-W/2, W/2) x [-H/2, H/2)``.
    """
    height, width = shape
    angles = rng.uniform(0, 2 * math.pi, count)
    shifts = rng.uniform(-0.5, 0.5, (count, 2)) * (width, height)
    centre = np.array([(width - 1) / 2, (height - 1) / 2])
    cos, sin = np.cos(angles), np.sin(angles)
    rotation = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], 1)  # (count, 2, 2)
    translation = centre - rotation @ centre + shifts
    return np.concatenate([rotation, translation[..., None]], axis=2)


def evidence(
    reference: np.ndarray,
    floating: np.ndarray,
    matrix: np.ndarray,
    reference_mask: np.ndarray | None = None,
    floating_mask: np.ndarray | None = None,
    smooth_sigma: float = 1.0,
    min_overlap: float = 0.25,
    alternatives: int = 32,
    seed: int = 0,
) -> dict[str, float]:
    """The evidence for ``matrix`` (floating -> reference) on two CoMIRs (module doc): quality, prominence, overlap.

    The alternatives are drawn with ``seed``, so the same inputs give the same evidence.

    Parameters
    ----------
    reference, floating : numpy.ndarray
        ``(H, W)`` or ``(H, W, C)`` float CoMIRs (the floating one is projected with the
        reference's basis).
    matrix : numpy.ndarray
        The 2x3 floating -> reference transform of the result.
    reference_mask, floating_mask : numpy.ndarray or None, optional
        Booleans of their ``(H, W)``; None: all valid. Default None.
    smooth_sigma : float, optional
        Gaussian blur (px) before the correlations. Default 1.
    min_overlap : float, optional
        Least overlap, as a fraction of the smaller image's valid pixels, of the result and of
        each alternative. Default 0.25.
    alternatives : int, optional
        Random rigid transforms the quality is compared with (:func:`random_rigid`). Default 32.
    seed : int, optional
        The alternatives' seed. Default 0.

    Returns
    -------
    dict of str to float
        ``quality``, ``prominence`` and ``overlap``; :data:`~comir.calibration.NO_EVIDENCE` when the
        result leaves less than ``min_overlap`` of overlap or a flat image.
    """
    ref, basis = _smoothed(reference, reference_mask, None, smooth_sigma)
    flo, _ = _smoothed(floating, floating_mask, basis, smooth_sigma)
    smaller = min(image.size if mask is None else int(np.count_nonzero(mask))
                  for image, mask in ((ref, reference_mask), (flo, floating_mask)))  # fmt: skip
    min_count = int(math.ceil(min_overlap * smaller))
    quality = overlap_ncc(ref, flo, np.asarray(matrix, dtype=float), min_count, reference_mask, floating_mask)
    if not np.isfinite(quality):
        return dict(NO_EVIDENCE)
    overlap = _overlap_count(ref.shape, flo.shape, matrix, reference_mask, floating_mask) / smaller
    rng = np.random.default_rng([int(seed), 15])
    scores = [overlap_ncc(ref, flo, m, min_count, reference_mask, floating_mask)
              for m in random_rigid(rng, flo.shape, alternatives)]  # fmt: skip
    scores = np.array([s for s in scores if np.isfinite(s)])
    if scores.size >= 2:
        prominence = (quality - scores.mean()) / max(float(scores.std()), 1e-3)
    else:  # the images overlap at almost no other transform: nothing to compare with
        prominence = 0.0
    return {"quality": float(quality), "prominence": float(prominence), "overlap": float(min(overlap, 1.0))}


def _overlap_count(
    reference_shape: tuple[int, ...],
    floating_shape: tuple[int, ...],
    matrix: np.ndarray,
    reference_mask: np.ndarray | None,
    floating_mask: np.ndarray | None,
) -> int:
    """Valid reference pixels that the warped valid floating image covers."""
    import cv2

    valid = np.ones(floating_shape[:2], np.uint8) if floating_mask is None else floating_mask.astype(np.uint8)
    covered = cv2.warpAffine(valid, np.asarray(matrix, dtype=np.float64), (reference_shape[1], reference_shape[0]),
                             flags=cv2.INTER_NEAREST, borderValue=0).astype(bool)  # fmt: skip
    if reference_mask is not None:
        covered &= np.asarray(reference_mask, dtype=bool)
    return int(np.count_nonzero(covered))


__all__ = ["evidence", "random_rigid"]
