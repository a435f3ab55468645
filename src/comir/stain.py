"""Stain normalisation of RGB bright-field (H&E) images (docs/method.md, section 5).

Stain strength and hue vary between labs, scanners and batches; a network
trained on some cores then sees unfamiliar colours on others.  Macenko et al.
("A method for normalizing histology slides for quantitative analysis", ISBI
2009) estimate each image's own haematoxylin and eosin vectors and re-render
the image with reference vectors and a reference stain strength, so every
image looks stained alike.  Per image, no training data involved, so the same
function serves training, inference and the apply stage (a modality's
``stain_normalization: macenko``):

1. optical density ``OD = -log(max(I, 1e-3))`` of the RGB intensities in [0, 1];
2. tissue pixels: every channel's OD above ``beta`` (0.15): background carries no stain;
3. the plane of the two largest principal directions of their OD (eigenvectors of the
   second-moment matrix, which passes through the origin like the stain vectors);
4. the stain vectors: the directions at the ``alpha`` (1) and ``100 - alpha`` percentiles of
   the angle of the projected pixels in that plane; haematoxylin is the one with the larger
   red component (it absorbs red more than eosin does);
5. concentrations by least squares; each stain's ``99``-th percentile scaled to the reference
   maximum; the image re-rendered with the reference vectors.

The reference vectors and maxima are the values widely used with Macenko's method
(:data:`REFERENCE_STAINS`, :data:`REFERENCE_MAX_CONCENTRATIONS`).  An image with too few
tissue pixels (:data:`MIN_TISSUE_PIXELS`) is returned as it is.
"""

from __future__ import annotations

import numpy as np

STAIN_NORMALIZATIONS = ("macenko",)
#: Columns: haematoxylin and eosin optical densities (R, G, B).
REFERENCE_STAINS = np.array([[0.5626, 0.2159], [0.7201, 0.8012], [0.4062, 0.5581]])
REFERENCE_MAX_CONCENTRATIONS = np.array([1.9705, 1.0308])
MIN_TISSUE_PIXELS = 100
_MIN_INTENSITY = 1e-3


def macenko_stains(rgb: np.ndarray, beta: float = 0.15, alpha: float = 1.0) -> tuple[np.ndarray, np.ndarray] | None:
    """The image's stain vectors (3, 2; haematoxylin, eosin) and its tissue pixels' OD (N, 3), or None."""
    density = -np.log(np.clip(rgb.reshape(-1, 3).astype(np.float64), _MIN_INTENSITY, 1.0))
    tissue = density[np.all(density > beta, axis=1)]
    if len(tissue) < MIN_TISSUE_PIXELS:
        return None
    _, vectors = np.linalg.eigh(tissue.T @ tissue / len(tissue))
    plane = vectors[:, [2, 1]]  # the two largest directions
    plane *= np.where(plane.sum(axis=0) < 0, -1.0, 1.0)  # point into the positive octant
    projected = tissue @ plane
    angles = np.arctan2(projected[:, 1], projected[:, 0])
    low, high = np.percentile(angles, [alpha, 100.0 - alpha])
    stains = np.stack([plane @ [np.cos(a), np.sin(a)] for a in (low, high)], axis=1)
    if stains[0, 0] < stains[0, 1]:  # haematoxylin first: it absorbs more red
        stains = stains[:, ::-1]
    return stains, tissue


def macenko_normalize(rgb: np.ndarray) -> np.ndarray:
    """An RGB image (H, W, 3) in [0, 1] re-rendered with the reference stains (module doc); float32."""
    rgb = np.asarray(rgb, dtype=np.float32)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"stain normalisation needs an RGB image (H, W, 3), got shape {rgb.shape}")
    found = macenko_stains(rgb)
    if found is None:
        return rgb
    stains, tissue = found
    density = -np.log(np.clip(rgb.reshape(-1, 3).astype(np.float64), _MIN_INTENSITY, 1.0))
    concentrations, *_ = np.linalg.lstsq(stains, density.T, rcond=None)  # (2, H*W)
    tissue_concentrations, *_ = np.linalg.lstsq(stains, tissue.T, rcond=None)
    maxima = np.percentile(tissue_concentrations, 99, axis=1)
    if not np.all(maxima > 0):
        return rgb
    concentrations *= (REFERENCE_MAX_CONCENTRATIONS / maxima)[:, None]
    normalized = np.exp(-(REFERENCE_STAINS @ concentrations)).T.reshape(rgb.shape)
    return np.clip(normalized, 0.0, 1.0).astype(np.float32)


__all__ = [
    "MIN_TISSUE_PIXELS",
    "REFERENCE_MAX_CONCENTRATIONS",
    "REFERENCE_STAINS",
    "STAIN_NORMALIZATIONS",
    "macenko_normalize",
    "macenko_stains",
]
