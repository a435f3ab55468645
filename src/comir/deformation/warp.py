"""Warping: an image resampled by a backward field, and the pixels that sampled inside the image.

Contract: :func:`warp_image` computes ``output(x) = image(x + u(x))`` on the field's grid with
scipy.ndimage's interpolation orders and boundary modes (:data:`WARP_MODES`); an image of any size
and channel count, float64 for float64 images, else float32. :func:`inside_mask` gives the pixels
it fills from the image in ``"constant"`` mode.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from comir.deformation.fields import check_field, grid, grid_shape

__all__ = ["WARP_MODES", "inside_mask", "warp_image"]


#: Interpolation modes of :func:`warp_image` (scipy.ndimage's boundary modes).
WARP_MODES = ("constant", "nearest", "reflect", "mirror", "wrap")


def warp_image(
    image: np.ndarray, field: np.ndarray, order: int = 1, mode: str = "constant", cval: float = 0.0
) -> np.ndarray:
    """The image resampled by a backward field: ``output(x) = image(x + field(x))``.

    Parameters
    ----------
    image : numpy.ndarray
        ``(h, w)`` or ``(h, w, C)``; its size may differ from the field's grid.
    field : numpy.ndarray
        ``(H, W, 2)`` backward field ``(dx, dy)`` on the output grid (:mod:`comir.deformation`).
    order : int
        Spline order of the interpolation (0 nearest, 1 bilinear, 3 cubic; scipy.ndimage).
    mode : str
        What a sample outside the image gets (:data:`WARP_MODES`, scipy.ndimage's modes).
        ``"constant"``: ``cval`` for every sample outside ``[0, w - 1] x [0, h - 1]`` (the
        centres of the edge pixels), no blending with ``cval`` inside; :func:`inside_mask` gives
        the pixels that sampled the image.  ``"nearest"`` repeats the edge pixels, etc.
    cval : float
        The value outside the image in ``"constant"`` mode.

    Returns
    -------
    numpy.ndarray
        ``(H, W)`` or ``(H, W, C)``: float64 for a float64 image, else float32.
    """
    field = check_field(field)
    image = np.asarray(image)
    if image.ndim not in (2, 3) or image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"image must have shape (h, w) or (h, w, C), got {image.shape}")
    if mode not in WARP_MODES:
        raise ValueError(f"mode must be one of {', '.join(WARP_MODES)}, got {mode!r}")
    dtype = np.float64 if image.dtype == np.float64 else np.float32
    x, y = grid(field.shape[:2])
    coordinates = np.stack([y + field[..., 1], x + field[..., 0]])
    planes = image[..., None] if image.ndim == 2 else image
    warped = np.stack(
        [
            ndimage.map_coordinates(
                np.asarray(planes[..., k], dtype=np.float64), coordinates, order=order, mode=mode, cval=cval
            )
            for k in range(planes.shape[2])  # a loop over channels; each is one vectorised call
        ],
        axis=-1,
    ).astype(dtype)
    return warped[..., 0] if image.ndim == 2 else warped


def inside_mask(field: np.ndarray, input_shape: tuple[int, ...]) -> np.ndarray:
    """Where the field samples inside an input image: ``x + u(x)`` within ``[0, w - 1] x [0, h - 1]``.

    Parameters
    ----------
    field : numpy.ndarray
        ``(H, W, 2)`` backward field.
    input_shape : tuple of int
        ``(h, w[, C])`` of the image the field samples.

    Returns
    -------
    numpy.ndarray
        bool ``(H, W)``: the pixels :func:`warp_image` fills from the image in ``"constant"`` mode.
    """
    field = check_field(field)
    height, width = grid_shape(tuple(input_shape))
    x, y = grid(field.shape[:2])
    sx, sy = x + field[..., 0], y + field[..., 1]
    return (sx >= 0) & (sx <= width - 1) & (sy >= 0) & (sy <= height - 1)
