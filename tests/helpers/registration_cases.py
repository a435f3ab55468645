"""Known-transform image pairs shared by the registration tests."""

from __future__ import annotations

import functools
import math

import cv2
import numpy as np
from scipy import ndimage

from comir import geometry as g
from comir.deformation.algebra import invert_field
from comir.deformation.synthetic import random_displacement
from comir.deformation.warp import warp_image

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


def monomodal_pair(size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """An 8-bit :func:`texture` and itself with another contrast (a monomodal pair)."""
    image = texture(size, seed)
    return (255 * image).astype(np.uint8), (150 * image + 40).astype(np.uint8)


def floating_for(reference: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """The floating image whose backward field onto ``reference`` is ``truth``: ``reference`` warped by its inverse."""
    return warp_image(reference, invert_field(truth), order=3, mode="nearest")


@functools.lru_cache(maxsize=None)
def deformed_pair(size: int, max_displacement_px: float, seed: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(reference, floating, truth): an 8-bit :func:`texture` without lines and itself deformed by a known field.

    ``truth`` (reference grid, backward; smoothness 48 px) maps the floating image onto the reference
    (:func:`floating_for`); all three read-only.
    """
    reference = np.array(texture(size, seed, lines=False))
    truth = random_displacement(reference.shape, max_displacement_px, 48, seed)
    floating = np.clip(floating_for(reference, truth), 0.0, 1.0)
    pair = ((255 * reference).astype(np.uint8), (255 * floating).astype(np.uint8), truth)
    for array in pair:
        array.setflags(write=False)
    return pair


def crop_pair(
    reference_source: np.ndarray,
    floating_source: np.ndarray,
    angle_deg: float,
    shift: tuple[float, float],
    center: tuple[float, float] | None = None,
    floating_box: tuple[int, int, int, int] | None = None,
    linear: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(reference, floating, truth floating->reference) from two aligned SOURCE-px sources.

    ``floating_source`` is warped by ``A`` = rotation by ``angle_deg`` (or the
    2x2 ``linear`` map, e.g. a scale or shear) about ``center`` (source centre
    by default) then ``shift``; the reference is the
    central SIZE crop of ``reference_source``, the floating image a crop
    ``(x, y, w, h)`` of the warped source (the same central crop by default).
    The sources may be (H, W) or (H, W, C) and differ in channels (two modalities).
    """
    c = (SOURCE - 1) / 2.0
    a = g.rigid_matrix(math.radians(angle_deg), shift[0], shift[1], center or (c, c))
    if linear is not None:
        pivot = np.asarray(center or (c, c), dtype=float)
        linear = np.asarray(linear, dtype=float)
        a = np.hstack([linear, (pivot + np.asarray(shift) - linear @ pivot)[:, None]])
    warped = cv2.warpAffine(np.asarray(floating_source), a, (SOURCE, SOURCE), flags=cv2.INTER_LINEAR)
    o = (SOURCE - SIZE) // 2
    x, y, w, h = floating_box or (o, o, SIZE, SIZE)
    reference = np.asarray(reference_source)[o : o + SIZE, o : o + SIZE].copy()
    floating = warped[y : y + h, x : x + w].copy()
    # floating pixel p -> warped p + (x, y) -> source A^-1(.) -> reference (.) - (o, o)
    truth = g.compose(g.rigid_matrix(0, -o, -o), g.compose(g.invert(a), g.rigid_matrix(0, x, y)))
    # No padding: every floating pixel comes from inside the source.
    inside = g.apply(g.compose(g.invert(a), g.rigid_matrix(0, x, y)), g.corners(w, h))
    assert inside.min() >= 1 and inside.max() <= SOURCE - 2
    return reference, floating, truth


@functools.lru_cache(maxsize=None)
def make_pair(
    angle_deg: float,
    shift: tuple[float, float],
    seed: int = 0,
    center: tuple[float, float] | None = None,
    floating_box: tuple[int, int, int, int] | None = None,
    lines: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(reference, floating, truth floating->reference) of one texture (:func:`crop_pair`)."""
    source = texture(SOURCE, seed, lines)
    return crop_pair(source, source, angle_deg, shift, center, floating_box)


# Optical densities (R, G, B) of the two stains, unit vectors (Ruifrok & Johnston 2001).
EOSIN_OD = np.array([0.07, 0.99, 0.11]) / np.linalg.norm([0.07, 0.99, 0.11])
HAEMATOXYLIN_OD = np.array([0.65, 0.70, 0.29]) / np.linalg.norm([0.65, 0.70, 0.29])


@functools.lru_cache(maxsize=None)
def he_shg_scene(size: int = SOURCE, seed: int = 0) -> dict[str, np.ndarray]:
    """A synthetic H&E bright-field / SHG scene with known masks (all arrays read-only).

    ``collagen``: curved fibre bundles (2-6 px wide) and dense smooth patches;
    ``nuclei``: ~1 per 900 px^2 ellipses (3-6 px); ``holes``: two lumina without
    tissue.  ``rgb`` (H, W, 3) in [0, 1]: Beer-Lambert H&E, pale eosin on all
    tissue (cytoplasm, textured), strong eosin on collagen, haematoxylin nuclei
    covering what lies beneath, blur and noise; ``shg`` (H, W): the collagen
    (under nuclei too) with a smoothly varying brightness, blur and noise.
    ``he_collagen`` = collagen visible in H&E (not under a nucleus, not in a hole).
    """
    rng = np.random.default_rng([seed, 77])
    collagen = np.zeros((size, size), np.uint8)
    for _ in range(int(60 * (size / 512) ** 2)):
        start = rng.uniform(-20, size + 20, 2)
        heading = rng.uniform(0, 2 * math.pi)
        turn = rng.normal(0, 0.06)
        points = [start]
        for _ in range(int(rng.integers(10, 30))):
            heading += turn + rng.normal(0, 0.05)
            points.append(points[-1] + 6.0 * np.array([math.cos(heading), math.sin(heading)]))
        cv2.polylines(collagen, [np.round(points).astype(np.int32)], False, 1, int(rng.integers(2, 7)))
    field = ndimage.gaussian_filter(rng.standard_normal((size, size)), 10)
    collagen |= (field > 1.3 * field.std()).astype(np.uint8)
    yy, xx = np.mgrid[:size, :size]
    holes = np.zeros((size, size), bool)
    for _ in range(2):
        cx, cy = rng.uniform(0.15 * size, 0.85 * size, 2)
        rx, ry = rng.uniform(15, 35, 2)
        holes |= ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1
    nuclei = np.zeros((size, size), np.uint8)
    for _ in range(int(280 * (size / 512) ** 2)):
        centre = tuple(int(v) for v in rng.uniform(0, size, 2))
        axes = (int(rng.integers(3, 7)), int(rng.integers(3, 6)))
        cv2.ellipse(nuclei, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    collagen_mask = collagen.astype(bool) & ~holes
    nuclei_mask = nuclei.astype(bool) & ~holes
    tissue = (~holes).astype(float)
    texture_field = 1 + 0.2 * ndimage.gaussian_filter(rng.standard_normal((size, size)), 4) / 0.07
    eosin = tissue * (0.3 * np.clip(texture_field, 0.5, 1.5) + 0.9 * collagen_mask) * np.where(nuclei_mask, 0.2, 1.0)
    haematoxylin = 1.3 * nuclei_mask * (1 + 0.15 * rng.standard_normal((size, size)))
    optical_density = eosin[..., None] * EOSIN_OD + haematoxylin[..., None] * HAEMATOXYLIN_OD
    rgb = ndimage.gaussian_filter(np.exp(-optical_density), (0.7, 0.7, 0))
    rgb = np.clip(rgb + rng.normal(0, 0.02, rgb.shape), 0, 1).astype(np.float32)
    brightness = 0.6 + 0.4 * np.tanh(ndimage.gaussian_filter(rng.standard_normal((size, size)), 20) / 0.02)
    shg = ndimage.gaussian_filter(collagen_mask * brightness, 1.0) + rng.normal(0, 0.03, (size, size))
    shg = np.clip(shg, 0, None).astype(np.float32)
    scene = {
        "rgb": rgb,
        "shg": shg,
        "collagen": collagen_mask,
        "nuclei": nuclei_mask,
        "holes": holes,
        "he_collagen": collagen_mask & ~nuclei_mask,
    }
    for array in scene.values():
        array.setflags(write=False)
    return scene


@functools.lru_cache(maxsize=None)
def make_colour_pair(
    angle_deg: float, shift: tuple[float, float], seed: int = 0, colour: str = "reference"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(reference, floating, truth) of :func:`he_shg_scene`: RGB H&E on the ``colour`` side, SHG on the other."""
    scene = he_shg_scene(SOURCE, seed)
    if colour == "reference":
        return crop_pair(scene["rgb"], scene["shg"], angle_deg, shift)
    return crop_pair(scene["shg"], scene["rgb"], angle_deg, shift)


def pair_error(matrix: np.ndarray, truth: np.ndarray, floating: np.ndarray) -> float:
    """Corner error of an estimate for a floating image of this size."""
    h, w = floating.shape[:2]
    return float(g.corner_error(matrix, truth, w, h))
