"""Known-transform image pairs shared by the registration tests."""

from __future__ import annotations

import functools
import math

import cv2
import numpy as np
from scipy import ndimage

from comir import geometry as g

SIZE = 256
SOURCE = 512


@functools.lru_cache(maxsize=None)
def texture(size: int = SOURCE, seed: int = 0, lines: bool = True) -> np.ndarray:
    """Smooth multi-scale random texture with blobs (and lines), float32 in [0, 1]."""
    rng = np.random.default_rng(seed)
    image = np.zeros((size, size))
    for sigma, weight in [(2, 0.3), (6, 0.6), (16, 1.0)]:
        noise = ndimage.gaussian_filter(rng.standard_normal((size, size)), sigma)
        image += weight * noise / noise.std()
    yy, xx = np.mgrid[:size, :size]
    for _ in range(40):
        cx, cy = rng.uniform(0, size, 2)
        radius = rng.uniform(4, 20)
        image += rng.uniform(-2, 2) * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * radius**2))
    for _ in range(15 if lines else 0):
        x0, y0, x1, y1 = (int(v) for v in rng.uniform(0, size, 4))
        line = np.zeros((size, size), np.float32)
        cv2.line(line, (x0, y0), (x1, y1), 1.0, int(rng.integers(1, 4)))
        image += 1.5 * ndimage.gaussian_filter(line, 1.0)
    image = (image - image.min()) / (image.max() - image.min())
    image = image.astype(np.float32)
    image.setflags(write=False)
    return image


@functools.lru_cache(maxsize=None)
def make_pair(
    angle_deg: float,
    shift: tuple[float, float],
    seed: int = 0,
    center: tuple[float, float] | None = None,
    floating_box: tuple[int, int, int, int] | None = None,
    lines: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(reference, floating, truth floating->reference).

    The source is warped by ``A`` = rotation by ``angle_deg`` about ``center``
    (source centre by default) then ``shift``; the reference is the central
    SIZE crop of the source, the floating image a crop ``(x, y, w, h)`` of the
    warped source (the same central crop by default).
    """
    source = texture(SOURCE, seed, lines)
    c = (SOURCE - 1) / 2.0
    a = g.rigid_matrix(math.radians(angle_deg), shift[0], shift[1], center or (c, c))
    warped = cv2.warpAffine(np.asarray(source), a, (SOURCE, SOURCE), flags=cv2.INTER_LINEAR)
    o = (SOURCE - SIZE) // 2
    x, y, w, h = floating_box or (o, o, SIZE, SIZE)
    reference = source[o : o + SIZE, o : o + SIZE].copy()
    floating = warped[y : y + h, x : x + w].copy()
    # floating pixel p -> warped p + (x, y) -> source A^-1(.) -> reference (.) - (o, o)
    truth = g.compose(g.rigid_matrix(0, -o, -o), g.compose(g.invert(a), g.rigid_matrix(0, x, y)))
    # No padding: every floating pixel comes from inside the source.
    inside = g.apply(g.compose(g.invert(a), g.rigid_matrix(0, x, y)), g.corners(w, h))
    assert inside.min() >= 1 and inside.max() <= SOURCE - 2
    return reference, floating, truth


def pair_error(matrix: np.ndarray, truth: np.ndarray, floating: np.ndarray) -> float:
    """Corner error of an estimate for a floating image of this size."""
    h, w = floating.shape[:2]
    return float(g.corner_error(matrix, truth, w, h))
