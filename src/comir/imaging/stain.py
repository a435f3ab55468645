"""Stain normalisation and stain-invariant input of RGB bright-field (H&E) images (docs/method.md, section 5).

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

``stain_normalization: deconvolution`` (:func:`stain_deconvolution`) gives the network the
stains themselves instead of colours: per image, the haematoxylin and eosin concentrations
(least squares onto the image's own Macenko stain vectors; the reference vectors where the
image has too little tissue or shows one dye only: its two estimated stains less than
:data:`MIN_STAIN_ANGLE_DEG` apart, or its optical density's second principal direction weaker
than :data:`MIN_SECOND_STAIN_SHARE` of the first) and the norm of the optical density that
neither stain explains (pigment, dirt, out-of-focus dark areas), each divided by twice its 99th
percentile over the tissue pixels (at least :data:`MIN_DENSITY_SCALE`) and clipped to [0, 1].  A change
of stain hue (other vectors) or strength (other concentrations) then leaves the three
channels unchanged up to the estimation's accuracy; eosin marks the collagen that SHG images.

Ruifrok and Johnston's stain vectors (:data:`RGB_FROM_HED`, :data:`HED_FROM_RGB`) and
:func:`optical_density` are shared with the training's stain jitter
(:mod:`comir.training.augment`) and the stress test sets' stain shift (:mod:`comir.imaging.shifts`).
"""

from __future__ import annotations

import numpy as np

# Ruifrok & Johnston (2001): optical densities (R, G, B) of haematoxylin, eosin and DAB, unit rows.
_STAINS = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]])
RGB_FROM_HED = _STAINS / np.linalg.norm(_STAINS, axis=1, keepdims=True)
HED_FROM_RGB = np.linalg.inv(RGB_FROM_HED)
# The darkest transmitted intensity: a pixel of 0 would have an infinite optical density.
MIN_INTENSITY = 1e-3

STAIN_NORMALIZATIONS = ("macenko", "deconvolution")
#: Columns: haematoxylin and eosin optical densities (R, G, B).
REFERENCE_STAINS = np.array([[0.5626, 0.2159], [0.7201, 0.8012], [0.4062, 0.5581]])
REFERENCE_MAX_CONCENTRATIONS = np.array([1.9705, 1.0308])
MIN_TISSUE_PIXELS = 100
#: Estimated stain vectors closer than this (degrees) are one stain: the reference vectors are used.
MIN_STAIN_ANGLE_DEG = 5.0
#: A second principal direction of the tissue's optical density weaker than this share of the first:
#: one dye only (the second "stain" would be rounding noise), so the reference vectors are used.
MIN_SECOND_STAIN_SHARE = 1e-3
#: The least scale of a deconvolved channel (optical density): a stain that is (almost) absent stays
#: near 0 instead of being stretched to full range.
MIN_DENSITY_SCALE = 0.2


def optical_density(rgb: np.ndarray) -> np.ndarray:
    """Optical density ``-ln I`` of intensities in [0, 1], clipped to [:data:`MIN_INTENSITY`, 1]; same shape.

    Parameters
    ----------
    rgb : numpy.ndarray
        Intensities in [0, 1], any shape.

    Returns
    -------
    numpy.ndarray
        Optical densities of ``rgb``'s shape, in ``[0, -ln MIN_INTENSITY]``.
    """
    return -np.log(np.clip(rgb, MIN_INTENSITY, 1.0))


def macenko_stains(rgb: np.ndarray, beta: float = 0.15, alpha: float = 1.0) -> tuple[np.ndarray, np.ndarray] | None:
    """The image's stain vectors (3, 2; haematoxylin, eosin) and its tissue pixels' OD (N, 3), or None.

    Parameters
    ----------
    rgb : numpy.ndarray
        ``(H, W, 3)`` RGB intensities in [0, 1].
    beta : float, optional
        Tissue threshold: a pixel is tissue when every channel's OD exceeds it. Default 0.15.
    alpha : float, optional
        Percentile (and ``100 - alpha``) of the projected angles that give the two stain vectors. Default 1.

    Returns
    -------
    tuple[numpy.ndarray, numpy.ndarray] or None
        The ``(3, 2)`` stain vectors (columns haematoxylin, eosin) and the ``(N, 3)`` OD of the tissue
        pixels; None when there are fewer than :data:`MIN_TISSUE_PIXELS` tissue pixels.
    """
    density = _optical_density(rgb)
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
    """An RGB image (H, W, 3) in [0, 1] re-rendered with the reference stains (module doc); float32.

    Parameters
    ----------
    rgb : numpy.ndarray
        ``(H, W, 3)`` RGB intensities in [0, 1].

    Returns
    -------
    numpy.ndarray
        ``(H, W, 3)`` float32 in [0, 1]; the input as it is (float32) when the image has too little tissue or
        a stain's 99th-percentile concentration is not positive.

    Raises
    ------
    ValueError
        If ``rgb`` is not ``(H, W, 3)``.
    """
    rgb = _check_rgb(rgb)
    found = macenko_stains(rgb)
    if found is None:
        return rgb
    stains, tissue = found
    density = _optical_density(rgb)
    concentrations, *_ = np.linalg.lstsq(stains, density.T, rcond=None)  # (2, H*W)
    tissue_concentrations, *_ = np.linalg.lstsq(stains, tissue.T, rcond=None)
    maxima = np.percentile(tissue_concentrations, 99, axis=1)
    if not np.all(maxima > 0):
        return rgb
    concentrations *= (REFERENCE_MAX_CONCENTRATIONS / maxima)[:, None]
    normalized = np.exp(-(REFERENCE_STAINS @ concentrations)).T.reshape(rgb.shape)
    return np.clip(normalized, 0.0, 1.0).astype(np.float32)


def _optical_density(rgb: np.ndarray) -> np.ndarray:
    """Optical densities (N, 3) of the pixels of an RGB image in [0, 1]."""
    return optical_density(rgb.reshape(-1, 3).astype(np.float64))


def _check_rgb(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb, dtype=np.float32)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"stain normalisation needs an RGB image (H, W, 3), got shape {rgb.shape}")
    return rgb


def stain_deconvolution(rgb: np.ndarray, beta: float = 0.15) -> np.ndarray:
    """An RGB image (H, W, 3) in [0, 1] as (H, W, 3) float32 in [0, 1]: haematoxylin, eosin, residual (module doc).

    Each channel is divided by twice its 99th percentile over the tissue pixels (every
    channel's optical density above ``beta``), so an image whose stains are stronger or
    weaker as a whole gives the same channels; background (no absorption) is 0.

    Parameters
    ----------
    rgb : numpy.ndarray
        ``(H, W, 3)`` RGB intensities in [0, 1].
    beta : float, optional
        Tissue threshold on every channel's optical density. Default 0.15.

    Returns
    -------
    numpy.ndarray
        ``(H, W, 3)`` float32 in [0, 1]: haematoxylin, eosin, residual.

    Raises
    ------
    ValueError
        If ``rgb`` is not ``(H, W, 3)``.
    """
    rgb = _check_rgb(rgb)
    density = _optical_density(rgb)
    found = macenko_stains(rgb, beta)
    stains = REFERENCE_STAINS / np.linalg.norm(REFERENCE_STAINS, axis=0)
    if found is not None:
        estimated, tissue_density = found[0] / np.linalg.norm(found[0], axis=0), found[1]
        angle = np.degrees(np.arccos(np.clip(estimated[:, 0] @ estimated[:, 1], -1.0, 1.0)))
        spread = np.linalg.eigvalsh(tissue_density.T @ tissue_density)  # ascending
        if angle >= MIN_STAIN_ANGLE_DEG and spread[1] >= MIN_SECOND_STAIN_SHARE * spread[2]:
            stains = estimated
    concentrations, *_ = np.linalg.lstsq(stains, density.T, rcond=None)  # (2, N)
    residual = np.linalg.norm(density.T - stains @ concentrations, axis=0)
    channels = np.vstack([np.maximum(concentrations, 0.0), residual[None]])  # (3, N)
    tissue = np.all(density > beta, axis=1)
    reference = channels[:, tissue] if tissue.sum() >= MIN_TISSUE_PIXELS else channels
    scale = np.maximum(2.0 * np.percentile(reference, 99, axis=1), MIN_DENSITY_SCALE)
    channels /= scale[:, None]
    return np.clip(channels.T, 0.0, 1.0).reshape(rgb.shape).astype(np.float32)


def apply_stain_normalization(rgb: np.ndarray, kind: str) -> np.ndarray:
    """``rgb`` (H, W, 3) in [0, 1] as a modality's ``stain_normalization`` ``kind`` turns it into network input.

    Parameters
    ----------
    rgb : numpy.ndarray
        ``(H, W, 3)`` RGB intensities in [0, 1].
    kind : str
        ``"macenko"`` (:func:`macenko_normalize`) or ``"deconvolution"`` (:func:`stain_deconvolution`).

    Returns
    -------
    numpy.ndarray
        ``(H, W, 3)`` float32 in [0, 1].

    Raises
    ------
    ValueError
        If ``kind`` is not one of :data:`STAIN_NORMALIZATIONS`, or ``rgb`` is not ``(H, W, 3)``.
    """
    if kind == "macenko":
        return macenko_normalize(rgb)
    if kind == "deconvolution":
        return stain_deconvolution(rgb)
    raise ValueError(f"stain_normalization must be one of {STAIN_NORMALIZATIONS}, got {kind!r}")


__all__ = [
    "HED_FROM_RGB",
    "MIN_DENSITY_SCALE",
    "MIN_INTENSITY",
    "MIN_SECOND_STAIN_SHARE",
    "MIN_STAIN_ANGLE_DEG",
    "MIN_TISSUE_PIXELS",
    "REFERENCE_MAX_CONCENTRATIONS",
    "REFERENCE_STAINS",
    "RGB_FROM_HED",
    "STAIN_NORMALIZATIONS",
    "apply_stain_normalization",
    "macenko_normalize",
    "macenko_stains",
    "optical_density",
    "stain_deconvolution",
]
