"""2-D transforms (rigid, similarity, affine): one convention for the whole project.

* A point is ``(x, y)`` with ``x`` the column and ``y`` the row, in pixels; the
  centre of pixel ``[r, c]`` is the point ``(c, r)``.
* A transform is a 2x3 matrix ``M`` acting on homogeneous points,
  ``q = M @ (x, y, 1)``.
* Registration results and ground truth are always stored as the transform
  that sends a **floating**-image point to the **reference**-image point that
  shows the same place.
* Errors are the mean distance over the four corner pixels of the floating
  image between where the true and the estimated transform send them
  (the paper's corner error). The initial displacement of a case is the same
  quantity for the identity estimate.
"""

from __future__ import annotations

import numpy as np

IDENTITY = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
#: Names of a 2x3 matrix's entries, row by row, as in every table of transforms.
MATRIX_KEYS = ("a11", "a12", "tx", "a21", "a22", "ty")

# The transform models a registration can estimate (docs/method.md, section 13): rotation and
# translation (the paper's); plus one isotropic scale; any linear map plus translation.
TRANSFORMS: tuple[str, ...] = ("rigid", "similarity", "affine")


def rigid_matrix(
    angle_rad: float, tx: float, ty: float, center: tuple[float, float] = (0.0, 0.0)
) -> np.ndarray:
    """Rotation by ``angle_rad`` about ``center`` followed by translation ``(tx, ty)``.

    ``p -> R (p - c) + c + t``; a positive angle turns the x axis towards the
    y axis (clockwise on screen, since y points down).

    Parameters
    ----------
    angle_rad : float
        Rotation angle in radians.
    tx, ty : float
        Translation in pixels along x (columns) and y (rows).
    center : tuple of float, optional
        The rotation centre ``(x, y)`` in pixels. Default ``(0, 0)``.

    Returns
    -------
    numpy.ndarray
        The 2x3 matrix.
    """
    cos, sin = np.cos(angle_rad), np.sin(angle_rad)
    rotation = np.array([[cos, -sin], [sin, cos]])
    c = np.asarray(center, dtype=float)
    offset = c + np.array([tx, ty]) - rotation @ c
    return np.hstack([rotation, offset[:, None]])


def to_homogeneous(matrix: np.ndarray) -> np.ndarray:
    """(..., 2, 3) -> (..., 3, 3).

    Parameters
    ----------
    matrix : numpy.ndarray
        One or many affine matrices, ``(..., 2, 3)``.

    Returns
    -------
    numpy.ndarray
        ``(..., 3, 3)`` float matrices with the bottom row ``(0, 0, 1)``.
    """
    matrix = np.asarray(matrix, dtype=float)
    bottom = np.broadcast_to(np.array([0.0, 0.0, 1.0]), matrix.shape[:-2] + (1, 3))
    return np.concatenate([matrix, bottom], axis=-2)


def invert(matrix: np.ndarray) -> np.ndarray:
    """Inverse of one or many affine 2x3 matrices.

    Parameters
    ----------
    matrix : numpy.ndarray
        ``(..., 2, 3)`` invertible affine matrices.

    Returns
    -------
    numpy.ndarray
        ``(..., 2, 3)`` inverses.

    Raises
    ------
    numpy.linalg.LinAlgError
        If a matrix is singular.
    """
    return np.linalg.inv(to_homogeneous(matrix))[..., :2, :]


def compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """The transform ``p -> outer(inner(p))``.

    Parameters
    ----------
    outer : numpy.ndarray
        ``(..., 2, 3)`` transform applied second.
    inner : numpy.ndarray
        ``(..., 2, 3)`` transform applied first.

    Returns
    -------
    numpy.ndarray
        ``(..., 2, 3)`` composed transform (batch dimensions broadcast).
    """
    return (to_homogeneous(outer) @ to_homogeneous(inner))[..., :2, :]


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply (..., 2, 3) matrices to (..., K, 2) points.

    Parameters
    ----------
    matrix : numpy.ndarray
        ``(..., 2, 3)`` affine matrices.
    points : numpy.ndarray
        ``(..., K, 2)`` points ``(x, y)`` in pixels.

    Returns
    -------
    numpy.ndarray
        ``(..., K, 2)`` transformed points (batch dimensions broadcast).
    """
    matrix = np.asarray(matrix, dtype=float)
    points = np.asarray(points, dtype=float)
    return points @ np.swapaxes(matrix[..., :, :2], -1, -2) + matrix[..., None, :, 2]


def rotation_angle(matrix: np.ndarray) -> np.ndarray:
    """Rotation angle (radians) of rigid or similarity matrices (the angle of the x axis's image).

    Parameters
    ----------
    matrix : numpy.ndarray
        ``(..., 2, 3)`` matrices.

    Returns
    -------
    numpy.ndarray
        ``(...)`` angles in radians, in ``(-pi, pi]``.
    """
    matrix = np.asarray(matrix, dtype=float)
    return np.arctan2(matrix[..., 1, 0], matrix[..., 0, 0])


def scale_factor(matrix: np.ndarray) -> np.ndarray:
    """Isotropic scale of (batches of) 2x3 matrices: the square root of the area ratio ``|det A|``.

    Parameters
    ----------
    matrix : numpy.ndarray
        ``(..., 2, 3)`` matrices.

    Returns
    -------
    numpy.ndarray
        ``(...)`` scale factors.
    """
    linear = np.asarray(matrix, dtype=float)[..., :, :2]
    return np.sqrt(np.abs(np.linalg.det(linear)))


def check_transform(kind: str) -> str:
    """``kind`` if it is one of :data:`TRANSFORMS`, else a :class:`ValueError` listing them.

    Parameters
    ----------
    kind : str
        A transform model name.

    Returns
    -------
    str
        ``kind`` unchanged.

    Raises
    ------
    ValueError
        If ``kind`` is not in :data:`TRANSFORMS`.
    """
    if kind not in TRANSFORMS:
        raise ValueError(f"transform must be one of {', '.join(TRANSFORMS)}, got {kind!r}")
    return kind


def nearest_transform(kind: str, matrix: np.ndarray, anchor: np.ndarray) -> np.ndarray:
    """``matrix`` made exactly of model ``kind``, sending the point ``anchor`` (x, y) where it did.

    Rigid: the rotation of the linear part's closest similarity, unit scale;
    similarity: the closest similarity ``[[a, -b], [b, a]]`` (Frobenius norm:
    ``a``, ``b`` the means of the matching entries); affine: unchanged.

    Parameters
    ----------
    kind : str
        One of :data:`TRANSFORMS`.
    matrix : numpy.ndarray
        The 2x3 matrix to project.
    anchor : numpy.ndarray
        The point ``(x, y)`` whose image is kept.

    Returns
    -------
    numpy.ndarray
        The 2x3 matrix of model ``kind`` (a copy of ``matrix`` for affine).

    Raises
    ------
    ValueError
        If ``kind`` is not in :data:`TRANSFORMS`.
    """
    matrix = np.asarray(matrix, dtype=float)
    check_transform(kind)
    if kind == "affine":
        return matrix.copy()
    linear = matrix[:, :2]
    a = (linear[0, 0] + linear[1, 1]) / 2
    b = (linear[1, 0] - linear[0, 1]) / 2
    if kind == "rigid":
        norm = np.hypot(a, b)
        a, b = a / norm, b / norm
    projected = np.array([[a, -b], [b, a]])
    anchor = np.asarray(anchor, dtype=float)
    offset = linear @ anchor + matrix[:, 2] - projected @ anchor
    return np.hstack([projected, offset[:, None]])


def image_center(shape: tuple[int, ...]) -> np.ndarray:
    """Geometric centre ``(x, y)`` of an image of array shape (H, W[, C]).

    Parameters
    ----------
    shape : tuple of int
        The array shape ``(H, W)`` or ``(H, W, C)``.

    Returns
    -------
    numpy.ndarray
        ``((W - 1) / 2, (H - 1) / 2)``.
    """
    return np.array([(shape[1] - 1) / 2.0, (shape[0] - 1) / 2.0])


def corners(width: int, height: int) -> np.ndarray:
    """Centres of the four corner pixels, shape (4, 2).

    Parameters
    ----------
    width, height : int
        The image size in pixels.

    Returns
    -------
    numpy.ndarray
        ``(4, 2)`` points ``(x, y)``: top left, top right, bottom right, bottom left.
    """
    w, h = width - 1.0, height - 1.0
    return np.array([[0.0, 0.0], [w, 0.0], [w, h], [0.0, h]])


def corner_error(
    estimated: np.ndarray, truth: np.ndarray, width: int, height: int
) -> np.ndarray:
    """Mean corner distance between two (batches of) floating->reference transforms.

    Parameters
    ----------
    estimated, truth : numpy.ndarray
        ``(..., 2, 3)`` floating->reference transforms.
    width, height : int
        The floating image's size in pixels (whose corner pixels are compared).

    Returns
    -------
    numpy.ndarray
        ``(...)`` mean distance in reference pixels.
    """
    pts = corners(width, height)
    diff = apply(estimated, pts) - apply(truth, pts)
    return np.linalg.norm(diff, axis=-1).mean(axis=-1)


def fit_rigid(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Least-squares rigid transform (no scale) sending ``source`` points onto ``target``.

    Closed-form 2-D Procrustes/Kabsch: the optimal angle is the argument of
    the summed complex products of centred point pairs.

    Parameters
    ----------
    source, target : numpy.ndarray
        ``(K, 2)`` corresponding points ``(x, y)``.

    Returns
    -------
    numpy.ndarray
        The 2x3 matrix.
    """
    source = np.asarray(source, dtype=float)
    target = np.asarray(target, dtype=float)
    src_mean, dst_mean = source.mean(axis=0), target.mean(axis=0)
    s, d = source - src_mean, target - dst_mean
    angle = np.arctan2(
        np.sum(s[:, 0] * d[:, 1] - s[:, 1] * d[:, 0]),
        np.sum(s[:, 0] * d[:, 0] + s[:, 1] * d[:, 1]),
    )
    cos, sin = np.cos(angle), np.sin(angle)
    rotation = np.array([[cos, -sin], [sin, cos]])
    return np.hstack([rotation, (dst_mean - rotation @ src_mean)[:, None]])


def fit_similarity(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, isotropic scale, translation) sending ``source`` onto ``target``.

    Closed form (2-D Umeyama): with centred points as complex numbers ``s``,
    ``d``, the linear part is the complex factor ``sum(conj(s) d) / sum(|s|^2)``.

    Parameters
    ----------
    source, target : numpy.ndarray
        ``(K, 2)`` corresponding points ``(x, y)``.

    Returns
    -------
    numpy.ndarray
        The 2x3 matrix.

    Raises
    ------
    numpy.linalg.LinAlgError
        If all source points coincide.
    """
    source = np.asarray(source, dtype=float)
    target = np.asarray(target, dtype=float)
    src_mean, dst_mean = source.mean(axis=0), target.mean(axis=0)
    s, d = source - src_mean, target - dst_mean
    norm = np.sum(s * s)
    if norm == 0:
        raise np.linalg.LinAlgError("a similarity needs two distinct source points")
    a = np.sum(s[:, 0] * d[:, 0] + s[:, 1] * d[:, 1]) / norm
    b = np.sum(s[:, 0] * d[:, 1] - s[:, 1] * d[:, 0]) / norm
    linear = np.array([[a, -b], [b, a]])
    return np.hstack([linear, (dst_mean - linear @ src_mean)[:, None]])


def fit_affine(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Least-squares affine transform sending ``source`` onto ``target`` (needs 3 non-collinear points).

    Parameters
    ----------
    source, target : numpy.ndarray
        ``(K, 2)`` corresponding points ``(x, y)``.

    Returns
    -------
    numpy.ndarray
        The 2x3 matrix.

    Raises
    ------
    numpy.linalg.LinAlgError
        If there are fewer than three source points or they are collinear.
    """
    source = np.asarray(source, dtype=float)
    target = np.asarray(target, dtype=float)
    design = np.hstack([source, np.ones((len(source), 1))])
    solution, _, rank, _ = np.linalg.lstsq(design, target, rcond=None)
    if rank < 3:
        raise np.linalg.LinAlgError("an affine transform needs three non-collinear source points")
    return solution.T


def fit_transform(kind: str, source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The least-squares fit of model ``kind`` (:data:`TRANSFORMS`) sending ``source`` onto ``target``.

    Parameters
    ----------
    kind : str
        One of :data:`TRANSFORMS`.
    source, target : numpy.ndarray
        ``(K, 2)`` corresponding points ``(x, y)``.

    Returns
    -------
    numpy.ndarray
        The 2x3 matrix.

    Raises
    ------
    ValueError
        If ``kind`` is not in :data:`TRANSFORMS`.
    numpy.linalg.LinAlgError
        If the points cannot determine the model (see :func:`fit_similarity`, :func:`fit_affine`).
    """
    fits = {"rigid": fit_rigid, "similarity": fit_similarity, "affine": fit_affine}
    return fits[check_transform(kind)](source, target)
