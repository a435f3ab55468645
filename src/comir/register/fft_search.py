"""Global rigid registration by exhaustive search: all angles on a grid, all translations by FFT.

Because the CoMIRs of two modalities are (approximately) the same image, a
global search needs no starting point and has no local minima to fall into:
for every rotation angle on a grid (default the full circle) the floating image
is rotated about its centre (``cv2.warpAffine``, with a validity mask of the
pixels that came from inside the image), and **every integer translation** is
scored at once in the frequency domain by :mod:`comir.register.fft_scores`:
``score="ncc"``, masked normalised cross-correlation (Padfield 2012), or
``score="mi"``, mutual information of ``mi_levels`` equal-mass levels
(Ofverstedt, Lindblad, Sladoje 2022).

Only translations whose overlap holds at least ``min_overlap`` times the pixel
count of the smaller image are admissible, so tiny overlaps cannot win.

Coarse to fine
--------------
0. Angle screen (``angle_screen``, default 0 = off; e.g. 6): when the coarse
   grid has more than ``3 * angle_screen`` angles, every other grid angle is
   first scored exhaustively (all translations) on a level at half the coarse
   resolution (factor ``2 f0``, kept only if its longest side has at least
   48 px); the ``angle_screen`` best screened angles (no two adjacent) and
   their grid neighbours are the only angles the coarse level scores.  Half the
   angles at a quarter of the pixels, then e.g. 18 instead of 120 angles at
   the coarse level (timings against the unscreened search,
   ``benchmarks/bench_registration.py``'s ``fft_ncc_screen`` and
   ``fft_ncc``: docs/results/speed.md).  Off by default: at half the coarse
   resolution (64 px with ``downsample=128``) the CoMIRs of fine tissue can
   lose the structure that marks the true angle, and on a slide the networks
   never saw the screen dropped it in up to a third of the cases
   (docs/results/generalisation.md); use it where speed matters more and the
   images keep their structure at that scale.
1. Coarse level: both images are blurred and resampled by the same factor
   ``f0 = max(1, longest side of either image / downsample)`` (so
   ``downsample`` is the target size in pixels of the coarse level's longest
   side).  The exhaustive search runs over the angle grid of step
   ``angle_step_deg`` on ``[-angle_range_deg, angle_range_deg]`` (the whole
   circle by default), or over the screened angles.  The best translation of
   each angle (with a parabolic sub-pixel fit) is a candidate; the ``top_k``
   best candidates whose angles are more than two grid steps apart are kept.
2. Refinement passes on a pyramid whose factor halves from pass to pass down
   to full resolution (at least two passes; the last ones at full
   resolution).  Each pass tries, per candidate, the angles ``theta + k delta``
   (``k = -2..2`` in the first pass, ``-1..1`` afterwards, ``delta`` =
   ``angle_step_deg / 4`` then halving), warps the floating image onto the
   reference grid with the candidate transform and scores all translations in
   a small window (+-3 to 4 px of that level) by the same frequency-domain
   formulas, the inverse transform evaluated at the window's lags only (a
   partial inverse DFT, two matrix products); the peak gets a parabolic sub-pixel fit in
   translation and the angle a parabolic fit over the angle samples.  All
   ``top_k`` candidates are refined in the first pass (at twice the coarse
   resolution or at full resolution, whichever comes first) and compared
   there; only the winner continues (this keeps the full-resolution work of
   ``score="mi"`` affordable).
3. ``refine=True``: a final local refinement by ECC
   (``cv2.findTransformECC``, ``MOTION_EUCLIDEAN``) from that estimate; its
   result is kept only if it raises the score (evaluated directly on the
   overlap of the reference and the bilinearly warped floating image), so it
   never makes the result worse.  With ``transform`` "similarity" or
   "affine" (docs/method.md, section 13) the search stays rigid and this
   refinement fits the model (ECC's affine warp, projected onto a similarity
   where asked), so a zoom or shear is recovered from the rigid estimate.

Masks: invalid pixels are set to the mean of the valid ones, and each level
carries validity masks (the full-resolution masks blurred and resampled like the
images, valid where nothing invalid was blurred in); the reference's is the
fixed mask of the masked scores, the floating one's is rotated with the image,
so invalid pixels never enter a score, and ``min_overlap`` counts valid pixels.
ECC's template mask is the reference mask and the floating mask at the estimate.

Images are smoothed by a Gaussian of ``smooth_sigma`` px at full resolution
(combined with the anti-aliasing blur of sigma ``factor / 2`` on the coarser
levels).  Without it MI on noisy images prefers sub-pixel positions and
off-grid angles, where bilinear interpolation averages the noise away (the
truth was a local minimum of MI on the test's remapped pair).

Result
------
``matrix`` is the floating pixel -> reference pixel transform of
:mod:`comir.geometry`.  ``metric`` is the final score at full resolution: the
Pearson correlation of the overlap (``ncc``, in [-1, 1]) or the mutual
information in nats (``mi``); **higher is better** for both.  Metrics are not
comparable across methods (SIFT reports an inlier count, the MI method
SimpleITK's Mattes metric, where lower is better).  The status is "failed"
only when an image is constant or no translation meets ``min_overlap``.

Defaults and cost
-----------------
``angle_step_deg=3``: at the 128 px coarse level half a step (1.5 deg) moves
the image corners by at most ~2.4 coarse pixels, which the blurred coarse
images tolerate (angles mid-way between grid angles, measured:
docs/results/method-settings.md).
``downsample=128`` (coarse level ~128 px), ``top_k=3``, ``min_overlap=0.25``,
``mi_levels=8`` (the MI cost grows with its square), ``smooth_sigma=1``.
The coarse search dominates and does not depend on the input size: 120
angles x 6 (NCC) or 64 (MI, K = 8) inverse FFTs of ~256 x 256, fewer with
the angle screen.  ``threads`` sets the FFT worker threads.  Timings:
docs/results/speed.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import scipy.fft as sfft
from numpy.typing import DTypeLike

from comir import geometry as g
from comir.register.base import OK, RegistrationResult, fill_invalid, timed, to_single_channel, warp_with_validity
from comir.register.fft_scores import (
    SPECTRUM_BUDGET,
    LagScores,
    MIFixed,
    NCCFixed,
    equal_mass_levels,
    histogram_mi,
    lag_range,
    mi_lags,
    ncc_lags,
)

SCORES = ("ncc", "mi")
# The angle screen runs only where its level keeps at least this many pixels on the longest side.
SCREEN_MIN_PX = 48


# --------------------------------------------------------------------------- geometry helpers


def _to_level(point: np.ndarray, factor: float) -> np.ndarray:
    """Full-resolution pixel coordinates -> those of the level resampled by ``factor``."""
    return (np.asarray(point, dtype=float) + 0.5) / factor - 0.5


def _from_level(point: np.ndarray, factor: float) -> np.ndarray:
    """Pixel coordinates of the level resampled by ``factor`` -> full resolution."""
    return (np.asarray(point, dtype=float) + 0.5) * factor - 0.5


def _rotation_about(theta: float, center: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``p -> R(theta) (p - center) + target``."""
    center = np.asarray(center, dtype=float)
    target = np.asarray(target, dtype=float)
    return g.rigid_matrix(theta, *(target - center), center=tuple(center))


def _level_mask(mask: np.ndarray | None, shape: tuple[int, int], factor: float, smooth: float) -> np.ndarray:
    """A full-resolution mask at a level: blurred and resampled like the image, valid where it stays ~1."""
    if mask is None:
        return np.ones(shape, dtype=bool)
    level = _downsample(mask.astype(np.float32), factor, smooth)
    return level >= 0.999


def _downsample(image: np.ndarray, factor: float, smooth: float = 0.0) -> np.ndarray:
    """Blur and resample so that pixel ``p`` -> ``(p + 0.5) / factor - 0.5``.

    The Gaussian blur has sigma ``sqrt(smooth**2 + (factor / 2)**2)`` when
    ``factor > 1`` (anti-aliasing) and ``smooth`` at full resolution.
    """
    import cv2

    sigma = math.hypot(smooth, factor / 2.0) if factor > 1.0 else smooth
    if sigma > 0:
        image = cv2.GaussianBlur(image, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REFLECT)
    if factor <= 1.0:
        return image
    blurred = image
    height, width = image.shape
    size = (max(1, int(width / factor)), max(1, int(height / factor)))
    scale = np.array([[1 / factor, 0.0, 0.5 / factor - 0.5], [0.0, 1 / factor, 0.5 / factor - 0.5]])
    return cv2.warpAffine(blurred, scale, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _parabola(left: float | np.ndarray, mid: float | np.ndarray, right: float | np.ndarray) -> float | np.ndarray:
    """Offset in [-0.5, 0.5] of the vertex of the parabola through (-1, 0, 1); 0 if not a peak."""
    left, mid, right = (np.asarray(v, dtype=np.float64) for v in (left, mid, right))
    with np.errstate(divide="ignore", invalid="ignore"):
        curvature = left - 2.0 * mid + right
        ok = np.isfinite(left) & np.isfinite(right) & np.isfinite(mid) & (curvature < 0)
        offset = np.where(ok, 0.5 * (left - right) / np.where(ok, curvature, -1.0), 0.0)
    offset = np.clip(offset, -0.5, 0.5)
    return float(offset) if offset.ndim == 0 else offset


def peak_lags(lag_scores: LagScores) -> tuple[np.ndarray, np.ndarray]:
    """Best score and its sub-pixel lag ``(tx, ty)`` per item of a (stack of) score maps.

    The lag of the maximum gets a parabolic sub-pixel fit along each axis where it has both
    neighbours.

    Parameters
    ----------
    lag_scores : LagScores
        Score maps ``(..., len(y_lags), len(x_lags))``.

    Returns
    -------
    best : numpy.ndarray
        The best score per item, shape ``batch`` (``-inf`` for empty maps).
    lags : numpy.ndarray
        Its sub-pixel lag ``(tx, ty)`` per item, shape ``batch + (2,)``.
    """
    score = lag_scores.score
    batch_shape = score.shape[:-2]
    ny, nx = score.shape[-2:]
    if ny * nx == 0:
        return np.full(batch_shape, -np.inf), np.zeros(batch_shape + (2,))
    flat = score.reshape(-1, ny * nx)
    index = np.argmax(flat, axis=1)
    iy, ix = np.divmod(index, nx)
    rows = np.arange(len(flat))
    best = flat[rows, index]

    def at(dy, dx, ok):
        value = flat[rows, np.clip(iy + dy, 0, ny - 1) * nx + np.clip(ix + dx, 0, nx - 1)]
        return np.where(ok, value, -np.inf)

    offsets = []
    for axis_ok, left, right in (
        ((ix > 0) & (ix < nx - 1), at(0, -1, ix > 0), at(0, 1, ix < nx - 1)),
        ((iy > 0) & (iy < ny - 1), at(-1, 0, iy > 0), at(1, 0, iy < ny - 1)),
    ):
        offsets.append(np.where(axis_ok, _parabola(left, best, right), 0.0))
    lags = np.stack([lag_scores.x_lags[ix] + offsets[0], lag_scores.y_lags[iy] + offsets[1]], axis=-1)
    return best.reshape(batch_shape), lags.reshape(batch_shape + (2,))


def angle_grid(angle_range_deg: float, step_deg: float) -> tuple[np.ndarray, float]:
    """Angles (radians) of the coarse grid and its actual step (degrees).

    Full circle (range >= 180): ``n = round(360 / step)`` equally spaced angles
    from -180 deg (180 is the same rotation).  Otherwise ``[-range, range]``
    with a step no larger than ``step_deg``; range 0: the single angle 0.

    Parameters
    ----------
    angle_range_deg : float
        Half-width of the searched range in degrees (180 or more: the whole circle).
    step_deg : float
        The largest grid step in degrees.

    Returns
    -------
    angles : numpy.ndarray
        The grid's angles in radians, ascending.
    step : float
        The actual step in degrees.
    """
    if angle_range_deg >= 180.0:
        n = max(1, int(round(360.0 / step_deg)))
        step = 360.0 / n
        return np.radians(-180.0 + step * np.arange(n)), step
    if angle_range_deg <= 0:
        return np.zeros(1), float(step_deg)
    n = int(math.ceil(2 * angle_range_deg / step_deg - 1e-9)) + 1
    return np.radians(np.linspace(-angle_range_deg, angle_range_deg, n)), 2 * angle_range_deg / (n - 1)


# --------------------------------------------------------------------------- the method


class _Level:
    """One pyramid level: both images resampled by ``factor`` and the fixed-side spectra."""

    def __init__(
        self,
        method: FFTSearchRegistration,
        ref: np.ndarray,
        flo: np.ndarray,
        factor: float,
        dtype: DTypeLike,
        masks: tuple[np.ndarray | None, np.ndarray | None] = (None, None),
    ) -> None:
        self.factor = factor
        smooth = float(method.smooth_sigma)
        self.ref = _downsample(ref, factor, smooth)
        self.flo = _downsample(flo, factor, smooth)
        self.ref_mask = _level_mask(masks[0], self.ref.shape, factor, smooth)
        flo_mask = _level_mask(masks[1], self.flo.shape, factor, smooth)
        # None when every pixel is valid: the warps then compute what they did before masks existed.
        self.flo_valid = None if flo_mask.all() else flo_mask.astype(np.float32)
        self.score = method.score
        valid = min(int(np.count_nonzero(self.ref_mask)), int(np.count_nonzero(flo_mask)))
        self.min_count = max(2, int(math.ceil(method.min_overlap * valid)))
        if self.score == "ncc":
            self.fixed = NCCFixed(self.ref, self.ref_mask, dtype)
        else:
            self.levels = int(method.mi_levels)
            self.ref_labels, _ = equal_mass_levels(self.ref, self.levels, self.ref_mask)
            _, self.flo_edges = equal_mass_levels(self.flo, self.levels, flo_mask)
            self.fixed = MIFixed(self.ref_labels, self.ref_mask, self.levels, dtype)

    def warp(self, matrix: np.ndarray, size_wh: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """The level's floating image warped by ``matrix`` and its validity (:func:`.base.warp_with_validity`)."""
        return warp_with_validity(self.flo, matrix, size_wh, self.flo_valid)

    def scores(self, moving: np.ndarray, moving_mask: np.ndarray, y_lags: np.ndarray, x_lags: np.ndarray) -> LagScores:
        """The method's score of moving image(s) ``(H, W)`` or ``(B, H, W)`` against the reference, at the lags."""
        if self.score == "ncc":
            return ncc_lags(self.fixed, moving, moving_mask, y_lags, x_lags, self.min_count)
        labels, _ = equal_mass_levels(moving, self.levels, edges=self.flo_edges)
        return mi_lags(self.fixed, labels, moving_mask, y_lags, x_lags, self.min_count)


@dataclass
class FFTSearchRegistration:
    """Exhaustive rigid search: angle grid x all translations (FFT), coarse to fine.

    ``score``: "ncc" (masked normalised cross-correlation) or "mi" (mutual
    information of ``mi_levels`` equal-mass levels), both computed for all
    translations in the frequency domain; ``angle_range_deg``: search
    rotations in ``[-range, range]`` (180 = the whole circle);
    ``angle_step_deg``: coarse angle step; ``downsample``: target size (px) of
    the longest image side at the coarse level (factor
    ``max(1, longest side / downsample)``, the same for both images);
    ``top_k``: coarse candidates refined; ``min_overlap``: least overlap, as a
    fraction of the smaller image's pixel count; ``mi_levels``: quantisation
    levels K of ``score="mi"``; ``smooth_sigma``: Gaussian blur (px) of both
    images at full resolution; ``refine``: final ECC refinement, kept only if
    it raises the score; ``angle_screen``: angles kept by the half-resolution
    screen before the coarse search (0: no screen, the whole grid at the
    coarse level); ``transform``: the model of the final refinement ("rigid",
    "similarity" or "affine"; the search itself is rigid, so a non-rigid
    model needs ``refine``); ``threads``: FFT worker threads; ``seed``:
    unused (the method is deterministic), kept for the common interface.

    ``metric`` of the result is the final score, **higher is better** (NCC in
    [-1, 1], MI in nats).  See the module docstring for the algorithm.
    """

    name: ClassVar[str] = "fft_search"

    score: str = "ncc"
    angle_range_deg: float = 180.0
    angle_step_deg: float = 3.0
    downsample: int = 128
    top_k: int = 3
    min_overlap: float = 0.25
    mi_levels: int = 8
    smooth_sigma: float = 1.0
    refine: bool = True
    angle_screen: int = 0
    transform: str = "rigid"
    threads: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        g.check_transform(self.transform)
        if self.transform != "rigid" and not self.refine:
            raise ValueError(
                f"transform {self.transform!r} needs refine: true (the search is rigid; the ECC refinement "
                "fits the scale or shear)"
            )
        if self.score not in SCORES:
            raise ValueError(f"score must be one of {SCORES}, got {self.score!r}")
        if not 0 <= float(self.angle_range_deg) <= 180:
            raise ValueError(f"angle_range_deg must be in [0, 180], got {self.angle_range_deg}")
        if not 0 < float(self.angle_step_deg) <= 90:
            raise ValueError(f"angle_step_deg must be in (0, 90], got {self.angle_step_deg}")
        if int(self.downsample) < 16:
            raise ValueError(f"downsample must be >= 16 (px), got {self.downsample}")
        if int(self.top_k) < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")
        if not 0 < float(self.min_overlap) <= 1:
            raise ValueError(f"min_overlap must be in (0, 1], got {self.min_overlap}")
        if not 2 <= int(self.mi_levels) <= 64:
            raise ValueError(f"mi_levels must be in [2, 64], got {self.mi_levels}")
        if int(self.threads) < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        if int(self.angle_screen) < 0:
            raise ValueError(f"angle_screen must be >= 0 (0: off), got {self.angle_screen}")
        if float(self.smooth_sigma) < 0:
            raise ValueError(f"smooth_sigma must be >= 0, got {self.smooth_sigma}")

    # ------------------------------------------------------------------ search steps

    def _best_per_angle(self, level: _Level, angles: np.ndarray, cf: np.ndarray) -> list:
        """``(score, angle, translation peak in level px)`` of every angle with an admissible translation.

        Angles are processed in batches of similar rotated-image size (one
        canvas, one batched FFT per batch).
        """
        height, width = level.flo.shape
        ref_h, ref_w = level.ref.shape
        cf_level = _to_level(cf, level.factor)
        cos, sin = np.abs(np.cos(angles)), np.abs(np.sin(angles))
        sizes = np.stack(
            [
                np.ceil(cos * (width - 1) + sin * (height - 1) - 1e-6).astype(int) + 1,
                np.ceil(sin * (width - 1) + cos * (height - 1) - 1e-6).astype(int) + 1,
            ],
            axis=1,
        )
        order = np.lexsort((sizes[:, 0], sizes[:, 1]))
        planes = 6 if self.score == "ncc" else int(self.mi_levels) ** 2
        biggest = (ref_h + sizes[:, 1].max()) * (ref_w + sizes[:, 0].max())
        batch = int(np.clip(SPECTRUM_BUDGET // (2 * planes * biggest), 1, 32))
        found = []
        for start in range(0, len(order), batch):
            chosen_angles = order[start : start + batch]
            size = tuple(int(v) for v in sizes[chosen_angles].max(axis=0))
            canvas_center = np.array([(size[0] - 1) / 2.0, (size[1] - 1) / 2.0])
            warped = [level.warp(_rotation_about(angles[i], cf_level, canvas_center), size) for i in chosen_angles]
            moving = np.stack([w[0] for w in warped])
            mask = np.stack([w[1] for w in warped])
            min_rows = math.ceil(level.min_count / min(ref_w, size[0]) - 1e-9)
            min_cols = math.ceil(level.min_count / min(ref_h, size[1]) - 1e-9)
            y_lags = lag_range(ref_h, size[1], min_rows)
            x_lags = lag_range(ref_w, size[0], min_cols)
            best, lag = peak_lags(level.scores(moving, mask, y_lags, x_lags))
            for i, value, shift in zip(chosen_angles, best, lag, strict=True):
                if np.isfinite(value):
                    found.append((float(value), float(angles[i]), canvas_center + shift))
        return found

    @staticmethod
    def _distinct(found: list, spacing: float, count: int) -> list:
        """The best ``count`` of ``found`` (by score) whose angles are more than ``spacing`` apart."""
        chosen: list = []
        for item in sorted(found, key=lambda item: -item[0]):
            if all(abs(_wrap(item[1] - other[1])) > spacing + 1e-9 for other in chosen):
                chosen.append(item)
            if len(chosen) == count:
                break
        return chosen

    def _screened_angles(
        self,
        ref: np.ndarray,
        flo: np.ndarray,
        coarse_factor: float,
        angles: np.ndarray,
        cf: np.ndarray,
        masks: tuple[np.ndarray | None, np.ndarray | None] = (None, None),
    ) -> np.ndarray:
        """The coarse grid angles worth scoring, by a cheaper search at half the coarse resolution.

        Every other grid angle is scored at twice the coarse factor; the
        ``angle_screen`` best (no two adjacent) and their grid neighbours are
        returned.  The whole grid when the screen would not save work or its
        level would be smaller than ``SCREEN_MIN_PX``.
        """
        count = int(self.angle_screen)
        screen_factor = 2.0 * coarse_factor
        if count == 0 or len(angles) <= 3 * count or max(ref.shape + flo.shape) / screen_factor < SCREEN_MIN_PX:
            return angles
        level = _Level(self, ref, flo, screen_factor, np.float32, masks)
        index = np.arange(0, len(angles), 2)
        found = self._best_per_angle(level, angles[index], cf)
        if not found:  # nothing admissible at the screen's resolution: let the coarse level decide
            return angles
        keep = self._distinct(found, float(angles[2] - angles[0]), count)  # no two adjacent screen angles
        full_circle = float(self.angle_range_deg) >= 180.0
        chosen = set()
        for _, theta, _ in keep:
            i = int(np.argmin(np.abs(angles - theta)))  # theta is one of the grid's angles
            for j in (i - 1, i, i + 1):
                if full_circle:
                    chosen.add(j % len(angles))
                elif 0 <= j < len(angles):
                    chosen.add(j)
        return angles[sorted(chosen)]

    def _coarse(self, level: _Level, angles: np.ndarray, step_deg: float, cf: np.ndarray) -> list:
        """The top_k per-angle best translations with angles > 2 steps apart, in full-res terms."""
        found = self._best_per_angle(level, angles, cf)
        chosen = self._distinct(found, math.radians(2 * step_deg), int(self.top_k))
        return [(best, theta, _from_level(center, level.factor)) for best, theta, center in chosen]

    def _refine_pass(self, level: _Level, candidate, delta: float, offsets: np.ndarray, window: int, cf: np.ndarray):
        """Angles theta + k delta, translations in +-window (level px) around the candidate."""
        _, theta0, center = candidate
        cf_level = _to_level(cf, level.factor)
        c_level = _to_level(center, level.factor)
        ref_h, ref_w = level.ref.shape
        size = (ref_w + 2 * window, ref_h + 2 * window)
        lags = np.arange(-2 * window, 1)
        limit = math.radians(float(self.angle_range_deg))
        samples = []
        for offset in offsets:
            theta = theta0 + offset * delta
            if self.angle_range_deg < 180:
                theta = float(np.clip(theta, -limit, limit))
            # canvas pixel q <-> reference-level point q - window
            matrix = _rotation_about(theta, cf_level, c_level + window)
            moving, mask = level.warp(matrix, size)
            best, lag = peak_lags(level.scores(moving, mask, lags, lags))
            samples.append((float(best), theta, c_level + window + lag))
        scores = np.array([s[0] for s in samples])
        k = int(np.argmax(scores))
        if not np.isfinite(scores[k]):
            return None
        theta, c_best = samples[k][1], samples[k][2]
        if 0 < k < len(samples) - 1:
            shift = _parabola(scores[k - 1], scores[k], scores[k + 1])
            if shift != 0.0:
                neighbour = samples[k + (1 if shift > 0 else -1)]
                theta += abs(shift) * (neighbour[1] - theta)
                c_best = c_best + abs(shift) * (neighbour[2] - c_best)
        return float(scores[k]), float(theta), _from_level(c_best, level.factor)

    def _direct_score(self, level: _Level, matrix: np.ndarray) -> float:
        """Score of one (sub-pixel) transform on the overlap at ``level`` (full resolution)."""
        if self.score == "ncc":
            return overlap_ncc(level.ref, level.flo, matrix, level.min_count, level.ref_mask, level.flo_valid)
        moving, mask = level.warp(matrix, (level.ref.shape[1], level.ref.shape[0]))
        mask &= level.ref_mask
        if int(np.count_nonzero(mask)) < level.min_count:
            return -math.inf
        labels, _ = equal_mass_levels(moving[mask], level.levels, edges=level.flo_edges)
        return histogram_mi(level.ref_labels[mask], labels, level.levels)

    @timed
    def register(
        self,
        reference: np.ndarray,
        floating: np.ndarray,
        reference_mask: np.ndarray | None = None,
        floating_mask: np.ndarray | None = None,
    ) -> RegistrationResult:
        """Floating -> reference by the global search, coarse to fine (see the module docstring).

        Parameters
        ----------
        reference, floating : numpy.ndarray
            ``(H, W)`` or ``(H, W, C)`` images with the same ``C`` (reduced to one channel, the floating
            image with the reference's basis).
        reference_mask, floating_mask : numpy.ndarray or None, optional
            Boolean ``(H, W)`` valid-pixel masks; None: every pixel is valid. Default None.

        Returns
        -------
        RegistrationResult
            The floating -> reference transform (rigid, or the model ``transform`` after ECC); ``metric``
            the final score at full resolution, higher is better. Failed for a constant image or when
            no translation meets ``min_overlap``.
        """
        with sfft.set_workers(int(self.threads)):  # FFT threads; the default 1 is single-threaded
            return self._register(reference, floating, (reference_mask, floating_mask))

    def _register(
        self, reference: np.ndarray, floating: np.ndarray, masks: tuple[np.ndarray | None, np.ndarray | None]
    ) -> RegistrationResult:
        ref, basis = to_single_channel(fill_invalid(reference, masks[0]))
        flo, _ = to_single_channel(fill_invalid(floating, masks[1]), basis)
        ref = np.ascontiguousarray(ref, dtype=np.float32)
        flo = np.ascontiguousarray(flo, dtype=np.float32)
        for role, image in (("reference", ref), ("floating", flo)):
            if not np.ptp(image) > 0:
                return RegistrationResult.failed(f"{role} image is constant")

        coarse_factor = max(1.0, max(ref.shape + flo.shape) / float(self.downsample))
        factors = [coarse_factor]
        while factors[-1] > 1.0:
            factors.append(max(1.0, factors[-1] / 2.0))
        passes = factors[1:]
        while len(passes) < 2:
            passes.append(1.0)
        levels: dict[float, _Level] = {}

        def level(factor: float) -> _Level:
            if factor not in levels:
                # float32 spectra on small levels (exact enough to round counts),
                # float64 where the counts or sums get large.
                small = max(ref.size, flo.size) / factor**2 <= 2**16
                levels[factor] = _Level(self, ref, flo, factor, np.float32 if small else np.float64, masks)
            return levels[factor]

        cf = g.image_center(flo.shape)
        angles, step = angle_grid(float(self.angle_range_deg), float(self.angle_step_deg))
        angles = self._screened_angles(ref, flo, coarse_factor, angles, cf, masks)
        candidates = self._coarse(level(coarse_factor), angles, step, cf)
        if not candidates:
            return RegistrationResult.failed(
                f"no translation overlaps by min_overlap={self.min_overlap} at the coarse level"
            )
        delta = math.radians(step) / 4.0
        previous = coarse_factor
        for index, factor in enumerate(passes):
            window = max(3, int(math.ceil(1.5 * previous / factor + 1)))
            if float(self.angle_range_deg) == 0.0:
                offsets = np.zeros(1)  # translation only
            else:
                offsets = np.arange(-2, 3) if index == 0 else np.arange(-1, 2)
            refined = [self._refine_pass(level(factor), c, delta, offsets, window, cf) for c in candidates]
            refined = [c for c in refined if c is not None]
            if refined:
                refined.sort(key=lambda item: -item[0])
                candidates = refined[:1]  # the top_k compete in the first pass only
            elif index == 0:
                candidates = candidates[:1]
            delta /= 2.0
            previous = factor

        _, theta, center = candidates[0]
        matrix = _rotation_about(theta, cf, center)
        full = level(1.0)
        best = self._direct_score(full, matrix)
        note = f"angle {math.degrees(theta):.3f} deg"
        if self.refine:
            masks = (None if full.ref_mask.all() else full.ref_mask, full.flo_valid)
            polished = ecc_refine(full.ref, full.flo, matrix, transform=self.transform, masks=masks)
            if polished is not None:
                angle = float(g.rotation_angle(polished))
                inside = self.angle_range_deg >= 180 or abs(angle) <= math.radians(self.angle_range_deg)
                score = self._direct_score(full, polished) if inside else -math.inf
                if score > best:
                    matrix, best = polished, score
                    note += f"; ECC -> {math.degrees(angle):.3f} deg"
        if not np.isfinite(best):
            return RegistrationResult.failed(f"no admissible overlap at full resolution ({note})")
        return RegistrationResult(matrix, OK, best, 0.0, f"{self.score} {best:.4f}; {note}")


def overlap_ncc(
    reference: np.ndarray,
    floating: np.ndarray,
    matrix: np.ndarray,
    min_count: int,
    reference_mask: np.ndarray | None = None,
    floating_mask: np.ndarray | None = None,
) -> float:
    """Pearson correlation of ``reference`` and ``floating`` warped by ``matrix`` (floating -> reference).

    Computed on the (valid) pixels of the reference that the bilinearly warped
    (valid) floating image covers; ``-inf`` when fewer than ``min_count``
    pixels overlap or either side is flat there.

    Parameters
    ----------
    reference, floating : numpy.ndarray
        Single-channel float32 images (sizes may differ).
    matrix : numpy.ndarray
        The 2x3 floating -> reference transform.
    min_count : int
        Least number of overlapping valid pixels (at least 2 in any case).
    reference_mask, floating_mask : numpy.ndarray or None, optional
        Booleans or 0/1 of their images' shapes; None: all valid. Default None.

    Returns
    -------
    float
        The correlation in [-1, 1], or ``-inf``.
    """
    valid = None if floating_mask is None else np.asarray(floating_mask, dtype=np.float32)
    moving, mask = warp_with_validity(floating, matrix, (reference.shape[1], reference.shape[0]), valid)
    if reference_mask is not None:
        mask &= np.asarray(reference_mask, dtype=bool)
    if int(np.count_nonzero(mask)) < max(2, int(min_count)):
        return -math.inf
    a = reference[mask].astype(np.float64)
    b = moving[mask].astype(np.float64)
    a -= a.mean()
    b -= b.mean()
    denominator = math.sqrt(float(np.dot(a, a)) * float(np.dot(b, b)))
    return float(np.dot(a, b) / denominator) if denominator > 0 else -math.inf


def ecc_refine(
    reference: np.ndarray,
    floating: np.ndarray,
    matrix: np.ndarray,
    iterations: int = 50,
    transform: str = "rigid",
    masks: tuple[np.ndarray | None, np.ndarray | None] = (None, None),
) -> np.ndarray | None:
    """ECC (``cv2.findTransformECC``) from ``matrix`` (floating -> reference); None if it fails.

    Rigid uses ECC's Euclidean warp, made exactly rigid (it is, up to float32
    rounding); affine ECC's affine warp; similarity the affine warp
    projected onto the closest similarity (OpenCV has no similarity ECC).  The
    projection keeps where the floating image's centre goes.

    Parameters
    ----------
    reference, floating : numpy.ndarray
        Single-channel float32 images of any sizes.
    matrix : numpy.ndarray
        The 2x3 floating -> reference start.
    iterations : int, optional
        ECC's most iterations (it also stops at a change below 1e-6). Default 50.
    transform : str, optional
        The model: ``"rigid"``, ``"similarity"`` or ``"affine"``. Default ``"rigid"``.
    masks : tuple of (numpy.ndarray or None), optional
        Reference and floating masks (booleans or 0/1, None: all valid): ECC's template mask is the
        reference mask and the floating mask warped by ``matrix`` (ECC takes one mask, on the
        reference grid). Default ``(None, None)``.

    Returns
    -------
    numpy.ndarray or None
        The refined 2x3 floating -> reference matrix of model ``transform``; None when ECC raises or
        its warp is not finite.

    Raises
    ------
    ValueError
        If ``transform`` is not a known model.
    """
    import cv2

    g.check_transform(transform)
    motion = cv2.MOTION_EUCLIDEAN if transform == "rigid" else cv2.MOTION_AFFINE
    warp = g.invert(matrix).astype(np.float32)  # ECC's warp: reference -> floating
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, int(iterations), 1e-6)
    template_mask = None
    if masks[0] is not None or masks[1] is not None:
        valid = None if masks[1] is None else np.asarray(masks[1], dtype=np.float32)
        _, template_mask = warp_with_validity(floating, matrix, (reference.shape[1], reference.shape[0]), valid)
        if masks[0] is not None:
            template_mask &= np.asarray(masks[0], dtype=bool)
        template_mask = template_mask.astype(np.uint8)
    try:
        _, warp = cv2.findTransformECC(reference, floating, warp, motion, criteria, template_mask, 1)
    except cv2.error:
        return None
    if not np.all(np.isfinite(warp)):
        return None
    polished = g.invert(np.asarray(warp, dtype=np.float64))
    return g.nearest_transform(transform, polished, g.image_center(floating.shape))


def _wrap(angle: float) -> float:
    """``angle`` (radians) wrapped to [-pi, pi)."""
    return (angle + math.pi) % (2 * math.pi) - math.pi


__all__ = ["FFTSearchRegistration", "angle_grid", "ecc_refine", "overlap_ncc", "peak_lags"]
