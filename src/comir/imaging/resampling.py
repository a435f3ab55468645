"""An image's resampling to a working resolution, and transforms between working and original grids.

Used where images are registered at another resolution than they are stored in:
pixel sizes (docs/method.md, section 13) and the coarse level of large images
(:mod:`comir.register.coarse_to_fine`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from comir import geometry


@dataclass(frozen=True)
class Resampling:
    """An image's resampling to the working resolution: ``shape`` (H, W) -> ``working_shape``.

    Pixel centres follow ``cv2.resize``: original pixel ``x`` lies at working
    pixel ``(x + 0.5) * f - 0.5`` with ``f`` the ratio of the sides, per axis
    (:attr:`matrix`).
    """

    shape: tuple[int, int]
    working_shape: tuple[int, int]

    @classmethod
    def between(cls, shape: tuple[int, ...], pixel_size: float, working_pixel_size: float) -> Resampling:
        """From an image of ``pixel_size`` to ``working_pixel_size`` (same units): sides scaled, rounded.

        Parameters
        ----------
        shape : tuple[int, ...]
            Shape of the image, ``(H, W[, ...])``; only the first two are used.
        pixel_size : float
            The image's pixel size.
        working_pixel_size : float
            The working pixel size, in the same units.

        Returns
        -------
        Resampling
            From ``(H, W)`` to the sides times ``pixel_size / working_pixel_size``, rounded, at least 1.
        """
        factor = float(pixel_size) / float(working_pixel_size)
        height, width = int(shape[0]), int(shape[1])
        working = (max(1, round(height * factor)), max(1, round(width * factor)))
        return cls((height, width), working)

    @property
    def identity(self) -> bool:
        """Whether nothing is resampled."""
        return self.shape == self.working_shape

    @property
    def matrix(self) -> np.ndarray:
        """The 2x3 map from original pixels to working pixels."""
        fy, fx = (w / s for w, s in zip(self.working_shape, self.shape))
        return np.array([[fx, 0.0, 0.5 * fx - 0.5], [0.0, fy, 0.5 * fy - 0.5]])

    def apply(self, image: np.ndarray) -> np.ndarray:
        """A pre-processed image (C, H, W) at the working resolution (area averaging to shrink, bilinear to enlarge).

        Parameters
        ----------
        image : numpy.ndarray
            ``(C, H, W)`` image of :attr:`shape`.

        Returns
        -------
        numpy.ndarray
            ``(C, *working_shape)`` float32; the image itself (as float32) when :attr:`identity`.
        """
        import cv2

        image = np.asarray(image, dtype=np.float32)
        if self.identity:
            return image
        shrink = self.working_shape[0] * self.working_shape[1] < self.shape[0] * self.shape[1]
        size = (self.working_shape[1], self.working_shape[0])
        interpolation = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
        return np.stack([cv2.resize(np.ascontiguousarray(plane), size, interpolation=interpolation) for plane in image])


def to_original_grids(matrix: np.ndarray, reference: Resampling, floating: Resampling) -> np.ndarray:
    """A floating -> reference ``matrix`` of the working grids as the same map between the original grids.

    Parameters
    ----------
    matrix : numpy.ndarray
        2x3 affine map from floating to reference pixels, both at the working resolution.
    reference : Resampling
        The reference image's resampling.
    floating : Resampling
        The floating image's resampling.

    Returns
    -------
    numpy.ndarray
        The 2x3 map from original floating pixels to original reference pixels.
    """
    return geometry.compose(geometry.invert(reference.matrix), geometry.compose(matrix, floating.matrix))


__all__ = ["Resampling", "to_original_grids"]
