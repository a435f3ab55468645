"""ACCR's geometry in PyTorch: token centres, points moved by matrices, sampling, the transform fits.

The project's conventions (:mod:`comir.geometry`: points (x, y) in pixels, 2x3 floating ->
reference matrices; :mod:`comir.deformation`: backward fields), batched and differentiable for
:mod:`comir.network.accr.model` and its training. The geometry computes in float32 (float64 if
given) with autocast off (:func:`autocast_off`).
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import Tensor

#: Transform models of the registration head.
HEAD_TRANSFORMS: tuple[str, ...] = ("rigid", "affine")
#: Reweighting steps of :func:`robust_fit`.
ROBUST_ITERATIONS = 3
#: Minimal-sample hypotheses per pair of :func:`consensus_start`.
CONSENSUS_HYPOTHESES = 256
# The hypotheses' draws: one fixed stream, so a model registers a pair the same way every time.
_CONSENSUS_SEED = 0
# Ridge (px^2, per unit of weight) pulling the fit towards the identity: it keeps the fit defined
# when the correspondences collapse (an untrained attention can send every token near the floating
# image's centre) and is negligible against the spread of real correspondences (>= patch^2).
_RIDGE_PX2 = 1e-3


def autocast_off(device: torch.device) -> contextlib.AbstractContextManager:
    """A context without autocast on ``device``'s type, for the geometry.

    In bf16 (8 significant bits) a position of 500 px would be off by up to 2 px.

    Parameters
    ----------
    device : torch.device
        The device whose autocast is turned off.

    Returns
    -------
    contextlib.AbstractContextManager
        ``torch.autocast(..., enabled=False)``, or a no-op context where the device type has no autocast.
    """
    if torch.amp.is_autocast_available(device.type):
        return torch.autocast(device_type=device.type, enabled=False)
    return contextlib.nullcontext()


def token_centres(grid: tuple[int, int], stride: int, patch: int, device: torch.device | None = None) -> Tensor:
    """``(rows * columns, 2)`` float32: the centres (x, y) in px of ``patch`` px squares every ``stride`` px.

    Token ``(i, j)`` is the square whose top-left pixel is ``(stride j, stride i)``; its centre
    is ``(stride j + (patch - 1) / 2, stride i + (patch - 1) / 2)``. Row by row. Side by side
    (``stride == patch``), bilinear upsampling by ``patch`` (``align_corners=False``) puts the
    tokens' values there.

    Parameters
    ----------
    grid : tuple[int, int]
        ``(rows, columns)`` of tokens.
    stride : int
        Distance in px between neighbouring tokens.
    patch : int
        Side in px of a token's square.
    device : torch.device or None, optional
        Device of the result. Default None: PyTorch's default device.

    Returns
    -------
    torch.Tensor
        ``(rows * columns, 2)`` float32 centres (x, y) in px, row by row.
    """
    rows, columns = grid
    y, x = torch.meshgrid(
        torch.arange(rows, dtype=torch.float32, device=device),
        torch.arange(columns, dtype=torch.float32, device=device),
        indexing="ij",
    )
    return torch.stack([x, y], dim=-1).reshape(-1, 2) * stride + (patch - 1) / 2


def pixel_grid(height: int, width: int, device: torch.device | None = None) -> Tensor:
    """``(H, W, 2)`` float32: every pixel's centre (x, y).

    Parameters
    ----------
    height, width : int
        Size of the image in px.
    device : torch.device or None, optional
        Device of the result. Default None: PyTorch's default device.

    Returns
    -------
    torch.Tensor
        ``(height, width, 2)`` float32; entry ``[i, j]`` is ``(j, i)``.
    """
    return token_centres((height, width), 1, 1, device).reshape(height, width, 2)


def token_validity(valid: Tensor, patch: int, stride: int) -> Tensor:
    """``(N, L)`` bool: the tokens (:func:`token_centres`) of which at least half the pixels are valid.

    Parameters
    ----------
    valid : torch.Tensor
        ``(N, H, W)`` bool, True where the pixel is image.
    patch : int
        Side in px of a token's square.
    stride : int
        Distance in px between neighbouring tokens.

    Returns
    -------
    torch.Tensor
        ``(N, L)`` bool, the tokens row by row.
    """
    return (F.avg_pool2d(valid[:, None].float(), patch, stride)[:, 0] >= 0.5).flatten(1)


def transform_points(matrix: Tensor, points: Tensor) -> Tensor:
    """``(N, 2, 3)`` matrices applied to ``(N, L, 2)`` (or ``(L, 2)``) points (x, y): ``(N, L, 2)``.

    Parameters
    ----------
    matrix : torch.Tensor
        ``(N, 2, 3)`` affine matrices.
    points : torch.Tensor
        ``(N, L, 2)`` points (x, y), or ``(L, 2)`` shared by every matrix.

    Returns
    -------
    torch.Tensor
        ``(N, L, 2)`` moved points.
    """
    return points @ matrix[:, :, :2].transpose(1, 2) + matrix[:, None, :, 2]


def invert_matrices(matrix: Tensor) -> Tensor:
    """The inverses ``(N, 2, 3)`` of affine ``(N, 2, 3)`` matrices.

    Parameters
    ----------
    matrix : torch.Tensor
        ``(N, 2, 3)`` affine matrices with invertible linear parts.

    Returns
    -------
    torch.Tensor
        ``(N, 2, 3)`` inverse matrices.
    """
    linear = torch.linalg.inv(matrix[:, :, :2])
    return torch.cat([linear, -(linear @ matrix[:, :, 2:])], dim=2)


def sample_at(image: Tensor, positions: Tensor) -> Tensor:
    """``image`` ``(N, C, h, w)`` sampled bilinearly at pixel ``positions`` ``(N, H, W, 2)`` (x, y): ``(N, C, H, W)``.

    Differentiable in both. Inside ``[0, w - 1] x [0, h - 1]`` (the edge pixels' centres;
    PyTorch's ``align_corners=True``) it is :func:`comir.deformation.warp.warp_image`; beyond, the
    image is continued by zeros (bilinear: a sample less than a pixel outside is a blend with 0).

    Parameters
    ----------
    image : torch.Tensor
        ``(N, C, h, w)`` images.
    positions : torch.Tensor
        ``(N, H, W, 2)`` pixel positions (x, y) to sample at.

    Returns
    -------
    torch.Tensor
        ``(N, C, H, W)`` samples, in ``image``'s dtype.
    """
    height, width = image.shape[-2:]
    scale = positions.new_tensor([2.0 / max(1, width - 1), 2.0 / max(1, height - 1)])
    grid = positions * scale - 1.0
    return F.grid_sample(image, grid.to(image.dtype), mode="bilinear", padding_mode="zeros", align_corners=True)


def fit_matrix(source: Tensor, target: Tensor, weights: Tensor, transform: str) -> Tensor:
    """Weighted least-squares ``(N, 2, 3)`` matrices sending ``source`` ``(N, L, 2)`` onto ``target``.

    ``weights`` ``(N, L)`` >= 0. Rigid: the closed-form weighted Procrustes fit of
    :func:`comir.geometry.fit_rigid`; affine: the weighted normal equations of
    :func:`comir.geometry.fit_affine` on centred points. Both carry a ridge of ``1e-3`` px^2
    towards the identity's linear part, so that a fit of coincident points is the identity
    rotation (and a pure translation) rather than undefined; differentiable everywhere.
    Computed in float32 (or float64 if given) with autocast off.

    Parameters
    ----------
    source : torch.Tensor
        ``(N, L, 2)`` points (x, y) in px.
    target : torch.Tensor
        ``(N, L, 2)`` points (x, y) in px that ``source`` should land on.
    weights : torch.Tensor
        ``(N, L)`` non-negative weights of the correspondences (normalised per fit).
    transform : str
        ``"rigid"`` or ``"affine"`` (:data:`HEAD_TRANSFORMS`).

    Returns
    -------
    torch.Tensor
        ``(N, 2, 3)`` matrices, float32 or float64.

    Raises
    ------
    ValueError
        If ``transform`` is not one of :data:`HEAD_TRANSFORMS`.
    """
    dtype = torch.promote_types(source.dtype, torch.float32)
    with autocast_off(source.device):
        source, target, weights = (t.to(dtype) for t in (source, target, weights))
        share = weights / weights.sum(1, keepdim=True).clamp_min(torch.finfo(dtype).tiny)
        source_mean = (share[..., None] * source).sum(1)
        target_mean = (share[..., None] * target).sum(1)
        s, d = source - source_mean[:, None], target - target_mean[:, None]
        if transform == "rigid":
            dot = (share * (s * d).sum(-1)).sum(1) + _RIDGE_PX2
            cross = (share * (s[..., 0] * d[..., 1] - s[..., 1] * d[..., 0])).sum(1)
            norm = torch.sqrt(dot * dot + cross * cross)
            cos, sin = dot / norm, cross / norm
            linear = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
        elif transform == "affine":
            ridge = _RIDGE_PX2 * torch.eye(2, dtype=dtype, device=source.device)
            moments = torch.einsum("nl,nli,nlj->nij", share, d, s) + ridge  # sum w d s^T
            gram = torch.einsum("nl,nli,nlj->nij", share, s, s) + ridge  # sum w s s^T
            linear = torch.linalg.solve(gram, moments.transpose(1, 2)).transpose(1, 2)  # moments @ gram^-1
        else:
            raise ValueError(f"transform must be one of {HEAD_TRANSFORMS}, got {transform!r}")
        offset = target_mean - (linear @ source_mean[..., None])[..., 0]
        return torch.cat([linear, offset[..., None]], dim=2)


def robust_fit(
    source: Tensor, target: Tensor, weights: Tensor, transform: str, scale: float, start: Tensor | None = None
) -> Tensor:
    """:func:`fit_matrix` made robust to wrong correspondences: iteratively reweighted least squares.

    From ``start`` (else the weighted fit), :data:`ROBUST_ITERATIONS` times: each point's weight
    is multiplied by the Geman-McClure weight ``(scale^2 / (scale^2 + r^2))^2`` of its residual
    ``r`` (px) under the last matrix, and the fit is repeated. Attention has outliers (a token
    whose match is outside the floating image, repeated texture): a point a token (``scale``)
    off counts a quarter, one ten tokens off a ten-thousandth, so that even four outliers in five
    move the fit by a tenth of a pixel. Where outliers are the majority the weighted fit is
    pulled far from every inlier and the reweighting keeps the wrong points; a start from
    :func:`consensus_start` avoids that. Differentiable in the points and weights, as the fit
    (``start`` only selects which points count).

    Parameters
    ----------
    source : torch.Tensor
        ``(N, L, 2)`` points (x, y) in px.
    target : torch.Tensor
        ``(N, L, 2)`` points (x, y) in px that ``source`` should land on.
    weights : torch.Tensor
        ``(N, L)`` non-negative prior weights of the correspondences.
    transform : str
        ``"rigid"`` or ``"affine"`` (:data:`HEAD_TRANSFORMS`).
    scale : float
        Residual in px at which a correspondence's weight is halved (a token's size).
    start : torch.Tensor or None, optional
        ``(N, 2, 3)`` matrices to reweight from. Default None: the weighted fit of all points.

    Returns
    -------
    torch.Tensor
        ``(N, 2, 3)`` matrices of the last fit.

    Raises
    ------
    ValueError
        If ``transform`` is not one of :data:`HEAD_TRANSFORMS`.
    """
    matrix = fit_matrix(source, target, weights, transform) if start is None else start.detach()
    for _ in range(ROBUST_ITERATIONS):
        with autocast_off(source.device):
            squared = (transform_points(matrix, source.to(matrix.dtype)) - target.to(matrix.dtype)).pow(2).sum(dim=-1)
        matrix = fit_matrix(source, target, weights * (scale**2 / (scale**2 + squared)) ** 2, transform)
    return matrix


def consensus_start(
    source: Tensor,
    target: Tensor,
    weights: Tensor,
    transform: str,
    scale: float,
    hypotheses: int = CONSENSUS_HYPOTHESES,
) -> Tensor:
    """``(N, 2, 3)`` the minimal-sample fit that the most weight agrees with (RANSAC's hypothesis step).

    Per pair, ``hypotheses`` minimal samples (2 points for a rigid fit, 3 for an affine one) are
    drawn with probabilities proportional to ``weights`` from a fixed stream (the same points give
    the same start); each sample's exact fit (:func:`fit_matrix`) scores the summed weight of the
    points it sends within ``scale`` px of their targets; the best-scoring fit is returned. Not
    differentiable (a selection): :func:`robust_fit` refines it. Computed in float32 with
    autocast off; memory ``N * hypotheses * L``.

    Parameters
    ----------
    source, target : torch.Tensor
        ``(N, L, 2)`` points (x, y) in px and where they should land.
    weights : torch.Tensor
        ``(N, L)`` non-negative weights; a pair with no positive weight draws uniformly.
    transform : str
        ``"rigid"`` or ``"affine"`` (:data:`HEAD_TRANSFORMS`).
    scale : float
        Residual in px within which a point agrees with a fit.
    hypotheses : int, optional
        Samples per pair. Default :data:`CONSENSUS_HYPOTHESES`.

    Returns
    -------
    torch.Tensor
        ``(N, 2, 3)`` float32 matrices.

    Raises
    ------
    ValueError
        If ``transform`` is not one of :data:`HEAD_TRANSFORMS`.
    """
    if transform not in HEAD_TRANSFORMS:
        raise ValueError(f"transform must be one of {HEAD_TRANSFORMS}, got {transform!r}")
    size = 2 if transform == "rigid" else 3
    with torch.no_grad(), autocast_off(source.device):
        source, target, weights = (t.float() for t in (source, target, weights))
        count = len(weights)
        generator = torch.Generator().manual_seed(_CONSENSUS_SEED)
        # Drawn on the CPU (one stream whatever the device); with replacement: a sample may repeat
        # a point, whose degenerate fit the ridge keeps finite and the scoring discards.
        drawing = weights.cpu()
        probabilities = (drawing + 1e-12 * (drawing.sum(1, keepdim=True) <= 0)).clamp_min(0)
        drawn = torch.multinomial(probabilities, hypotheses * size, replacement=True, generator=generator)
        drawn = drawn.to(source.device).reshape(count, hypotheses, size)
        rows = torch.arange(count, device=source.device)[:, None, None]
        samples = [t[rows, drawn].reshape(count * hypotheses, size, 2) for t in (source, target)]
        uniform = torch.ones(count * hypotheses, size, device=source.device)
        matrices = fit_matrix(samples[0], samples[1], uniform, transform).reshape(count, hypotheses, 2, 3)
        moved = torch.einsum("nkij,nlj->nkli", matrices[..., :2], source) + matrices[..., None, :, 2]
        agree = ((moved - target[:, None]).pow(2).sum(-1) <= scale**2).float()
        best = (agree * weights[:, None]).sum(-1).argmax(dim=1)
        return matrices[torch.arange(count, device=source.device), best]


def local_soft_argmax(weights: Tensor, positions: Tensor, grid: tuple[int, int], radius: int | None) -> Tensor:
    """``(N, L_q, 2)``: each query's weighted mean key position near its most weighted key.

    The mean over every key (``radius=None``, the plain soft-argmax) lies between the places a
    spread attention weighs, pulled towards the image's centre; the mean over the keys within
    ``radius`` grid steps (per axis) of the most weighted one stays on a place of the image, right
    or wrong, which is what a robust fit needs. Differentiable in the weights inside the window.

    Parameters
    ----------
    weights : torch.Tensor
        ``(N, L_q, L_k)`` non-negative weights over the keys (rows sum to 1).
    positions : torch.Tensor
        ``(L_k, 2)`` the keys' positions, row by row of ``grid``.
    grid : tuple[int, int]
        ``(rows, columns)`` of the keys.
    radius : int or None
        Grid steps around the most weighted key; None: every key.

    Returns
    -------
    torch.Tensor
        ``(N, L_q, 2)`` positions, in ``positions``' dtype.
    """
    weights = weights.to(positions.dtype)
    if radius is None:
        return weights @ positions
    columns = grid[1]
    peak = weights.argmax(dim=-1, keepdim=True)
    index = torch.arange(weights.shape[-1], device=weights.device)
    near = ((index // columns - peak // columns).abs() <= radius) & ((index % columns - peak % columns).abs() <= radius)
    local = weights * near
    return (local @ positions) / local.sum(-1, keepdim=True).clamp_min(torch.finfo(local.dtype).tiny)


def matrix_params(matrix: Tensor, transform: str) -> Tensor:
    """The head's parameters of ``(N, 2, 3)`` matrices: rigid ``(N, 3)`` (angle, tx, ty), affine ``(N, 6)``.

    Parameters
    ----------
    matrix : torch.Tensor
        ``(N, 2, 3)`` matrices.
    transform : str
        One of :data:`HEAD_TRANSFORMS`: ``"rigid"``: the angle (radians, from the first column) and
        the translation; ``"affine"``: the six entries, row by row.

    Returns
    -------
    torch.Tensor
        ``(N, 3)`` for ``"rigid"``, ``(N, 6)`` for ``"affine"``.

    Raises
    ------
    ValueError
        For another ``transform``.
    """
    if transform not in HEAD_TRANSFORMS:
        raise ValueError(f"transform must be one of {HEAD_TRANSFORMS}, got {transform!r}")
    if transform == "rigid":
        angle = torch.atan2(matrix[:, 1, 0], matrix[:, 0, 0])
        return torch.stack([angle, matrix[:, 0, 2], matrix[:, 1, 2]], dim=1)
    return matrix.reshape(len(matrix), 6)


__all__ = [
    "CONSENSUS_HYPOTHESES",
    "HEAD_TRANSFORMS",
    "ROBUST_ITERATIONS",
    "autocast_off",
    "consensus_start",
    "fit_matrix",
    "invert_matrices",
    "local_soft_argmax",
    "matrix_params",
    "pixel_grid",
    "robust_fit",
    "sample_at",
    "token_centres",
    "token_validity",
    "transform_points",
]
