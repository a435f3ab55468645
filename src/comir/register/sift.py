"""SIFT feature matching + rigid RANSAC (the paper's Fiji SIFT setting).

Spec (method doc, section 7): descriptor 4x4 x 8 bins, 4 steps per octave,
sigma 1.6, ratio test 0.9, RANSAC with a rigid model (rotation + translation,
no scale), 1000 iterations, max error 25 px, min inlier ratio 0.05, >= 5
inliers; on failure report failure (identity).

These are the defaults (``preset="paper"``).  ``preset="opencv"`` takes
OpenCV's usual settings instead: ``cv2.SIFT_create()``'s defaults (3 steps per
octave, sigma 1.6, contrast threshold 0.04, edge threshold 10), the ratio test
at 0.75 of OpenCV's feature-matching tutorials (Lowe's paper: 0.8), and the
RANSAC tolerance and iteration count of ``cv2.estimateAffinePartial2D`` (3 px,
2000 iterations).  OpenCV has no acceptance rule, so ``min_inliers`` and
``min_inlier_ratio`` keep the paper's values in both presets, and the model
stays rigid (OpenCV's partial-affine model would also fit a scale).  Any
parameter given explicitly overrides its preset value.

Detection and description use OpenCV's SIFT (its descriptor is the standard
4x4 x 8 bins).  Fiji's octave size limits (128-1024 px) have no OpenCV
counterpart; OpenCV starts from the 2x up-sampled image and descends until the
image is tiny, which covers that range for the paper's image sizes.  The RANSAC
is our own, because OpenCV only offers similarity/affine models.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import ClassVar

import numpy as np

from comir.geometry import fit_rigid
from comir.io import to_uint8
from comir.register.base import OK, RegistrationResult, timed, to_single_channel

# Parameter values of the presets; a parameter left at None takes its preset's value.
PRESETS: dict[str, dict[str, float | int]] = {
    "paper": dict(
        octave_layers=4,
        sigma=1.6,
        contrast_threshold=0.04,
        edge_threshold=10.0,
        ratio=0.9,
        ransac_iterations=1000,
        max_error_px=25.0,
        min_inlier_ratio=0.05,
        min_inliers=5,
    ),
    "opencv": dict(
        octave_layers=3,  # cv2.SIFT_create() defaults
        sigma=1.6,
        contrast_threshold=0.04,
        edge_threshold=10.0,
        ratio=0.75,  # the ratio test of OpenCV's tutorials
        ransac_iterations=2000,  # cv2.estimateAffinePartial2D: maxIters=2000,
        max_error_px=3.0,  # ransacReprojThreshold=3
        min_inlier_ratio=0.05,  # no OpenCV counterpart: the paper's acceptance rule
        min_inliers=5,
    ),
}

# Upper bound on the number of (hypothesis, match) residuals held at once.
_RESIDUAL_BUDGET = 4_000_000


def rigid_hypotheses(
    source: np.ndarray, target: np.ndarray, pairs: np.ndarray
) -> np.ndarray:
    """Rigid transforms through the point pairs ``pairs`` (shape (N, 2) of indices).

    Each hypothesis uses two correspondences: the angle turns the source
    segment onto the target segment and the translation sends the source
    midpoint onto the target midpoint (the least-squares fit for two pairs).
    Returns (N, 2, 3) matrices.
    """
    s0, s1 = source[pairs[:, 0]], source[pairs[:, 1]]
    t0, t1 = target[pairs[:, 0]], target[pairs[:, 1]]
    ds, dt = s1 - s0, t1 - t0
    angle = np.arctan2(
        ds[:, 0] * dt[:, 1] - ds[:, 1] * dt[:, 0], ds[:, 0] * dt[:, 0] + ds[:, 1] * dt[:, 1]
    )
    cos, sin = np.cos(angle), np.sin(angle)
    sm, tm = (s0 + s1) / 2, (t0 + t1) / 2
    tx = tm[:, 0] - (cos * sm[:, 0] - sin * sm[:, 1])
    ty = tm[:, 1] - (sin * sm[:, 0] + cos * sm[:, 1])
    return np.stack(
        [np.stack([cos, -sin, tx], axis=1), np.stack([sin, cos, ty], axis=1)], axis=1
    )


def _score_hypotheses(
    hypotheses: np.ndarray, source: np.ndarray, target: np.ndarray, max_error: float
) -> tuple[np.ndarray, np.ndarray]:
    """Inlier count (residual < max_error) and summed squared inlier residual per hypothesis.

    The residuals form one (hypotheses x matches) array (computed in chunks of
    hypotheses only when that array would be very large).
    """
    counts = np.empty(len(hypotheses), dtype=np.int64)
    costs = np.empty(len(hypotheses), dtype=float)
    chunk = max(1, _RESIDUAL_BUDGET // max(len(source), 1))
    limit = max_error * max_error
    for start in range(0, len(hypotheses), chunk):
        h = hypotheses[start : start + chunk]
        px = h[:, 0, 0, None] * source[None, :, 0] + h[:, 0, 1, None] * source[None, :, 1] + h[:, 0, 2, None]
        py = h[:, 1, 0, None] * source[None, :, 0] + h[:, 1, 1, None] * source[None, :, 1] + h[:, 1, 2, None]
        squared = (px - target[None, :, 0]) ** 2 + (py - target[None, :, 1]) ** 2
        inlier = squared < limit
        counts[start : start + chunk] = np.count_nonzero(inlier, axis=1)
        costs[start : start + chunk] = np.where(inlier, squared, 0.0).sum(axis=1)
    return counts, costs


def _inliers(matrix: np.ndarray, source: np.ndarray, target: np.ndarray, max_error: float) -> np.ndarray:
    mapped = source @ matrix[:, :2].T + matrix[:, 2]
    return np.sum((mapped - target) ** 2, axis=1) < max_error * max_error


def ransac_rigid(
    source: np.ndarray,
    target: np.ndarray,
    iterations: int,
    max_error: float,
    rng: np.random.Generator,
    refits: int = 5,
) -> tuple[np.ndarray, np.ndarray]:
    """Robust rigid fit sending ``source`` points (K, 2) onto ``target`` points.

    Draws all ``iterations`` minimal samples (two distinct correspondences) at
    once, builds all hypotheses at once, scores them by their inlier count
    (residual < ``max_error``; ties broken by the smallest summed squared
    inlier residual) and keeps the best; then refits on its inliers with
    :func:`comir.geometry.fit_rigid` (least squares) and recounts, repeating
    while the inlier set changes (at most ``refits`` refits).  Returns ``(matrix,
    inlier_mask)``; the matrix is always rigid (no scale).  Needs K >= 2.
    """
    source = np.asarray(source, dtype=float).reshape(-1, 2)
    target = np.asarray(target, dtype=float).reshape(-1, 2)
    count = len(source)
    if count != len(target):
        raise ValueError(f"{count} source points but {len(target)} target points")
    if count < 2:
        raise ValueError(f"RANSAC needs at least 2 correspondences, got {count}")
    first = rng.integers(0, count, size=iterations)
    second = (first + rng.integers(1, count, size=iterations)) % count  # distinct from first
    hypotheses = rigid_hypotheses(source, target, np.stack([first, second], axis=1))
    counts, costs = _score_hypotheses(hypotheses, source, target, max_error)
    # Most inliers wins; among equals, the smallest summed inlier residual.
    best = np.lexsort((costs, -counts))[0]
    matrix = hypotheses[best]
    inliers = _inliers(matrix, source, target, max_error)
    for _ in range(refits):
        if np.count_nonzero(inliers) < 2:
            break
        matrix = fit_rigid(source[inliers], target[inliers])
        refit_inliers = _inliers(matrix, source, target, max_error)
        if np.array_equal(refit_inliers, inliers):
            break
        inliers = refit_inliers
    inliers = _inliers(matrix, source, target, max_error)
    return matrix, inliers


@dataclass
class SiftRegistration:
    """SIFT keypoints on both images, Lowe ratio test, rigid RANSAC.

    ``preset``: "paper" (the spec's Fiji settings, default) or "opencv"
    (OpenCV's defaults, see the module doc) gives every parameter left at
    ``None``; ``octave_layers``: SIFT steps per octave; ``sigma``: Gaussian of
    the first octave; ``contrast_threshold``/``edge_threshold``: OpenCV's
    keypoint filters; ``ratio``: keep a match if d1 < ratio * d2;
    ``ransac_iterations``, ``max_error_px``, ``min_inlier_ratio`` (inliers /
    ratio-test matches), ``min_inliers``: RANSAC settings; ``seed``: RANSAC
    sampling.

    Multi-channel inputs are projected to one channel with the reference's
    first principal component (the floating image reuses the reference's
    basis), then each is stretched to uint8 by its own 0.5-99.5 percentiles.
    """

    name: ClassVar[str] = "sift"

    preset: str = "paper"
    octave_layers: int | None = None
    sigma: float | None = None
    contrast_threshold: float | None = None
    edge_threshold: float | None = None
    ratio: float | None = None
    ransac_iterations: int | None = None
    max_error_px: float | None = None
    min_inlier_ratio: float | None = None
    min_inliers: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(f"preset must be one of {tuple(PRESETS)}, got {self.preset!r}")
        for field in fields(self):
            if field.name in PRESETS[self.preset] and getattr(self, field.name) is None:
                setattr(self, field.name, PRESETS[self.preset][field.name])
        if int(self.octave_layers) < 1:
            raise ValueError(f"octave_layers must be >= 1, got {self.octave_layers}")
        if not 0 < float(self.ratio) <= 1:
            raise ValueError(f"ratio must be in (0, 1], got {self.ratio}")
        if int(self.ransac_iterations) < 1:
            raise ValueError(f"ransac_iterations must be >= 1, got {self.ransac_iterations}")
        if float(self.max_error_px) <= 0:
            raise ValueError(f"max_error_px must be > 0, got {self.max_error_px}")
        if float(self.sigma) <= 0:
            raise ValueError(f"sigma must be > 0, got {self.sigma}")
        if int(self.min_inliers) < 2:
            raise ValueError(f"min_inliers must be >= 2, got {self.min_inliers}")

    def _to_uint8(self, reference: np.ndarray, floating: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ref, basis = to_single_channel(reference)
        flo, _ = to_single_channel(floating, basis)
        return to_uint8(ref), to_uint8(flo)

    def correspondences(self, reference: np.ndarray, floating: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Ratio-test matches as (floating points, reference points), each (K, 2) in (x, y)."""
        import cv2

        ref8, flo8 = self._to_uint8(reference, floating)
        sift = cv2.SIFT_create(
            nfeatures=0,
            nOctaveLayers=int(self.octave_layers),
            contrastThreshold=float(self.contrast_threshold),
            edgeThreshold=float(self.edge_threshold),
            sigma=float(self.sigma),
        )
        ref_kp, ref_desc = sift.detectAndCompute(ref8, None)
        flo_kp, flo_desc = sift.detectAndCompute(flo8, None)
        empty = np.empty((0, 2))
        if ref_desc is None or flo_desc is None or len(ref_kp) < 2 or len(flo_kp) < 1:
            return empty, empty
        matcher = cv2.BFMatcher(cv2.NORM_L2, crossCheck=False)
        pairs = matcher.knnMatch(flo_desc, ref_desc, k=2)
        good = [
            m[0]
            for m in pairs
            if len(m) == 2 and m[0].distance < float(self.ratio) * m[1].distance
        ]
        if not good:
            return empty, empty
        flo_pts = np.array([flo_kp[m.queryIdx].pt for m in good], dtype=float)
        ref_pts = np.array([ref_kp[m.trainIdx].pt for m in good], dtype=float)
        return flo_pts, ref_pts

    @timed
    def register(self, reference: np.ndarray, floating: np.ndarray) -> RegistrationResult:
        flo_pts, ref_pts = self.correspondences(reference, floating)
        matches = len(flo_pts)
        if matches < 2:
            return RegistrationResult.failed(f"too few matches after the ratio test ({matches})")
        rng = np.random.default_rng(self.seed)
        matrix, inliers = ransac_rigid(
            flo_pts, ref_pts, int(self.ransac_iterations), float(self.max_error_px), rng
        )
        count = int(np.count_nonzero(inliers))
        note = f"{count} inliers of {matches} matches"
        if count < int(self.min_inliers):
            return RegistrationResult.failed(f"too few inliers: {note} (need {self.min_inliers})", metric=count)
        if count / matches < float(self.min_inlier_ratio):
            return RegistrationResult.failed(
                f"inlier ratio too low: {note} (need {self.min_inlier_ratio})", metric=count
            )
        return RegistrationResult(matrix, OK, count, 0.0, note)


__all__ = ["PRESETS", "SiftRegistration", "ransac_rigid", "rigid_hypotheses"]
