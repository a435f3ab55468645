"""Valid-pixel masks of real images: derived from constant borders or read from files (docs/method.md, section 13).

Real images carry regions that are not image: the zero-filled border an earlier
resampling or stitching left, the outside of a scanned field.  Their sharp,
straight edges are the strongest structure of the image and, unmasked, they
decide the match (two images with the same border are "aligned" at the
identity).  A mask is True where the pixel is image; every registration method
takes one per image (:mod:`comir.register.base`).

* :func:`constant_border_mask` (``masks: auto``): the pixels that have the
  border's most frequent value in every channel and are connected to the border
  through such pixels are invalid, if they lie outside the convex hull of the
  rest.  Exact equality because a filled border is exactly constant; the hull
  because the valid part of a resampled image is the image of its rectangle (a
  convex polygon, clipped by the frame), and so is a round tissue core or field
  of view, so the filled border lies outside it, while a modality whose real
  background is exactly constant (SHG is 0 where there is no collagen; 8-bit
  bright field saturates) has such pixels between image structure, inside the
  hull, and they stay image.  Regions under :data:`MIN_INVALID_FRACTION` of the
  image are ignored (a stray constant edge pixel is no border).
* :func:`read_mask`: a mask file (TIFF or PNG, non-zero = valid, any channels),
  of its image's height and width.
* :func:`working_mask`: a mask brought to the working resolution and shrunk by
  a margin, for the CoMIRs, whose values near an invalid region still feel it
  through the network's receptive field.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from comir.io import InputError, read_image

MASK_MODES = ("auto", "none")
# Default shrink (px at the working resolution) of a mask for the CoMIRs (:func:`working_mask`).
MASK_MARGIN_PX = 4.0
# Constant border regions smaller than this fraction of the image are left valid.
MIN_INVALID_FRACTION = 0.01
# Least fraction of a constant border region outside the convex hull of the rest for it to be masked.
MIN_OUTSIDE_HULL = 0.9


def border_pixels(image: np.ndarray) -> np.ndarray:
    """The pixels of the outermost rows and columns, ``(N, C)``.

    Parameters
    ----------
    image : numpy.ndarray
        ``(H, W)`` or ``(H, W, C)`` image; a 2-D image counts as one channel.

    Returns
    -------
    numpy.ndarray
        ``(N, C)``: the first row, the last row, then the first and last columns without the corners.
    """
    pixels = image if image.ndim == 3 else image[..., None]
    return np.concatenate([pixels[0], pixels[-1], pixels[1:-1, 0], pixels[1:-1, -1]])


def constant_border_mask(
    image: np.ndarray, min_fraction: float = MIN_INVALID_FRACTION, min_outside: float = MIN_OUTSIDE_HULL
) -> np.ndarray | None:
    """Valid pixels of ``image`` (H, W[, C]): all but its constant-valued regions connected to the border.

    The candidate value is the most frequent value (all channels) among the
    border pixels; every pixel of that value connected to the border (8
    neighbours) through pixels of that value is invalid.  Returns ``None``
    (every pixel valid) when that region covers less than ``min_fraction`` of
    the image, or when less than ``min_outside`` of it lies outside the convex
    hull of the rest (the constant value is the image's own background, see
    the module doc).

    Parameters
    ----------
    image : numpy.ndarray
        ``(H, W)`` or ``(H, W, C)`` image, as stored (the comparison is exact).
    min_fraction : float, optional
        Least fraction of the image the border region must cover to be masked.
        Default :data:`MIN_INVALID_FRACTION`.
    min_outside : float, optional
        Least fraction of the border region that must lie outside the convex hull of the rest.
        Default :data:`MIN_OUTSIDE_HULL`.

    Returns
    -------
    numpy.ndarray or None
        ``(H, W)`` bool, True where the pixel is image; None when every pixel is valid.
    """
    from scipy import ndimage

    image = np.asarray(image)
    values, counts = np.unique(border_pixels(image), axis=0, return_counts=True)
    value = values[np.argmax(counts)]
    same = np.all((image if image.ndim == 3 else image[..., None]) == value, axis=-1)
    labels, _ = ndimage.label(same, structure=np.ones((3, 3), dtype=bool))
    touching = np.unique(border_pixels(labels))
    invalid = np.isin(labels, touching[touching > 0])
    if np.count_nonzero(invalid) < min_fraction * invalid.size:
        return None
    valid = ~invalid
    if valid.any():
        outside = np.count_nonzero(invalid & ~convex_hull(valid))
        if outside < min_outside * np.count_nonzero(invalid):
            return None
    return valid


def convex_hull(mask: np.ndarray) -> np.ndarray:
    """The pixels of the convex hull of ``mask``'s pixels (the mask included).

    Parameters
    ----------
    mask : numpy.ndarray
        ``(H, W)`` bool mask with at least one True pixel.

    Returns
    -------
    numpy.ndarray
        ``(H, W)`` bool, True inside the hull (drawn with OpenCV) or in ``mask``.
    """
    import cv2

    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    filled = np.zeros(mask.shape, np.uint8)
    cv2.fillConvexPoly(filled, cv2.convexHull(np.concatenate(contours)), 1)
    return filled.astype(bool) | mask


def read_mask(path: str | Path, shape: tuple[int, ...], image_path: str | Path) -> np.ndarray:
    """The mask in ``path`` (non-zero in any channel = valid) for the image ``image_path`` of ``shape``.

    Parameters
    ----------
    path : str or pathlib.Path
        The mask file (TIFF or PNG, any channels).
    shape : tuple[int, ...]
        Shape of the image, ``(H, W[, C])``; the mask must be ``(H, W)``.
    image_path : str or pathlib.Path
        The image's file, named in the error message.

    Returns
    -------
    numpy.ndarray
        ``(H, W)`` bool, True where valid.

    Raises
    ------
    comir.io.InputError
        If the mask cannot be read, or its height and width differ from the image's.
    """
    mask = read_image(path)
    mask = mask.any(axis=-1) if mask.ndim == 3 else mask != 0
    if mask.shape != tuple(shape[:2]):
        raise InputError(
            f"mask {path} is {mask.shape[1]}x{mask.shape[0]} px but its image {image_path} is "
            f"{shape[1]}x{shape[0]} px"
        )
    return mask


def image_mask(image: np.ndarray, mode: str, mask_file: str | Path | None, image_path: str | Path) -> np.ndarray | None:
    """An image's mask: from ``mask_file`` if given, else by ``mode`` ("auto" or "none"); None = all valid.

    Parameters
    ----------
    image : numpy.ndarray
        The stored ``(H, W[, C])`` image.
    mode : str
        ``"auto"`` (:func:`constant_border_mask`) or ``"none"`` (all valid); ignored when ``mask_file`` is given.
    mask_file : str or pathlib.Path or None
        A mask file (:func:`read_mask`), or None.
    image_path : str or pathlib.Path
        The image's file, named in error messages.

    Returns
    -------
    numpy.ndarray or None
        ``(H, W)`` bool, True where valid; None when every pixel is valid.

    Raises
    ------
    ValueError
        If ``mode`` is not one of :data:`MASK_MODES`.
    comir.io.InputError
        If ``mask_file`` cannot be read or does not match the image's size.
    """
    if mode not in MASK_MODES:
        raise ValueError(f"mask mode must be one of {MASK_MODES}, got {mode!r}")
    if mask_file is not None:
        return read_mask(mask_file, image.shape, image_path)
    return constant_border_mask(image) if mode == "auto" else None


def working_mask(mask: np.ndarray | None, shape: tuple[int, int], margin_px: float) -> np.ndarray | None:
    """``mask`` resampled to ``shape`` (H, W) (valid where only valid pixels contribute) and shrunk by ``margin_px``.

    Parameters
    ----------
    mask : numpy.ndarray or None
        ``(H, W)`` bool mask at the original resolution; None: all valid.
    shape : tuple[int, int]
        ``(H, W)`` of the working resolution.
    margin_px : float
        Shrink in px at the working resolution: a pixel stays valid if its Euclidean distance to the
        nearest invalid pixel exceeds it; 0 or less: no shrink.

    Returns
    -------
    numpy.ndarray or None
        ``(H, W)`` bool at the working resolution; None when ``mask`` is None.
    """
    if mask is None:
        return None
    import cv2

    size = (int(shape[1]), int(shape[0]))
    if mask.shape != tuple(shape):
        mask = cv2.resize(mask.astype(np.float32), size, interpolation=cv2.INTER_AREA) >= 1.0 - 1e-6
    if margin_px > 0:
        clearance = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        mask = clearance > float(margin_px)
    return mask


__all__ = [
    "MASK_MARGIN_PX",
    "MASK_MODES",
    "MIN_INVALID_FRACTION",
    "MIN_OUTSIDE_HULL",
    "border_pixels",
    "constant_border_mask",
    "convex_hull",
    "image_mask",
    "read_mask",
    "working_mask",
]
