"""Rigid registration by the symmetric alpha-AMD distance (paper method for CoMIRs).

Öfverstedt, Lindblad, Sladoje, "Fast and robust symmetric image registration
based on distances combining intensity and spatial information", IEEE TIP
2019; written here from the paper's description with the CoMIR paper's
settings (docs/method.md, section 7).

The measure
-----------
An image with intensities in [0, 1] is quantised to ``Q = levels`` non-zero
levels, ``k(x) = round(Q * I(x))`` in ``0..Q`` (the reference implementation's
rounding; level set ``q`` holds the pixels with ``I >= (q - 1/2) / Q``, so all
``Q`` levels are populated for a [0, 1] image).  The alpha-cuts are the level
sets ``B_q = {k_B >= q}``; with ``complement`` (default, as the authors'
code does) the complement's cuts ``{k_B < q}`` are used too, so that dark
structures count as much as bright ones.  A point ``x`` of ``A`` at level
``k`` is a fuzzy point with membership ``k/Q`` (plus ``(Q-k)/Q`` in the
complement); its distance to ``B`` is the integral over alpha of the
point-to-cut distance::

    c_k(y) = (1/Q) * ( sum_{q<=k} d(y, {k_B >= q})  +  sum_{q>k} d(y, {k_B < q}) )

``d(., S)`` is the Euclidean distance transform of the cut (exact EDT,
computed once per image and pyramid level; stored for all ``k`` at once as one
``(Q+1, H, W)`` stack of these cumulative maps, so that a point needs one
bilinear look-up, whatever its level).  The asymmetric average minimal
distance ``A -> B`` under ``T`` is the membership-weighted mean of
``c_{k(x)}(T(x))`` over the (sampled) pixels ``x`` of ``A`` that ``T`` sends
inside ``B`` (points landing outside ``B`` are left out, as in the authors'
code, so partial overlap is not penalised); with ``complement`` every pixel
has weight 1.  The symmetric distance is the mean of ``A -> B`` under ``T``
and ``B -> A`` under ``T^-1``.  Values are in full-resolution pixels.

The gradient with respect to the rigid parameters is analytic: the chain rule
through the bilinear interpolation, i.e. the exact derivative of the
interpolated distance map, computed from the same four corner values as the
value (so no separate np.gradient maps, whose interpolation would not be the
derivative of the interpolated value).  It matches central finite differences
of the sampled measure to ~1e-5 relative (tested to 1e-3).

The transform
-------------
The optimised transform is the project's floating -> reference matrix
(:mod:`comir.geometry`)::

    M(p) = R(angle) (p - c_f) + c_r + (tx, ty)

with ``c_f``/``c_r`` the floating/reference image centres: ``(0, 0, 0)`` puts
the centres on top of each other.  The forward term samples floating pixels
and looks them up in the reference maps at ``M(p)``; the inverse term samples
reference pixels and looks them up in the floating maps at ``M^-1(q)``.

The optimiser
-------------
Stochastic gradient descent over a Gaussian pyramid (``resolution_factors``
4, 2, 1 with ``sigmas`` 12, 5, 1 full-resolution pixels applied before
decimation ``image[::f, ::f]``, ``iterations`` 3000, 1000, 500).  Each
iteration draws ``max(min_points, sampling_fraction * pixels)`` pixels (with
replacement) of each image at that level.  The angle is optimised as the arc
length ``radius * angle`` with ``radius`` the centre-to-corner distance (mean
of both images), so that one unit of every parameter moves the image corners
by about one pixel; the gradient in these units is clipped to
``[-gradient_clip, gradient_clip]`` per parameter and accumulated with
heavy-ball momentum (``v = momentum * v + g``, the usual "SGD with momentum",
reset at each level) and applied with the level's step size
(``params -= step * v``; ``step_sizes``, 2 px; the last level decays linearly
to ``last_step``, 0.2 px).  The clipped gradient of a mean distance is at most
1 per parameter, so a step moves the corners by at most ``step`` pixels per
iteration before momentum, ``step / (1 - momentum)`` with it.  (Heavy-ball
rather than the dampened form ``v = m v + (1 - m) g``: docs/results/method-settings.md.)

Multi-start: one run per ``start_angles_rad`` (the angle of the starting
floating -> reference estimate, centres aligned; each run's random stream
depends on the seed and its start only).  The runs go in lockstep, all
starts' gradients in one vectorised evaluation per iteration (the Python
overhead of an iteration is paid once, not once per start; every sum stays
within its start's row, so a start's run is the same alone); the run with the lowest final
symmetric distance (evaluated on all pixels of the finest level,
so the starts are compared without sampling noise) wins.

Masks: only valid pixels are sampled, a point counts only where it lands on a
valid pixel of the other image (like a point outside it), and the alpha-cuts
hold valid pixels only, so the distance maps measure distances to image
structure, never to an invalid region; invalid pixels are set to the valid
mean before the stretch and the pyramid's smoothing, and a level's mask keeps
only the pixels that smoothing left (almost) untouched by invalid ones.

Inputs: multi-channel images are reduced by :func:`to_single_channel` (the
floating image with the reference's basis).  ``logistic`` (CoMIRs, the
paper): ``1 / (1 + exp(-x))`` first; then, for both kinds of input, a
percentile stretch to [0, 1] (``normalize_percentile`` per tail; 0 =
min-max).  A constant image (no contrast) cannot be registered: status
"failed".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from comir.geometry import image_center, rigid_matrix
from comir.register.base import OK, RegistrationResult, as_tuple, fill_invalid, timed, to_single_channel

# Points per chunk when the measure is evaluated on every pixel.
_CHUNK = 1 << 17
# Optimiser iterations whose samples are drawn at once (bounds their memory).
_BLOCK = 250


# ------------------------------------------------------------ pre-processing


def logistic(image: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(-x))`` without overflow warnings.

    Parameters
    ----------
    image : numpy.ndarray
        Any array (converted to float64).

    Returns
    -------
    numpy.ndarray
        float64 values in [0, 1], the shape of ``image``.
    """
    image = np.asarray(image, dtype=np.float64)
    return 0.5 * (1.0 + np.tanh(0.5 * image))


def normalize_intensity(image: np.ndarray, percentile: float = 0.0) -> np.ndarray | None:
    """Stretch ``image`` linearly to [0, 1] between two percentiles, clipping outside.

    Falls back to min-max when the percentiles coincide; returns ``None`` for an image without contrast.

    Parameters
    ----------
    image : numpy.ndarray
        The image (converted to float64).
    percentile : float, optional
        The percentiles are ``percentile`` and ``100 - percentile`` (0: min and max). Default 0.

    Returns
    -------
    numpy.ndarray or None
        float64 in [0, 1], the shape of ``image``; None when max and min (nearly) coincide.
    """
    image = np.asarray(image, dtype=np.float64)
    low, high = float(image.min()), float(image.max())
    if percentile > 0:
        p_low, p_high = (float(v) for v in np.percentile(image, [percentile, 100.0 - percentile]))
        if p_high - p_low > 1e-12 * max(1.0, abs(p_high)):
            low, high = p_low, p_high
    if not high - low > 1e-12 * max(1.0, abs(high)):
        return None
    return np.clip((image - low) / (high - low), 0.0, 1.0)


def round_to_levels(image01: np.ndarray, levels: int) -> np.ndarray:
    """Levels ``0..levels`` of a [0, 1] image: ``round(levels * I)`` (int16).

    Parameters
    ----------
    image01 : numpy.ndarray
        Image with values in [0, 1] (values outside are clipped to the end levels).
    levels : int
        The number of non-zero levels ``Q``.

    Returns
    -------
    numpy.ndarray
        int16 levels in ``0..levels``, the shape of ``image01``.
    """
    q = np.floor(np.asarray(image01, dtype=np.float64) * levels + 0.5)
    return np.clip(q, 0, levels).astype(np.int16)


def _smooth(image: np.ndarray, sigma: float) -> np.ndarray:
    if sigma <= 0:
        return np.asarray(image, dtype=np.float32)
    import cv2

    return cv2.GaussianBlur(
        np.ascontiguousarray(image, dtype=np.float32), (0, 0), float(sigma), borderType=cv2.BORDER_REFLECT
    )


def _distance_to(mask: np.ndarray, empty_value: float) -> np.ndarray:
    """Exact Euclidean distance of every pixel to the set ``mask`` (0 inside).

    OpenCV's ``DIST_MASK_PRECISE`` transform is exact (the same values as
    ``scipy.ndimage.distance_transform_edt`` to float32 precision) and faster
    (docs/results/speed.md).  An empty set gives the constant ``empty_value``.
    """
    if not mask.any():
        return np.full(mask.shape, empty_value, dtype=np.float32)
    import cv2

    return cv2.distanceTransform(
        np.logical_not(mask).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE
    )


def alpha_distance_maps(
    quantized: np.ndarray, levels: int, complement: bool = True, valid: np.ndarray | None = None
) -> np.ndarray:
    """The cumulative alpha distance maps ``c_k``, shape ``(levels + 1, H, W)``, float64.

    ``c_k(y) = (1/Q)(sum_{q<=k} d(y, {k >= q}) + [complement] sum_{q>k} d(y, {k < q}))``
    in pixels of ``quantized``; with ``valid`` the cuts hold valid pixels only.
    An empty cut contributes the image diagonal (a constant, so it adds no gradient).

    Parameters
    ----------
    quantized : numpy.ndarray
        ``(H, W)`` levels ``0..levels`` (:func:`round_to_levels`).
    levels : int
        The number of non-zero levels ``Q``.
    complement : bool, optional
        Add the distances to the complement's cuts ``{k < q}``. Default True.
    valid : numpy.ndarray or None, optional
        Boolean ``(H, W)`` valid-pixel mask; None: every pixel is valid. Default None.

    Returns
    -------
    numpy.ndarray
        ``(levels + 1, H, W)`` float64 maps, in pixels of ``quantized``.
    """
    height, width = quantized.shape
    empty = float(math.hypot(height, width))
    inside = np.ones(quantized.shape, dtype=bool) if valid is None else valid
    upper = np.stack([_distance_to((quantized >= q) & inside, empty) for q in range(1, levels + 1)])
    maps = np.zeros((levels + 1, height, width))
    np.cumsum(upper, axis=0, out=maps[1:])
    if complement:
        lower = np.stack([_distance_to((quantized < q) & inside, empty) for q in range(1, levels + 1)])
        # sum_{q > k} lower[q - 1] for k = 0..Q: reverse cumulative sum, 0 at k = Q.
        suffix = np.zeros_like(maps)
        np.cumsum(lower[::-1], axis=0, out=suffix[-2::-1])
        maps += suffix
    maps /= levels
    return maps


# ------------------------------------------------------------ the measure


class _Target:
    """One image at one pyramid level: its maps and its (sampleable) pixels.

    Coordinates are full-resolution pixels; the level's pixel ``[i, j]`` is
    the full-resolution point ``(factor * j, factor * i)``.  Map values are
    stored in full-resolution pixels too.  With a ``mask`` (full resolution)
    the sampleable pixels are the valid ones of the level (``pixel_count`` of
    them; :meth:`points` takes indices into that list) and look-ups on invalid
    pixels get weight 0.
    """

    def __init__(
        self,
        image01: np.ndarray,
        levels: int,
        factor: int,
        sigma: float,
        complement: bool,
        mask: np.ndarray | None = None,
    ):
        self.factor = int(factor)
        level_image = _smooth(image01, sigma)[:: self.factor, :: self.factor]
        self.height, self.width = level_image.shape
        self.plane = self.height * self.width
        self.valid_index = self.valid = None
        if mask is not None:
            valid = _smooth(mask.astype(np.float32), sigma)[:: self.factor, :: self.factor] >= 0.999
            self.valid, self.valid_index = valid.ravel(), np.flatnonzero(valid)
        self.quantized = round_to_levels(level_image, levels)
        valid_2d = None if self.valid is None else self.valid.reshape(self.height, self.width)
        maps = alpha_distance_maps(self.quantized, levels, complement, valid_2d) * self.factor
        self.maps = maps.ravel()
        self.max_value = float(maps.max())
        # Membership of a pixel at level k (fuzzy set plus complement).
        k = np.arange(levels + 1, dtype=np.float64)
        self.level_weight = np.ones(levels + 1) if complement else k / levels
        self.pixel_count = self.plane if self.valid_index is None else len(self.valid_index)

    def points(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Full-res coordinates, levels ``k`` and weights of sample indices (``0 .. pixel_count - 1``)."""
        if self.valid_index is not None:
            index = self.valid_index[index]
        rows, cols = np.divmod(index, self.width)
        k = self.quantized.ravel()[index].astype(np.intp)
        return cols * float(self.factor), rows * float(self.factor), k, self.level_weight[k]

    def lookup(
        self, qx: np.ndarray, qy: np.ndarray, level: np.ndarray, weight: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Bilinear value and spatial gradient (per full-res pixel) of the maps ``c_level`` at full-res points.

        ``weight`` is zeroed for points outside the image.
        """
        inv = 1.0 / self.factor
        u, v = qx * inv, qy * inv
        w, h = self.width, self.height
        inside = (u >= -0.5) & (u < w - 0.5) & (v >= -0.5) & (v < h - 0.5)
        weight = weight * inside
        uc = np.minimum(np.maximum(u, 0.0), w - 1.0)
        vc = np.minimum(np.maximum(v, 0.0), h - 1.0)
        u0 = np.minimum(uc.astype(np.intp), w - 2)
        v0 = np.minimum(vc.astype(np.intp), h - 2)
        fu, fv = uc - u0, vc - v0
        if self.valid is not None:  # the nearest pixel must be valid
            weight = weight * self.valid.take(np.rint(vc).astype(np.intp) * w + np.rint(uc).astype(np.intp))
        base = level * self.plane + v0 * w + u0
        maps = self.maps
        d00 = maps.take(base)
        d01 = maps.take(base + 1)
        d10 = maps.take(base + w)
        d11 = maps.take(base + (w + 1))
        top_slope = d01 - d00
        bottom_slope = d11 - d10
        top = d00 + fu * top_slope
        bottom = d10 + fu * bottom_slope
        value = top + fv * (bottom - top)
        # Exact derivative of the (clamped) bilinear interpolant.
        du = (top_slope + fv * (bottom_slope - top_slope)) * ((uc == u) * inv)
        dv = (bottom - top) * ((vc == v) * inv)
        return value, du, dv, weight


def _direction(
    target: _Target,
    px: np.ndarray,
    py: np.ndarray,
    level: np.ndarray,
    weight: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    origin: np.ndarray,
) -> np.ndarray:
    """Sums for one direction and S transforms: points ``p`` go to ``q = a_s p + b_s`` in ``target``.

    ``a``: ``(S, 2, 2)``, ``b`` and ``origin``: ``(S, 2)``; the point arrays are
    ``(n,)`` (the same points for every transform) or ``(S, n)``.  Returns
    ``(S, 5)``: ``(sum w, sum w c, sum w dc . J (q - origin), sum w dc/dx, sum w dc/dy)``
    with ``J (x, y) = (-y, x)`` (the derivative of ``q`` along a rotation about
    ``origin``).  Every sum runs along the last axis of its own row, so a
    transform's sums do not depend on the others in the batch.
    """
    qx = a[:, 0, 0, None] * px + a[:, 0, 1, None] * py + b[:, 0, None]
    qy = a[:, 1, 0, None] * px + a[:, 1, 1, None] * py + b[:, 1, None]
    value, du, dv, w = target.lookup(qx, qy, level, weight)
    wdu, wdv = w * du, w * dv
    # Row-wise reductions (np.add.reduce, einsum): a few microseconds less per call than
    # .sum() and products, which counts at thousands of optimiser iterations.
    sums = np.empty((len(a), 5))
    sums[:, 0] = np.add.reduce(w, axis=-1)
    sums[:, 1] = np.einsum("ij,ij->i", w, value)
    sums[:, 3] = np.add.reduce(wdu, axis=-1)
    sums[:, 4] = np.add.reduce(wdv, axis=-1)
    sums[:, 2] = np.einsum("ij,ij->i", wdv, qx) - np.einsum("ij,ij->i", wdu, qy)
    sums[:, 2] += origin[:, 1] * sums[:, 3] - origin[:, 0] * sums[:, 4]
    return sums


class AlphaAMDMeasure:
    """The symmetric alpha-AMD distance between a reference and a floating image at one pyramid level.

    Both images are already in [0, 1].

    ``value_and_gradient(params, ...)`` with ``params = (angle, tx, ty)`` of
    ``M(p) = R(angle)(p - c_f) + c_r + t`` (floating -> reference, full-res
    pixels; ``c_f``/``c_r`` default to the image centres) returns the distance
    and its gradient with respect to ``params``.
    """

    def __init__(
        self,
        reference01: np.ndarray,
        floating01: np.ndarray,
        levels: int = 7,
        factor: int = 1,
        sigma: float = 0.0,
        complement: bool = True,
        reference_center: Sequence[float] | None = None,
        floating_center: Sequence[float] | None = None,
        masks: tuple[np.ndarray | None, np.ndarray | None] = (None, None),
    ):
        self.reference = _Target(reference01, levels, factor, sigma, complement, masks[0])
        self.floating = _Target(floating01, levels, factor, sigma, complement, masks[1])
        self.reference_center = np.asarray(
            reference_center if reference_center is not None else image_center(np.shape(reference01)), dtype=float
        )
        self.floating_center = np.asarray(
            floating_center if floating_center is not None else image_center(np.shape(floating01)), dtype=float
        )

    def matrix(self, params: Sequence[float]) -> np.ndarray:
        """The floating -> reference 2x3 matrix of ``params``.

        Parameters
        ----------
        params : Sequence[float]
            ``(angle, tx, ty)``: radians and full-resolution pixels.

        Returns
        -------
        numpy.ndarray
            ``M(p) = R(angle)(p - c_f) + c_r + t`` as a 2x3 matrix.
        """
        angle, tx, ty = (float(v) for v in params)
        rotation = rigid_matrix(angle, 0.0, 0.0)[:, :2]
        offset = self.reference_center + np.array([tx, ty]) - rotation @ self.floating_center
        return np.hstack([rotation, offset[:, None]])

    def sample(self, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Random flat pixel indices (with replacement): (reference, floating).

        Parameters
        ----------
        count : int
            Indices per image.
        rng : numpy.random.Generator
            The random stream (reference indices are drawn first).

        Returns
        -------
        tuple of numpy.ndarray
            ``(reference_index, floating_index)``, each ``(count,)`` in ``0 .. pixel_count - 1`` of its
            image at this level (indices into the valid pixels where masked).
        """
        return (
            rng.integers(0, self.reference.pixel_count, size=count),
            rng.integers(0, self.floating.pixel_count, size=count),
        )

    def value_and_gradient(
        self,
        params: Sequence[float],
        reference_index: np.ndarray | None = None,
        floating_index: np.ndarray | None = None,
    ) -> tuple[float, np.ndarray]:
        """Symmetric distance and its gradient; all pixels when no indices are given.

        Parameters
        ----------
        params : Sequence[float]
            ``(angle, tx, ty)`` of the floating -> reference transform.
        reference_index, floating_index : numpy.ndarray or None, optional
            Sample indices of each image (as :meth:`sample` draws them); None: every (valid) pixel of
            that image. Default None.

        Returns
        -------
        value : float
            The symmetric alpha-AMD in full-resolution pixels.
        gradient : numpy.ndarray
            ``(3,)`` derivative with respect to ``(angle, tx, ty)``.
        """
        ref_points = self._points(self.reference, reference_index)
        flo_points = self._points(self.floating, floating_index)
        return self.evaluate(params, ref_points, flo_points)

    @staticmethod
    def _points(target: _Target, index: np.ndarray | None) -> list[tuple[np.ndarray, ...]]:
        if index is None:
            index = np.arange(target.pixel_count)
        index = np.asarray(index, dtype=np.intp).ravel()
        return [target.points(index[i : i + _CHUNK]) for i in range(0, max(len(index), 1), _CHUNK)]

    def evaluate(
        self,
        params: Sequence[float],
        reference_points: list[tuple[np.ndarray, ...]],
        floating_points: list[tuple[np.ndarray, ...]],
    ) -> tuple[float, np.ndarray]:
        """Like :meth:`value_and_gradient`, for points prepared by ``_Target.points``.

        Parameters
        ----------
        params : Sequence[float]
            ``(angle, tx, ty)`` of the floating -> reference transform.
        reference_points, floating_points : list of tuple of numpy.ndarray
            Chunks of sample points of each image, each ``(x, y, level, weight)`` as ``_Target.points``
            returns them.

        Returns
        -------
        value : float
            The symmetric alpha-AMD in full-resolution pixels.
        gradient : numpy.ndarray
            ``(3,)`` derivative with respect to ``(angle, tx, ty)``.
        """
        batch = np.asarray(params, dtype=float)[None]
        values, gradients = self.evaluate_batch(batch, reference_points, floating_points)
        return float(values[0]), gradients[0]

    def evaluate_batch(
        self,
        params: np.ndarray,
        reference_points: list[tuple[np.ndarray, ...]],
        floating_points: list[tuple[np.ndarray, ...]],
    ) -> tuple[np.ndarray, np.ndarray]:
        """Distances ``(S,)`` and gradients ``(S, 3)`` of S parameter rows ``(S, 3)`` at once.

        Point arrays (from ``_Target.points``) are ``(n,)``, shared by every
        row, or ``(S, n)``, one sample per row.  Row ``s`` gives the same
        numbers as evaluating its parameters alone.

        Parameters
        ----------
        params : numpy.ndarray
            ``(S, 3)`` rows ``(angle, tx, ty)``.
        reference_points, floating_points : list of tuple of numpy.ndarray
            Chunks of sample points of each image, each ``(x, y, level, weight)``.

        Returns
        -------
        values : numpy.ndarray
            ``(S,)`` symmetric distances in full-resolution pixels (a direction where no point landed
            inside the other image counts its map's largest value).
        gradients : numpy.ndarray
            ``(S, 3)`` derivatives with respect to ``(angle, tx, ty)``.
        """
        params = np.asarray(params, dtype=float)
        cos, sin = np.cos(params[:, 0]), np.sin(params[:, 0])
        rotation = np.empty((len(params), 2, 2))  # (S, 2, 2)
        rotation[:, 0, 0] = rotation[:, 1, 1] = cos
        rotation[:, 0, 1], rotation[:, 1, 0] = -sin, sin
        transposed = rotation.transpose(0, 2, 1)
        c_r, c_f = self.reference_center, self.floating_center

        # Forward: floating pixels p -> q = R (p - c_f) + c_r + t in the reference.
        # dq/dt = I, dq/dangle = J (q - c_r - t).
        origin = c_r + params[:, 1:]
        offset = origin - rotation @ c_f
        sums = _direction(self.reference, *floating_points[0], rotation, offset, origin)
        for points in floating_points[1:]:
            sums += _direction(self.reference, *points, rotation, offset, origin)
        forward_value, forward_grad = _finish(sums, self.reference.max_value)

        # Inverse: reference pixels q -> p = R^T (q - c_r - t) + c_f in the floating image.
        # dp/dt = -R^T, dp/dangle = -J (p - c_f).
        offset = c_f - (transposed @ origin[:, :, None])[:, :, 0]
        sums = _direction(self.floating, *reference_points[0], transposed, offset, c_f[None])
        for points in reference_points[1:]:
            sums += _direction(self.floating, *points, transposed, offset, c_f[None])
        inverse_value, inverse_sums = _finish(sums, self.floating.max_value)
        inverse_grad = np.empty_like(inverse_sums)
        inverse_grad[:, 0] = -inverse_sums[:, 0]
        inverse_grad[:, 1:] = -(rotation @ inverse_sums[:, 1:, None])[:, :, 0]  # -R (d/dtx, d/dty)
        return 0.5 * (forward_value + inverse_value), 0.5 * (forward_grad + inverse_grad)


def _finish(sums: np.ndarray, empty_value: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean values ``(S,)`` and gradients ``(S, 3)`` ``(d/dangle, d/dtx, d/dty)`` from direction sums ``(S, 5)``.

    Sums in the order of :func:`_direction` (the gradient's three last).

    A row where no point landed inside gets the worst distance and no gradient.
    """
    total = sums[:, :1]
    if (total > 0).all():  # the usual case, kept cheap: it runs twice per optimiser iteration
        return sums[:, 1] / total[:, 0], sums[:, 2:] / total
    inside = total > 0
    safe = np.where(inside, total, 1.0)
    return np.where(inside[:, 0], sums[:, 1] / safe[:, 0], empty_value), np.where(inside, sums[:, 2:] / safe, 0.0)


def _per_iteration(draws: list[np.ndarray], iterations: int) -> np.ndarray:
    """Each start's flat draws ``(iterations * n,)`` as one ``(iterations, S, n)`` array."""
    return np.ascontiguousarray(np.stack(draws).reshape(len(draws), iterations, -1).swapaxes(0, 1))


def _angle_key(angle: float) -> int:
    """A non-negative integer that identifies a start angle (its float64 bits)."""
    return int(np.array(float(angle) + 0.0, dtype=np.float64).view(np.uint64))


def symmetric_amd(
    reference01: np.ndarray,
    floating01: np.ndarray,
    params: Sequence[float] = (0.0, 0.0, 0.0),
    levels: int = 7,
    complement: bool = True,
    points: int | None = None,
    seed: int = 0,
) -> tuple[float, np.ndarray]:
    """Symmetric alpha-AMD between two [0, 1] images at ``params = (angle, tx, ty)``.

    ``M(p) = R(angle)(p - c_f) + c_r + t`` maps floating to reference pixels
    (``c`` the image centres).

    Parameters
    ----------
    reference01, floating01 : numpy.ndarray
        ``(H, W)`` images with values in [0, 1].
    params : Sequence[float], optional
        ``(angle, tx, ty)`` in radians and pixels. Default ``(0, 0, 0)``.
    levels : int, optional
        The number of non-zero quantisation levels. Default 7.
    complement : bool, optional
        Use the cuts of the complement too. Default True.
    points : int or None, optional
        None uses every pixel of both images; otherwise ``points`` pixels of each image drawn with
        ``seed`` (a fixed sample for a given seed). Default None.
    seed : int, optional
        The sample's seed. Default 0.

    Returns
    -------
    value : float
        The distance in pixels.
    gradient : numpy.ndarray
        ``(3,)`` derivative with respect to ``(angle, tx, ty)``.
    """
    measure = AlphaAMDMeasure(reference01, floating01, levels=levels, complement=complement)
    if points is None:
        return measure.value_and_gradient(params)
    ref_index, flo_index = measure.sample(int(points), np.random.default_rng(seed))
    return measure.value_and_gradient(params, ref_index, flo_index)


# ------------------------------------------------------------ the method


@dataclass
class AlphaAMDRegistration:
    """Rigid registration by symmetric alpha-AMD and momentum SGD (see the module doc).

    Parameters: ``levels`` (non-zero quantisation levels), ``logistic`` (map
    inputs through the logistic function first: CoMIRs), ``normalize_percentile``
    (percentile stretch to [0, 1] per tail, in percent; 0 = min-max),
    ``complement`` (use the cuts of the complement too), ``resolution_factors``
    / ``sigmas`` / ``iterations`` / ``step_sizes`` (per pyramid level; sigma
    in full-resolution pixels before decimation, steps in full-resolution
    pixels of corner motion), ``last_step`` (the last level decays linearly to
    it), ``momentum``, ``gradient_clip`` (per parameter, in the scaled units),
    ``sampling_fraction`` / ``min_points`` (points per image and iteration:
    ``max(min_points, fraction * level pixels)``), ``start_angles_rad``
    (multi-start; lowest final distance wins), ``seed``.
    ``metric`` of the result: the final symmetric distance (full-resolution
    pixels, every pixel of the finest level; lower is better).
    """

    name: ClassVar[str] = "alpha_amd"

    levels: int = 7
    logistic: bool = True
    resolution_factors: tuple[int, ...] = (4, 2, 1)
    sigmas: tuple[float, ...] = (12.0, 5.0, 1.0)
    iterations: tuple[int, ...] = (3000, 1000, 500)
    step_sizes: tuple[float, ...] = (2.0, 2.0, 2.0)
    last_step: float = 0.2
    momentum: float = 0.9
    gradient_clip: float = 1.0
    sampling_fraction: float = 0.005
    min_points: int = 256
    start_angles_rad: tuple[float, ...] = (0.0,)
    normalize_percentile: float = 0.5
    complement: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        self.resolution_factors = as_tuple(self.resolution_factors, int)
        self.sigmas = as_tuple(self.sigmas, float)
        self.iterations = as_tuple(self.iterations, int)
        self.step_sizes = as_tuple(self.step_sizes, float)
        self.start_angles_rad = as_tuple(self.start_angles_rad, float)
        count = len(self.resolution_factors)
        if not count or not (len(self.sigmas) == len(self.iterations) == len(self.step_sizes) == count):
            raise ValueError(
                f"resolution_factors {self.resolution_factors}, sigmas {self.sigmas}, iterations "
                f"{self.iterations} and step_sizes {self.step_sizes} must be non-empty and of equal length"
            )
        if min(self.resolution_factors) < 1 or min(self.sigmas) < 0 or min(self.iterations) < 0:
            raise ValueError("resolution_factors must be >= 1, sigmas >= 0 and iterations >= 0")
        if min(self.step_sizes) <= 0 or float(self.last_step) <= 0:
            raise ValueError("step_sizes and last_step must be > 0")
        if int(self.levels) < 1:
            raise ValueError(f"levels must be >= 1, got {self.levels}")
        if not 0 <= float(self.momentum) < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        if float(self.gradient_clip) <= 0:
            raise ValueError(f"gradient_clip must be > 0, got {self.gradient_clip}")
        if not 0 < float(self.sampling_fraction) <= 1:
            raise ValueError(f"sampling_fraction must be in (0, 1], got {self.sampling_fraction}")
        if int(self.min_points) < 1:
            raise ValueError(f"min_points must be >= 1, got {self.min_points}")
        if not 0 <= float(self.normalize_percentile) < 50:
            raise ValueError(f"normalize_percentile must be in [0, 50), got {self.normalize_percentile}")
        if not self.start_angles_rad:
            raise ValueError("start_angles_rad must not be empty")

    # -- steps of register(), public for tests and diagnostics

    def preprocess(
        self,
        reference: np.ndarray,
        floating: np.ndarray,
        masks: tuple[np.ndarray | None, np.ndarray | None] = (None, None),
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Both images as float64 in [0, 1] (``None`` for an image without contrast), invalid pixels filled.

        Multi-channel images are reduced to one channel (the floating image with the reference's basis),
        mapped through :func:`logistic` with ``logistic`` and stretched by :func:`normalize_intensity`.

        Parameters
        ----------
        reference, floating : numpy.ndarray
            ``(H, W)`` or ``(H, W, C)`` images.
        masks : tuple of (numpy.ndarray or None), optional
            Boolean ``(H, W)`` valid-pixel masks of the two images. Default ``(None, None)``.

        Returns
        -------
        tuple of (numpy.ndarray or None)
            ``(reference01, floating01)``, each ``(H, W)`` float64 or None.
        """
        ref, basis = to_single_channel(fill_invalid(reference, masks[0]))
        flo, _ = to_single_channel(fill_invalid(floating, masks[1]), basis)
        out = []
        for image in (ref, flo):
            image = logistic(image) if self.logistic else image
            out.append(normalize_intensity(image, float(self.normalize_percentile)))
        return out[0], out[1]

    def pyramid(
        self,
        reference01: np.ndarray,
        floating01: np.ndarray,
        masks: tuple[np.ndarray | None, np.ndarray | None] = (None, None),
    ) -> list[tuple[AlphaAMDMeasure, int, float]]:
        """One measure per usable pyramid level with its iterations and step.

        Levels at which an image would have a side below 2 pixels, or where the masks leave no pixel,
        are left out.

        Parameters
        ----------
        reference01, floating01 : numpy.ndarray
            ``(H, W)`` images in [0, 1] (:meth:`preprocess`).
        masks : tuple of (numpy.ndarray or None), optional
            Boolean ``(H, W)`` valid-pixel masks at full resolution. Default ``(None, None)``.

        Returns
        -------
        list of tuple of (AlphaAMDMeasure, int, float)
            ``(measure, iterations, step)`` per level, coarsest first.
        """
        c_r, c_f = image_center(np.shape(reference01)), image_center(np.shape(floating01))
        out = []
        for factor, sigma, iterations, step in zip(
            self.resolution_factors, self.sigmas, self.iterations, self.step_sizes, strict=True
        ):
            small = min(-(-s // factor) for s in (*reference01.shape, *floating01.shape))
            if small < 2:  # too coarse to interpolate
                continue
            measure = AlphaAMDMeasure(
                reference01, floating01, int(self.levels), factor, sigma, bool(self.complement), c_r, c_f, masks
            )
            if min(measure.reference.pixel_count, measure.floating.pixel_count) == 0:
                continue  # the masks leave no pixel at this level
            out.append((measure, int(iterations), float(step)))
        return out

    def optimize(
        self,
        pyramid: list[tuple[AlphaAMDMeasure, int, float]],
        starts: np.ndarray,
        rngs: Sequence[np.random.Generator],
    ) -> np.ndarray:
        """Momentum SGD over the pyramid from each start row ``(angle, tx, ty)`` of ``starts`` ``(S, 3)``.

        The starts run in lockstep, one vectorised evaluation per iteration
        for all of them; start ``s`` draws its samples from ``rngs[s]`` only,
        so its run is the same alone as within a multi-start.

        Parameters
        ----------
        pyramid : list of tuple of (AlphaAMDMeasure, int, float)
            The levels of :meth:`pyramid`.
        starts : numpy.ndarray
            ``(S, 3)`` start parameters ``(angle, tx, ty)``.
        rngs : Sequence[numpy.random.Generator]
            One random stream per start.

        Returns
        -------
        numpy.ndarray
            ``(S, 3)`` final parameters.
        """
        params = np.array(starts, dtype=float).reshape(-1, 3)
        clip, momentum = float(self.gradient_clip), float(self.momentum)
        last = len(pyramid) - 1
        for level, (measure, iterations, step) in enumerate(pyramid):
            if iterations == 0:
                continue
            ref, flo = measure.reference, measure.floating
            # Radius of the image corners about the centres (full-res px):
            # the angle is optimised as arc length radius * angle.
            radius = max(
                0.5 * (math.hypot(*measure.reference_center) + math.hypot(*measure.floating_center)), 1.0
            )
            scale = np.array([1.0 / radius, 1.0, 1.0])  # d/d(arc) = d/dangle / radius
            n_ref = max(int(self.min_points), round(float(self.sampling_fraction) * ref.pixel_count))
            n_flo = max(int(self.min_points), round(float(self.sampling_fraction) * flo.pixel_count))
            if level == last:
                steps = step + (float(self.last_step) - step) * np.arange(iterations) / iterations
            else:
                steps = np.full(iterations, step)
            velocity = np.zeros_like(params)
            for first in range(0, iterations, _BLOCK):
                count = min(_BLOCK, iterations - first)
                # The samples of a block of iterations at once (coordinates, levels, weights),
                # arrays (count, S, n); each start draws reference then floating indices.
                draws = [
                    (rng.integers(0, ref.pixel_count, size=count * n_ref),
                     rng.integers(0, flo.pixel_count, size=count * n_flo))
                    for rng in rngs
                ]  # fmt: skip
                ref_block = ref.points(_per_iteration([d[0] for d in draws], count))
                flo_block = flo.points(_per_iteration([d[1] for d in draws], count))
                for it in range(count):
                    _, grad = measure.evaluate_batch(
                        params, [tuple(a[it] for a in ref_block)], [tuple(a[it] for a in flo_block)]
                    )
                    grad = np.minimum(np.maximum(grad * scale, -clip), clip)
                    velocity = momentum * velocity + grad
                    params -= steps[first + it] * velocity * scale  # arc step / radius = angle step
        return params

    @timed
    def register(
        self,
        reference: np.ndarray,
        floating: np.ndarray,
        reference_mask: np.ndarray | None = None,
        floating_mask: np.ndarray | None = None,
    ) -> RegistrationResult:
        """Floating -> reference by alpha-AMD from every start; the lowest final distance wins.

        Parameters
        ----------
        reference, floating : numpy.ndarray
            ``(H, W)`` or ``(H, W, C)`` images with the same ``C`` (CoMIRs with ``logistic``).
        reference_mask, floating_mask : numpy.ndarray or None, optional
            Boolean ``(H, W)`` valid-pixel masks; None: every pixel is valid. Default None.

        Returns
        -------
        RegistrationResult
            The rigid floating -> reference transform; ``metric`` the final symmetric distance
            (full-resolution pixels, lower is better). Failed for an image without contrast,
            images too small for every pyramid level, or a diverged optimisation.
        """
        masks = (reference_mask, floating_mask)
        ref01, flo01 = self.preprocess(reference, floating, masks)
        for role, image in (("reference", ref01), ("floating", flo01)):
            if image is None:
                return RegistrationResult.failed(f"{role} image has no contrast (constant)")
        pyramid = self.pyramid(ref01, flo01, masks)
        if not pyramid:
            return RegistrationResult.failed(f"images too small ({ref01.shape}, {flo01.shape})")
        finest = pyramid[-1][0]
        # One generator per (seed, start): a start's run is the same alone as within a multi-start.
        rngs = [np.random.default_rng([int(self.seed) & 0xFFFFFFFF, _angle_key(a)]) for a in self.start_angles_rad]
        starts = np.array([(a, 0.0, 0.0) for a in self.start_angles_rad])
        best: tuple[float, np.ndarray, float] | None = None
        for start, params in zip(self.start_angles_rad, self.optimize(pyramid, starts, rngs), strict=True):
            if not np.all(np.isfinite(params)):
                continue
            value, _ = finest.value_and_gradient(params)
            if math.isfinite(value) and (best is None or value < best[0]):
                best = (value, params, start)
        if best is None:
            return RegistrationResult.failed("the optimisation diverged (non-finite parameters)")
        value, params, start = best
        note = (
            f"start {start:g} rad -> angle {params[0]:.4f} rad, t ({params[1]:.2f}, {params[2]:.2f}) px; "
            f"distance {value:.4f} px"
        )
        return RegistrationResult(finest.matrix(params), OK, value, 0.0, note)


__all__ = [
    "AlphaAMDMeasure",
    "AlphaAMDRegistration",
    "alpha_distance_maps",
    "logistic",
    "normalize_intensity",
    "round_to_levels",
    "symmetric_amd",
]
