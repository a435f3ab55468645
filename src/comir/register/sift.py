"""SIFT feature matching + RANSAC, rigid by default (the paper's Fiji SIFT setting).

docs/method.md, section 7: the paper registers CoMIRs with Fiji's SIFT
(mpicbg's ``FloatArray2DSIFT``): descriptor 4x4 x 8 bins, 3 steps per octave,
initial sigma 1.6, octave sizes 128-1024 px, ratio test 0.9, ambiguous matches
removed, RANSAC with a rigid model (rotation + translation, no scale), 1000
iterations, max error 25 px, min inlier ratio 0.05, >= 5 inliers; on failure
report failure (identity).

Presets (``preset``; any parameter given explicitly overrides its preset value):

* ``paper`` (default): the paper's text, above.
* ``authors``: the authors' Fiji script, which used 4 steps per octave; every
  other value as ``paper``.
* ``opencv``: OpenCV's usual settings: ``cv2.SIFT_create()``'s defaults (3
  steps per octave, sigma 1.6, contrast threshold 0.04, edge threshold 10, all
  octaves from the 2x up-sampled image down), the ratio test at 0.75 of
  OpenCV's feature-matching tutorials (Lowe's paper: 0.8), no removal of
  ambiguous matches, and the RANSAC tolerance and iteration count of
  ``cv2.estimateAffinePartial2D`` (3 px, 2000 iterations).  OpenCV has no
  acceptance rule, so ``min_inliers`` and ``min_inlier_ratio`` keep the
  paper's values, and the model stays rigid (OpenCV's partial-affine model
  would also fit a scale).

Detection and description use OpenCV's SIFT (its descriptor is the standard
4x4 x 8 bins).  Fiji's octave size limits are reproduced around it
(``min_octave_px`` / ``max_octave_px``; ``None`` or 0: no limit):

* Fiji builds its octaves from the image itself, halving it (``ceil``) each
  octave, and skips every octave with a side above ``max_octave_px``.  An image
  whose longest side exceeds ``max_octave_px`` is therefore halved (area
  interpolation) until it fits, exactly Fiji's first used octave, before
  OpenCV sees it; keypoint coordinates and sizes are mapped back to the input
  image's pixels.  (Not a resize to exactly ``max_octave_px``: Fiji only ever
  uses halvings of the image.)
* OpenCV starts from the 2x up-sampled image (octave -1 in ``kp.octave & 255``,
  a signed byte) and descends until the image is tiny.  Fiji has neither, so
  the keypoints of the up-sampled octave and of every octave whose image has a
  shortest side below ``min_octave_px`` are dropped (keypoints and descriptors
  together).  On 256 px patches with the paper's 128 px this leaves the 256
  and 128 px octaves.

Fiji also removes ambiguous matches (``unique_matches``): after the ratio test,
every match whose reference point (its coordinates: OpenCV, like Fiji, may
give one location several orientations) is the target of more than one match
is removed, all of them.  The RANSAC is our own, because OpenCV only offers
similarity/affine models; it fits the ``transform`` model (rigid, the paper's;
similarity or affine for pairs that also differ in scale or shear,
docs/method.md, section 13).

The presets on clean and noisy pairs: docs/results/method-settings.md.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import ClassVar, NamedTuple

import numpy as np

from comir.geometry import check_transform, fit_transform
from comir.imaging.masks import working_mask
from comir.io import to_uint8
from comir.register.base import OK, RegistrationFailure, RegistrationResult, fill_invalid, timed, to_single_channel

# The paper's text (Fiji's SIFT as the paper describes it); "authors" differs in the steps per octave.
_FIJI: dict[str, float | int | bool | None] = dict(
    octave_layers=3,
    sigma=1.6,
    contrast_threshold=0.04,
    edge_threshold=10.0,
    ratio=0.9,
    ransac_iterations=1000,
    max_error_px=25.0,
    min_inlier_ratio=0.05,
    min_inliers=5,
    min_octave_px=128,
    max_octave_px=1024,
    unique_matches=True,
)

# Parameter values of the presets; a parameter left at None takes its preset's value.
PRESETS: dict[str, dict[str, float | int | bool | None]] = {
    "paper": dict(_FIJI),
    "authors": {**_FIJI, "octave_layers": 4},  # the authors' Fiji script: 4 steps per octave
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
        min_octave_px=None,  # every octave OpenCV builds
        max_octave_px=None,
        unique_matches=False,
    ),
}

# Upper bound on the number of (floating, reference) descriptor distances held at once.
_DISTANCE_BUDGET = 4_000_000


class Features(NamedTuple):
    """SIFT keypoints of one image, after the octave limits (docs/method.md, section 7).

    ``points``: (N, 2) float64 ``(x, y)`` in the input image's pixels;
    ``descriptors``: (N, 128) float32; ``octaves``: (N,) OpenCV octave of each
    keypoint in the detection image (-1: the 2x up-sampled image, 0: the
    detection image itself, k: halved k times); ``octave_sides``: (N,) shortest
    side (px) of that octave's image; ``sizes``: (N,) keypoint diameter in
    input pixels; ``factor``: input pixels per detection-image pixel (a power
    of two, 1 unless the image was halved to fit ``max_octave_px``).
    """

    points: np.ndarray
    descriptors: np.ndarray
    octaves: np.ndarray
    octave_sides: np.ndarray
    sizes: np.ndarray
    factor: int = 1


def decode_octaves(packed: np.ndarray) -> np.ndarray:
    """OpenCV's octave index from ``KeyPoint.octave``: its low byte as a signed byte (-1 = up-sampled).

    Parameters
    ----------
    packed : numpy.ndarray
        ``KeyPoint.octave`` values (octave, layer and scale packed by OpenCV).

    Returns
    -------
    numpy.ndarray
        int64 octave indices, the shape of ``packed``.
    """
    return ((np.asarray(packed, dtype=np.int64) & 255) ^ 128) - 128


def octave_sides(octaves: np.ndarray, shortest_side: int) -> np.ndarray:
    """Shortest side (px) of OpenCV's octave images: doubled for -1, halved (floor, as OpenCV) per octave.

    Parameters
    ----------
    octaves : numpy.ndarray
        Octave indices (:func:`decode_octaves`).
    shortest_side : int
        The detection image's shortest side in pixels.

    Returns
    -------
    numpy.ndarray
        int64 sides, the shape of ``octaves``.
    """
    octaves = np.asarray(octaves, dtype=np.int64)
    side = np.int64(shortest_side)
    return np.where(octaves >= 0, side >> np.maximum(octaves, 0), side << np.maximum(-octaves, 0))


def halving_factor(height: int, width: int, max_octave_px: int | None) -> int:
    """Fiji's first used octave: the smallest power of two ``f`` with ``ceil(side / f) <= max_octave_px``.

    Parameters
    ----------
    height, width : int
        The image's size in pixels (its longest side counts).
    max_octave_px : int or None
        Fiji's largest octave side; None or 0: no limit.

    Returns
    -------
    int
        The factor ``f`` (1 when the image fits).
    """
    longest = max(int(height), int(width))
    if not max_octave_px or longest <= max_octave_px:
        return 1
    # ceil(longest / f) <= m  <=>  f >= longest / m  <=>  f >= ceil(longest / m), the next power of two.
    return 1 << (-(-longest // int(max_octave_px)) - 1).bit_length()


def match_descriptors(
    query: np.ndarray, train: np.ndarray, ratio: float
) -> tuple[np.ndarray, np.ndarray]:
    """Lowe's ratio test: indices ``(query_index, train_index)`` of the matches that pass it.

    A query descriptor matches its nearest train descriptor when their distance is below ``ratio``
    times the distance to the second nearest. Euclidean distances from ``|q|^2 + |t|^2 - 2 q.t``
    in float64, in chunks of query rows that bound the distance matrix.

    Parameters
    ----------
    query : numpy.ndarray
        ``(N, D)`` descriptors to match.
    train : numpy.ndarray
        ``(M, D)`` descriptors matched against, ``M >= 2``.
    ratio : float
        The ratio test's threshold.

    Returns
    -------
    query_index : numpy.ndarray
        Indices of the query descriptors that pass, ascending.
    train_index : numpy.ndarray
        The index of each one's nearest train descriptor.

    Raises
    ------
    ValueError
        If there are fewer than 2 train descriptors.
    """
    query = np.asarray(query, dtype=np.float64)
    train = np.asarray(train, dtype=np.float64)
    if len(train) < 2:
        raise ValueError(f"the ratio test needs at least 2 train descriptors, got {len(train)}")
    train_sq = np.einsum("ij,ij->i", train, train)
    nearest = np.empty((len(query), 2), dtype=np.intp)
    distances = np.empty((len(query), 2))
    chunk = max(1, _DISTANCE_BUDGET // len(train))
    for start in range(0, len(query), chunk):  # chunks of rows, not single matches
        block = query[start : start + chunk]
        squared = np.einsum("ij,ij->i", block, block)[:, None] + train_sq[None, :] - 2.0 * block @ train.T
        two = np.argpartition(squared, 1, axis=1)[:, :2]
        values = np.take_along_axis(squared, two, axis=1)
        order = np.argsort(values, axis=1, kind="stable")
        nearest[start : start + chunk] = np.take_along_axis(two, order, axis=1)
        distances[start : start + chunk] = np.take_along_axis(values, order, axis=1)
    distances = np.sqrt(np.maximum(distances, 0.0))  # round-off can make a tiny square negative
    keep = distances[:, 0] < float(ratio) * distances[:, 1]
    return np.flatnonzero(keep), nearest[keep, 0]


def unique_targets(points: np.ndarray) -> np.ndarray:
    """Mask of the rows of ``points`` (K, 2) whose coordinates occur exactly once (Fiji's ambiguity rule).

    Parameters
    ----------
    points : numpy.ndarray
        ``(K, 2)`` points.

    Returns
    -------
    numpy.ndarray
        ``(K,)`` booleans.
    """
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if len(points) == 0:
        return np.zeros(0, dtype=bool)
    _, inverse, counts = np.unique(points, axis=0, return_inverse=True, return_counts=True)
    return counts[np.ravel(inverse)] == 1


def match_features(
    floating: Features, reference: Features, ratio: float, unique: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Ratio-test matches floating -> reference as (floating points, reference points), each (K, 2).

    With ``unique`` every match whose reference point is the target of more than
    one match is removed, all of them (Fiji's ``createMatches``).

    Parameters
    ----------
    floating, reference : Features
        The two images' keypoints.
    ratio : float
        The ratio test's threshold (:func:`match_descriptors`).
    unique : bool
        Remove ambiguous matches.

    Returns
    -------
    floating_points, reference_points : numpy.ndarray
        ``(K, 2)`` matched points ``(x, y)``; empty when the reference has fewer than 2 keypoints or
        the floating image none.
    """
    empty = np.empty((0, 2))
    if len(reference.points) < 2 or len(floating.points) < 1:
        return empty, empty
    flo_index, ref_index = match_descriptors(floating.descriptors, reference.descriptors, ratio)
    flo_pts, ref_pts = floating.points[flo_index], reference.points[ref_index]
    if unique:
        keep = unique_targets(ref_pts)
        flo_pts, ref_pts = flo_pts[keep], ref_pts[keep]
    return flo_pts, ref_pts


# Upper bound on the number of (hypothesis, match) residuals held at once.
_RESIDUAL_BUDGET = 4_000_000


def rigid_hypotheses(
    source: np.ndarray, target: np.ndarray, pairs: np.ndarray
) -> np.ndarray:
    """Rigid transforms through the point pairs ``pairs`` (shape (N, 2) of indices).

    Each hypothesis uses two correspondences: the angle turns the source
    segment onto the target segment and the translation sends the source
    midpoint onto the target midpoint (the least-squares fit for two pairs).

    Parameters
    ----------
    source, target : numpy.ndarray
        ``(K, 2)`` corresponding points.
    pairs : numpy.ndarray
        ``(N, 2)`` indices into the points.

    Returns
    -------
    numpy.ndarray
        ``(N, 2, 3)`` matrices.
    """
    s0, s1 = source[pairs[:, 0]], source[pairs[:, 1]]
    t0, t1 = target[pairs[:, 0]], target[pairs[:, 1]]
    ds, dt = s1 - s0, t1 - t0
    angle = np.arctan2(
        ds[:, 0] * dt[:, 1] - ds[:, 1] * dt[:, 0], ds[:, 0] * dt[:, 0] + ds[:, 1] * dt[:, 1]
    )
    return _through_midpoints(np.cos(angle), np.sin(angle), (s0 + s1) / 2, (t0 + t1) / 2)


def similarity_hypotheses(source: np.ndarray, target: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Similarity transforms through the point pairs ``pairs`` ((N, 2) indices): (N, 2, 3) matrices.

    The linear part is the complex ratio of the target segment to the source
    segment (rotation and scale); the source midpoint goes to the target
    midpoint.  A pair of coincident source points gives a NaN matrix (no inliers).

    Parameters
    ----------
    source, target : numpy.ndarray
        ``(K, 2)`` corresponding points.
    pairs : numpy.ndarray
        ``(N, 2)`` indices into the points.

    Returns
    -------
    numpy.ndarray
        ``(N, 2, 3)`` matrices.
    """
    s0, s1 = source[pairs[:, 0]], source[pairs[:, 1]]
    t0, t1 = target[pairs[:, 0]], target[pairs[:, 1]]
    ds, dt = s1 - s0, t1 - t0
    with np.errstate(divide="ignore", invalid="ignore"):
        norm = np.sum(ds * ds, axis=1)
        a = (ds[:, 0] * dt[:, 0] + ds[:, 1] * dt[:, 1]) / norm
        b = (ds[:, 0] * dt[:, 1] - ds[:, 1] * dt[:, 0]) / norm
    return _through_midpoints(a, b, (s0 + s1) / 2, (t0 + t1) / 2)


def _through_midpoints(a: np.ndarray, b: np.ndarray, source_mid: np.ndarray, target_mid: np.ndarray) -> np.ndarray:
    """(N, 2, 3) matrices with linear part ``[[a, -b], [b, a]]`` sending ``source_mid`` to ``target_mid``."""
    tx = target_mid[:, 0] - (a * source_mid[:, 0] - b * source_mid[:, 1])
    ty = target_mid[:, 1] - (b * source_mid[:, 0] + a * source_mid[:, 1])
    return np.stack([np.stack([a, -b, tx], axis=1), np.stack([b, a, ty], axis=1)], axis=1)


def affine_hypotheses(source: np.ndarray, target: np.ndarray, triples: np.ndarray) -> np.ndarray:
    """Affine transforms through the point triples ``triples`` ((N, 3) indices): (N, 2, 3) matrices.

    Solves the 3x3 systems all at once; a collinear triple gives a NaN matrix (no inliers).

    Parameters
    ----------
    source, target : numpy.ndarray
        ``(K, 2)`` corresponding points.
    triples : numpy.ndarray
        ``(N, 3)`` indices into the points.

    Returns
    -------
    numpy.ndarray
        ``(N, 2, 3)`` matrices.
    """
    design = np.concatenate([source[triples], np.ones(triples.shape + (1,))], axis=2)  # (N, 3, 3)
    rhs = target[triples]  # (N, 3, 2)
    determinant = np.linalg.det(design)
    degenerate = np.abs(determinant) < 1e-9
    design[degenerate] = np.eye(3)  # solvable placeholder, replaced by NaN below
    solution = np.linalg.solve(design, rhs)  # (N, 3, 2): rows x, y, 1 -> columns of the matrix
    matrices = np.swapaxes(solution, 1, 2)
    matrices[degenerate] = np.nan
    return matrices


# Correspondences per minimal sample, and the hypotheses built from them, per transform model.
MINIMAL_SAMPLES: dict[str, int] = {"rigid": 2, "similarity": 2, "affine": 3}
_HYPOTHESES = {"rigid": rigid_hypotheses, "similarity": similarity_hypotheses, "affine": affine_hypotheses}


def _distinct_samples(count: int, size: int, iterations: int, rng: np.random.Generator) -> np.ndarray:
    """(iterations, size) indices in [0, count), distinct within each row (size 2 or 3), uniformly drawn."""
    first = rng.integers(0, count, size=iterations)
    second = (first + rng.integers(1, count, size=iterations)) % count  # distinct from first
    if size == 2:
        return np.stack([first, second], axis=1)
    low, high = np.minimum(first, second), np.maximum(first, second)
    third = rng.integers(0, count - 2, size=iterations)
    third += third >= low  # skip the two taken indices, in increasing order
    third += third >= high
    return np.stack([first, second, third], axis=1)


def _score_hypotheses(
    hypotheses: np.ndarray, source: np.ndarray, target: np.ndarray, max_error: float
) -> tuple[np.ndarray, np.ndarray]:
    """Inlier count (residual < max_error) and summed squared inlier residual per hypothesis.

    The residuals form one (hypotheses x matches) array (computed in chunks of
    hypotheses only when that array would be very large).  A NaN hypothesis
    (a degenerate sample) has no inliers.
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


def ransac_fit(
    source: np.ndarray,
    target: np.ndarray,
    iterations: int,
    max_error: float,
    rng: np.random.Generator,
    transform: str = "rigid",
    refits: int = 5,
) -> tuple[np.ndarray, np.ndarray]:
    """Robust fit of model ``transform`` (rigid, similarity, affine) sending ``source`` points (K, 2) onto ``target``.

    Draws all ``iterations`` minimal samples (:data:`MINIMAL_SAMPLES`
    distinct correspondences) at once, builds all hypotheses at once, scores
    them by their inlier count (residual < ``max_error``; ties broken by the
    smallest summed squared inlier residual) and keeps the best; then refits
    on its inliers with :func:`comir.geometry.fit_transform` (least squares)
    and recounts, repeating while the inlier set changes (at most ``refits``
    refits).

    Parameters
    ----------
    source, target : numpy.ndarray
        ``(K, 2)`` corresponding points; K at least the minimal sample.
    iterations : int
        The number of minimal samples drawn.
    max_error : float
        Inlier tolerance in target pixels.
    rng : numpy.random.Generator
        The random stream of the samples.
    transform : str, optional
        ``"rigid"``, ``"similarity"`` or ``"affine"``. Default ``"rigid"``.
    refits : int, optional
        Most least-squares refits on the inliers. Default 5.

    Returns
    -------
    matrix : numpy.ndarray
        The 2x3 matrix, exactly of the model.
    inlier_mask : numpy.ndarray
        ``(K,)`` booleans: the correspondences within ``max_error`` of it.

    Raises
    ------
    ValueError
        For an unknown ``transform``, ``source`` and ``target`` of different lengths, or fewer
        correspondences than the minimal sample.
    numpy.linalg.LinAlgError
        If every sample was degenerate.
    """
    check_transform(transform)
    source = np.asarray(source, dtype=float).reshape(-1, 2)
    target = np.asarray(target, dtype=float).reshape(-1, 2)
    count = len(source)
    needed = MINIMAL_SAMPLES[transform]
    if count != len(target):
        raise ValueError(f"{count} source points but {len(target)} target points")
    if count < needed:
        raise ValueError(f"RANSAC of a {transform} transform needs at least {needed} correspondences, got {count}")
    samples = _distinct_samples(count, needed, iterations, rng)
    hypotheses = _HYPOTHESES[transform](source, target, samples)
    counts, costs = _score_hypotheses(hypotheses, source, target, max_error)
    # Most inliers wins; among equals, the smallest summed inlier residual.
    best = np.lexsort((costs, -counts))[0]
    matrix = hypotheses[best]
    if not np.all(np.isfinite(matrix)):
        raise np.linalg.LinAlgError(f"every RANSAC sample of the {transform} model was degenerate")
    inliers = _inliers(matrix, source, target, max_error)
    for _ in range(refits):
        if np.count_nonzero(inliers) < needed:
            break
        try:
            matrix = fit_transform(transform, source[inliers], target[inliers])
        except np.linalg.LinAlgError:  # inliers on one line: keep the sample's hypothesis
            break
        refit_inliers = _inliers(matrix, source, target, max_error)
        if np.array_equal(refit_inliers, inliers):
            break
        inliers = refit_inliers
    inliers = _inliers(matrix, source, target, max_error)
    return matrix, inliers


@dataclass
class SiftRegistration:
    """SIFT keypoints on both images, Lowe ratio test, RANSAC of ``transform`` (docs/method.md, section 7).

    ``preset``: "paper" (the paper's Fiji settings, default), "authors" (the
    authors' Fiji script: 4 steps per octave) or "opencv" (OpenCV's defaults)
    gives every parameter left at ``None``, see the module doc.
    ``octave_layers``: SIFT steps per octave; ``sigma``: Gaussian of the first
    octave; ``contrast_threshold``/``edge_threshold``: OpenCV's keypoint
    filters; ``min_octave_px``/``max_octave_px``: Fiji's octave size limits
    (shortest side of the smallest octave kept, longest side of the largest;
    0 = no limit, ``None`` = the preset's); ``ratio``: keep a match if
    d1 < ratio * d2; ``unique_matches``: remove every match whose reference
    point is the target of several matches; ``ransac_iterations``,
    ``max_error_px``, ``min_inlier_ratio`` (inliers / matches kept),
    ``min_inliers``: RANSAC settings; ``transform``: the RANSAC model,
    "rigid" (the paper's), "similarity" or "affine"; ``seed``: RANSAC sampling.

    Multi-channel inputs are projected to one channel with the reference's
    first principal component (the floating image reuses the reference's
    basis), then each is stretched to uint8 by its own 0.5-99.5 percentiles.

    Masks: invalid pixels are first set to the mean of the valid ones (no
    edge at the mask's border), and a keypoint is kept only where the disc of
    its size (diameter ``2 sigma`` of its scale, OpenCV's ``KeyPoint.size``)
    about it lies inside the valid pixels, so the border of a zero-filled region
    gives no keypoint.
    """

    name: ClassVar[str] = "sift"

    preset: str = "paper"
    octave_layers: int | None = None
    sigma: float | None = None
    contrast_threshold: float | None = None
    edge_threshold: float | None = None
    min_octave_px: int | None = None
    max_octave_px: int | None = None
    ratio: float | None = None
    unique_matches: bool | None = None
    ransac_iterations: int | None = None
    max_error_px: float | None = None
    min_inlier_ratio: float | None = None
    min_inliers: int | None = None
    transform: str = "rigid"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(f"preset must be one of {tuple(PRESETS)}, got {self.preset!r}")
        check_transform(self.transform)
        for field in fields(self):
            if field.name in PRESETS[self.preset] and getattr(self, field.name) is None:
                setattr(self, field.name, PRESETS[self.preset][field.name])
        for limit in ("min_octave_px", "max_octave_px"):
            value = getattr(self, limit)
            if value is not None:
                if int(value) != value or int(value) < 0:
                    raise ValueError(f"{limit} must be a whole number of pixels >= 0 (0: no limit), got {value}")
                setattr(self, limit, int(value) or None)  # 0 switches a preset's limit off
        low, high = self.min_octave_px, self.max_octave_px
        if low is not None and high is not None and low > high:
            raise ValueError(
                f"min_octave_px ({self.min_octave_px}) must not exceed max_octave_px ({self.max_octave_px})"
            )
        if not isinstance(self.unique_matches, (bool, np.bool_)):  # a quoted "false" would be truthy
            raise ValueError(f"unique_matches must be true or false, got {self.unique_matches!r}")
        self.unique_matches = bool(self.unique_matches)
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
        if int(self.min_inliers) < MINIMAL_SAMPLES[self.transform]:
            raise ValueError(
                f"min_inliers must be >= {MINIMAL_SAMPLES[self.transform]} for a {self.transform} "
                f"transform, got {self.min_inliers}"
            )

    @property
    def octave_limits(self) -> bool:
        """Whether Fiji's octave pyramid applies (either limit set): no up-sampled octave then."""
        return self.min_octave_px is not None or self.max_octave_px is not None

    def _to_uint8(self, reference: np.ndarray, floating: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ref, basis = to_single_channel(reference)
        flo, _ = to_single_channel(floating, basis)
        return to_uint8(ref), to_uint8(flo)

    def features(self, image8: np.ndarray, mask: np.ndarray | None = None) -> Features:
        """SIFT keypoints of a uint8 image (H, W) within the octave limits and the mask (see the module doc).

        Parameters
        ----------
        image8 : numpy.ndarray
            ``(H, W)`` uint8 image.
        mask : numpy.ndarray or None, optional
            Boolean ``(H, W)`` valid-pixel mask: a keypoint is kept only where the disc of its size lies
            inside the valid pixels; None: every pixel is valid. Default None.

        Returns
        -------
        Features
            The keypoints, in the input image's pixels.
        """
        import cv2

        image8 = np.asarray(image8)
        height, width = image8.shape
        factor = halving_factor(height, width, self.max_octave_px)
        detection = image8
        if factor > 1:
            # Fiji's octaves halve with ceil: the first used octave has these sides.
            size = (-(-width // factor), -(-height // factor))
            detection = cv2.resize(image8, size, interpolation=cv2.INTER_AREA)
            mask = working_mask(mask, detection.shape, 0.0)  # valid where all a detection pixel averages is
        sift = cv2.SIFT_create(
            nfeatures=0,
            nOctaveLayers=int(self.octave_layers),
            contrastThreshold=float(self.contrast_threshold),
            edgeThreshold=float(self.edge_threshold),
            sigma=float(self.sigma),
        )
        keypoints, descriptors = sift.detectAndCompute(detection, None)
        count = len(keypoints)
        if descriptors is None or count == 0:
            none = np.zeros(0, dtype=np.int64)
            return Features(np.empty((0, 2)), np.empty((0, 128), np.float32), none, none, np.zeros(0), factor)
        points = cv2.KeyPoint_convert(keypoints).astype(np.float64)
        # OpenCV's Python API has no bulk accessor for these fields: one pass over the keypoint objects.
        packed = np.fromiter((k.octave for k in keypoints), dtype=np.int64, count=count)
        sizes = np.fromiter((k.size for k in keypoints), dtype=np.float64, count=count)
        octaves = decode_octaves(packed)
        sides = octave_sides(octaves, min(detection.shape))
        keep = np.ones(count, dtype=bool)
        if self.octave_limits:
            keep &= octaves >= 0  # Fiji's pyramid starts at the image itself: no up-sampled octave
            if self.min_octave_px is not None:
                keep &= sides >= self.min_octave_px
        if mask is not None:
            # Distance of every detection pixel to the nearest invalid one, read at each keypoint.
            clearance = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
            cols = np.clip(np.rint(points[:, 0]).astype(np.intp), 0, detection.shape[1] - 1)
            rows = np.clip(np.rint(points[:, 1]).astype(np.intp), 0, detection.shape[0] - 1)
            keep &= clearance[rows, cols] >= sizes
        points, sizes = points[keep], sizes[keep]
        if factor > 1:
            # Detection-image pixel centres back to input pixels (cv2.resize's pixel-centre mapping).
            scale = np.array([width / detection.shape[1], height / detection.shape[0]])
            points = (points + 0.5) * scale - 0.5
            sizes = sizes * float(scale.mean())
        return Features(points, descriptors[keep], octaves[keep], sides[keep], sizes, factor)

    def _limits_note(self) -> str:
        if not self.octave_limits:
            return ""
        low = f"{self.min_octave_px}" if self.min_octave_px is not None else "any"
        high = f"{self.max_octave_px}" if self.max_octave_px is not None else "any"
        return f" in octaves of {low}-{high} px"

    def correspondences(
        self,
        reference: np.ndarray,
        floating: np.ndarray,
        reference_mask: np.ndarray | None = None,
        floating_mask: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Matches as (floating points, reference points), each (K, 2) in (x, y), keypoints inside the masks.

        Parameters
        ----------
        reference, floating : numpy.ndarray
            ``(H, W)`` or ``(H, W, C)`` images with the same ``C`` (reduced to one channel with the
            reference's basis and stretched to uint8).
        reference_mask, floating_mask : numpy.ndarray or None, optional
            Boolean ``(H, W)`` valid-pixel masks; None: every pixel is valid. Default None.

        Returns
        -------
        floating_points, reference_points : numpy.ndarray
            ``(K, 2)`` matched points (:func:`match_features`).

        Raises
        ------
        RegistrationFailure
            When an image has too few keypoints to match.
        """
        ref8, flo8 = self._to_uint8(fill_invalid(reference, reference_mask), fill_invalid(floating, floating_mask))
        ref_features, flo_features = self.features(ref8, reference_mask), self.features(flo8, floating_mask)
        counts = (len(ref_features.points), len(flo_features.points))
        if counts[0] < 2 or counts[1] < 1:
            raise RegistrationFailure(
                f"too few SIFT keypoints{self._limits_note()}: reference {counts[0]} "
                f"({ref8.shape[1]}x{ref8.shape[0]} px), floating {counts[1]} ({flo8.shape[1]}x{flo8.shape[0]} px)"
            )
        return match_features(flo_features, ref_features, float(self.ratio), bool(self.unique_matches))

    @timed
    def register(
        self,
        reference: np.ndarray,
        floating: np.ndarray,
        reference_mask: np.ndarray | None = None,
        floating_mask: np.ndarray | None = None,
    ) -> RegistrationResult:
        """Floating -> reference from the RANSAC fit to the SIFT matches, or a failure with its reason.

        Parameters
        ----------
        reference, floating : numpy.ndarray
            ``(H, W)`` or ``(H, W, C)`` images with the same ``C``.
        reference_mask, floating_mask : numpy.ndarray or None, optional
            Boolean ``(H, W)`` valid-pixel masks; None: every pixel is valid. Default None.

        Returns
        -------
        RegistrationResult
            The transform of the model ``transform``; ``metric`` the RANSAC inlier count. Failed with
            too few keypoints, matches or inliers, or too low an inlier ratio.
        """
        flo_pts, ref_pts = self.correspondences(reference, floating, reference_mask, floating_mask)
        matches = len(flo_pts)
        if matches < MINIMAL_SAMPLES[self.transform]:
            removal = " and the removal of ambiguous matches" if self.unique_matches else ""
            return RegistrationResult.failed(f"too few matches after the ratio test{removal} ({matches})")
        rng = np.random.default_rng(self.seed)
        matrix, inliers = ransac_fit(
            flo_pts, ref_pts, int(self.ransac_iterations), float(self.max_error_px), rng, self.transform
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


__all__ = [
    "PRESETS",
    "Features",
    "SiftRegistration",
    "decode_octaves",
    "halving_factor",
    "match_descriptors",
    "match_features",
    "octave_sides",
    "MINIMAL_SAMPLES",
    "affine_hypotheses",
    "ransac_fit",
    "rigid_hypotheses",
    "similarity_hypotheses",
    "unique_targets",
]
