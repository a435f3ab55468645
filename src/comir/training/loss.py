"""CoMIR contrastive loss (InfoNCE over M*N points) and C4 equivariance helpers.

docs/method.md, sections 3 and 4. Every point of the loss is a whole
``C x H x W`` output patch. Points are stacked modality after modality: point
``m * N + s`` is sample ``s`` seen by modality ``m``; points with the same
``s`` show the same place and are positives of each other, points with
another ``s`` are negatives. Beyond the paper and off by default: other
negatives (:func:`info_nce`'s ``excluded`` and ``hard_beta``) and an
anatomy-aware block-wise term (:func:`anatomy_info_nce`); docs/method.md,
section 3.

The loss terms (:func:`similarity_matrix`, :func:`info_nce`,
:func:`activation_decay`) always compute in float32 (float64 if given
float64) with autocast disabled, whatever context the caller runs them in.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Critic = Literal["mse", "cosine", "cosine_columns"]
CRITICS: tuple[str, ...] = ("mse", "cosine", "cosine_columns")

# Same epsilon as torch.nn.functional.cosine_similarity, used by the authors' code.
_COSINE_EPS = 1e-8


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """At least float32: half-precision outputs (autocast) are cast up for the loss."""
    return torch.promote_types(dtype, torch.float32)


def _autocast_off(device: torch.device) -> contextlib.AbstractContextManager:
    """Disable autocast on ``device``'s type for the loss.

    Casting the outputs up is not enough: under ``torch.autocast`` the matmuls
    re-cast their float32 inputs to bf16/fp16 (8 or 11 significant bits), and
    the squared distance of a close positive pair (|a|^2 + |b|^2 - 2 a.b)
    then drowns in rounding error. Device types without autocast support
    have nothing to disable.
    """
    if torch.amp.is_autocast_available(device.type):
        return torch.autocast(device_type=device.type, enabled=False)
    return contextlib.nullcontext()


def similarity_matrix(z: Tensor, critic: Critic, tau: float) -> Tensor:
    """All pairwise similarities ``sim(z_i, z_j) / tau`` of stacked points.

    Parameters
    ----------
    z : torch.Tensor
        ``(P, C, H, W)`` points.
    critic : {"mse", "cosine", "cosine_columns"}
        ``"mse"``: ``-mean((z_i - z_j) ** 2)`` over all ``C*H*W``
        elements (paper's best critic for registration). A mean, not a
        sum: ``tau`` divides the squared distance per element, so a
        temperature ``tau`` here equals ``tau * C*H*W`` applied to the
        summed squared distance ``|z_i - z_j|^2``, and its meaning does
        not depend on the patch size.
        ``"cosine"``: cosine similarity of the flattened patches.
        ``"cosine_columns"``: the authors' public code, which calls
        ``F.cosine_similarity(z_i, z_j, dim=1).mean()`` on single
        ``(C, H, W)`` points: for every channel ``c`` and column ``w`` the
        vectors ``z_i[c, :, w]`` and ``z_j[c, :, w]`` (length ``H``, down
        the height axis) are compared by cosine similarity, and the
        ``C*W`` cosines are averaged. Implemented exactly so, with each
        column divided by ``max(norm, 1e-8)`` as torch does.
    tau : float
        Temperature (> 0).

    Returns
    -------
    torch.Tensor
        ``(P, P)`` matrix including the diagonal (self-similarities); callers
        mask it. Float32 (float64 for float64 points), computed with autocast
        disabled (docs/method.md, section 3).

    Raises
    ------
    ValueError
        If ``z`` is not 4-D, ``tau <= 0`` or ``critic`` is not one of :data:`CRITICS`.
    """
    if z.dim() != 4:
        raise ValueError(f"similarity_matrix expects (P, C, H, W) points, got shape {tuple(z.shape)}")
    if tau <= 0:
        raise ValueError(f"temperature tau must be > 0, got {tau}")
    with _autocast_off(z.device):
        return _similarity_matrix(z.to(_compute_dtype(z.dtype)), critic, tau)


def _similarity_matrix(z: Tensor, critic: Critic, tau: float) -> Tensor:
    """:func:`similarity_matrix` on validated float32/float64 points, autocast already off."""
    n_points = z.shape[0]
    if critic == "mse":
        flat = z.reshape(n_points, -1)
        # Distances are translation invariant; centring the points first
        # reduces the cancellation in |a|^2 + |b|^2 - 2 a.b for close points.
        flat = flat - flat.mean(dim=0, keepdim=True)
        gram = flat @ flat.T
        sq = gram.diagonal()
        # Gram form rather than torch.cdist: cdist's backward is NaN at zero
        # distance (the diagonal), which would poison masked gradients.
        sq_dist = (sq[:, None] + sq[None, :] - 2.0 * gram).clamp_min(0.0)
        sim = -sq_dist / flat.shape[1]
    elif critic == "cosine":
        flat = F.normalize(z.reshape(n_points, -1), dim=1, eps=_COSINE_EPS)
        sim = flat @ flat.T
    elif critic == "cosine_columns":
        columns = F.normalize(z, dim=2, eps=_COSINE_EPS)  # unit vectors along H per (c, w)
        flat = columns.reshape(n_points, -1)
        n_columns = z.shape[1] * z.shape[3]
        sim = (flat @ flat.T) / n_columns
    else:
        raise ValueError(f"unknown critic {critic!r}; expected one of {CRITICS}")
    return sim / tau


def info_nce(
    outputs: Sequence[Tensor],
    critic: Critic = "mse",
    tau: float = 0.5,
    *,
    excluded: Tensor | None = None,
    hard_beta: float | None = None,
) -> Tensor:
    """CoMIR's InfoNCE loss for M >= 2 modalities (paper eq. 2 and Algorithm 1).

    For every anchor ``a`` = (modality ``m``, sample ``s``) and every other
    modality ``m'``, with positive ``p`` = (``m'``, ``s``), the term is
    ``-S[a, p] + log(exp(S[a, p]) + sum_j exp(S[a, j]))`` where ``j`` runs over
    all points of the other samples (any modality). For ``M = 2`` the
    denominator is the positive plus the ``2N - 2`` negatives, i.e. all
    ``j != a`` as in the paper; for ``M > 2`` the other positives of the anchor
    are left out of the denominator (Algorithm 1). The loss is the mean of all
    ``M * N * (M - 1)`` terms, so every direction counts. With ``excluded`` or
    ``hard_beta`` the negatives' part ``log sum_j exp(S[a, j])`` is replaced by
    :func:`negative_log_sum` over the remaining negatives (docs/method.md,
    section 3, "Negative sampling"); without them the result is bit for bit
    the paper's loss.

    Computed in float32 (float64 if any output is float64) with autocast
    disabled, whatever the dtype of ``outputs`` and the caller's autocast
    context (docs/method.md, section 3).

    Parameters
    ----------
    outputs : Sequence[torch.Tensor]
        ``M`` tensors ``(N, C, H, W)``, one per modality; item ``s``
        of every tensor shows the same place.
    critic : {"mse", "cosine", "cosine_columns"}, optional
        See :func:`similarity_matrix`. Default ``"mse"``.
    tau : float, optional
        Temperature (> 0). Default 0.5.
    excluded : torch.Tensor or None, optional
        ``(N, N)`` bool; ``excluded[s, s']`` True means that
        no point of sample ``s'`` is a negative of an anchor of sample ``s``
        (a false negative, e.g. an overlapping patch: :func:`near_pairs`).
        Those pairs get a ``-inf`` logit in the denominator; the positives
        stay and the diagonal is ignored. ``None`` (default): every other
        sample's points are negatives, the paper's loss. Keyword-only.
    hard_beta : float or None, optional
        Concentration ``beta >= 0`` of the hard-negative
        reweighting of the denominator (:func:`negative_log_sum`,
        Robinson et al. 2021). ``None`` (default): plain sum. Keyword-only.

    Returns
    -------
    torch.Tensor
        The scalar loss.

    Raises
    ------
    ValueError
        If there are fewer than 2 modalities or 2 samples, the outputs are not 4-D or not all of one
        shape, ``excluded`` is not an ``(N, N)`` bool tensor, ``hard_beta < 0``, ``tau <= 0`` or
        ``critic`` is unknown.
    """
    if len(outputs) < 2:
        raise ValueError(f"info_nce needs outputs of at least 2 modalities, got {len(outputs)}")
    shape = outputs[0].shape
    if len(shape) != 4:
        raise ValueError(f"info_nce expects (N, C, H, W) outputs, got shape {tuple(shape)}")
    for o in outputs[1:]:
        if o.shape != shape:
            raise ValueError(f"all outputs must have the same shape, got {tuple(shape)} and {tuple(o.shape)}")
    n_samples = shape[0]
    if n_samples < 2:
        raise ValueError("info_nce needs a batch of at least 2 samples (negatives come from other samples)")

    device = outputs[0].device
    dtype = _compute_dtype(functools.reduce(torch.promote_types, (o.dtype for o in outputs)))
    with _autocast_off(device):
        z = torch.cat([o.to(device=device, dtype=dtype) for o in outputs])
        sim = similarity_matrix(z, critic, tau)
        n_points = z.shape[0]
        index = torch.arange(n_points, device=device)
        sample = index % n_samples
        negative = sample[:, None] != sample[None, :]
        if excluded is not None:
            if excluded.shape != (n_samples, n_samples) or excluded.dtype != torch.bool:
                raise ValueError(
                    f"excluded must be a ({n_samples}, {n_samples}) bool tensor, "
                    f"got {excluded.dtype} {tuple(excluded.shape)}"
                )
            # Per point pair, the pair of their samples: an excluded sample pair removes every modality's points.
            excluded = excluded.to(device)
            negative = negative & ~excluded[sample[:, None], sample[None, :]]
        log_negatives = negative_log_sum(sim, negative, hard_beta)

        terms = []
        for shift in range(1, len(outputs)):  # the positive in each other modality
            partner = (index + shift * n_samples) % n_points
            positive = sim.gather(1, partner[:, None]).squeeze(1)
            terms.append(torch.logaddexp(positive, log_negatives) - positive)
        return torch.cat(terms).mean()


NEGATIVE_STRATEGIES: tuple[str, ...] = ("all", "exclude_near", "hard")


def negative_log_sum(sim: Tensor, negative: Tensor, beta: float | None = None) -> Tensor:
    """Per anchor row, the log of the negatives' part of the InfoNCE denominator.

    Parameters
    ----------
    sim : torch.Tensor
        ``(P, P)`` logits ``S`` (similarities divided by the temperature).
    negative : torch.Tensor
        ``(P, P)`` bool; ``negative[i, j]`` True when point ``j`` is
        a negative of anchor ``i``.
    beta : float or None, optional
        ``None`` (default): ``log sum_{j in neg(i)} exp(S_ij)``, the plain InfoNCE
        (``-inf`` for a row without negatives). A number ``beta >= 0``:
        hard-negative reweighting after Robinson et al. (ICLR 2021,
        "Contrastive learning with hard negative samples"), without their
        positive-debiasing (``tau+ = 0``) and without their clamp: each
        negative is weighted by ``q_ij = K_i exp(beta S_ij) / sum_{k in neg(i)}
        exp(beta S_ik)`` (weights summing to the count ``K_i = |neg(i)|``,
        so ``beta = 0`` is the plain sum), giving
        ``log K_i + logsumexp_j((1 + beta) S_ij) - logsumexp_j(beta S_ij)``.
        Negatives more similar to the anchor (harder) weigh more, all of
        them still count; ``-inf`` for a row without negatives.

    Returns
    -------
    torch.Tensor
        ``(P,)`` tensor of ``sim``'s dtype. Vectorised; rows without negatives
        give ``-inf`` with zero (not NaN) gradients, so the InfoNCE term
        ``logaddexp(pos, -inf) - pos`` of such a row is 0.

    Raises
    ------
    ValueError
        If ``beta < 0``.
    """
    if beta is not None and beta < 0:
        raise ValueError(f"hard-negative beta must be >= 0, got {beta}")
    empty = ~negative.any(dim=1)

    def masked(logits: Tensor) -> Tensor:
        # Rows without negatives get finite logits (their result is replaced by -inf below): logsumexp over a
        # row of -inf alone has a NaN gradient. For rows with negatives the second fill is an exact copy.
        return logits.masked_fill(~negative, float("-inf")).masked_fill(empty[:, None], 0.0)

    if beta is None:
        value = torch.logsumexp(masked(sim), dim=1)
    else:
        # Scaled before masking: beta * -inf is NaN for beta = 0.
        count = negative.sum(dim=1).to(sim.dtype).clamp_min(1.0)
        hard = torch.logsumexp(masked((1.0 + beta) * sim), dim=1)
        value = hard - torch.logsumexp(masked(beta * sim), dim=1) + count.log()
    return torch.where(empty, torch.full_like(value, float("-inf")), value)


def near_pairs(image: Tensor, centre: Tensor, min_distance: float) -> Tensor:
    """``(N, N)`` bool: sample pairs whose patches come from the same image and lie closer than ``min_distance``.

    Two patches of side ``P`` whose centres are less than ``P`` apart overlap,
    whatever their rotations (each holds the disc of diameter ``P`` about its
    centre), so they show the same tissue and are false negatives of each
    other (``info_nce``'s ``excluded``). The diagonal is False (a sample is
    its own positive, never its negative).

    Parameters
    ----------
    image : torch.Tensor
        ``(N,)`` integer index of each patch's training image.
    centre : torch.Tensor
        ``(N, 2)`` each patch's centre in that image's pixels.
    min_distance : float
        In px; pairs whose centres are strictly closer are True.

    Returns
    -------
    torch.Tensor
        ``(N, N)`` bool, symmetric, False on the diagonal.

    Raises
    ------
    ValueError
        If ``image`` is not ``(N,)`` or ``centre`` not ``(N, 2)``.
    """
    if image.shape != centre.shape[:1] or centre.dim() != 2 or centre.shape[1] != 2:
        raise ValueError(
            f"near_pairs expects (N,) images and (N, 2) centres, got {tuple(image.shape)}, {tuple(centre.shape)}"
        )
    position = centre.to(torch.float64)  # exact squared distances of pixel coordinates
    squared = (position[:, None, :] - position[None, :, :]).square().sum(dim=-1)
    near = (image[:, None] == image[None, :]) & (squared < float(min_distance) ** 2)
    return near & ~torch.eye(image.shape[0], dtype=torch.bool, device=image.device)


def region_labels(masks: Tensor) -> Tensor:
    """``(N, H, W)`` int64 joint region label of ``(N, K, H, W)`` region masks: ``sum_k [mask_k >= 0.5] 2^k``.

    The masks are the patches' warped binary masks (values in [0, 1] after
    interpolation; 0.5 rounds them back). With a tissue mask (bit 0) and a
    signal mask (bit 1) the labels are 0 background, 1 tissue without signal,
    2 signal outside tissue, 3 signal in tissue. There are ``2^K`` labels.

    Parameters
    ----------
    masks : torch.Tensor
        ``(N, K, H, W)`` region masks, values in [0, 1].

    Returns
    -------
    torch.Tensor
        ``(N, H, W)`` int64 labels in ``[0, 2^K)``.

    Raises
    ------
    ValueError
        If ``masks`` is not 4-D.
    """
    if masks.dim() != 4:
        raise ValueError(f"region_labels expects (N, K, H, W) masks, got shape {tuple(masks.shape)}")
    bits = 2 ** torch.arange(masks.shape[1], device=masks.device)
    return ((masks >= 0.5).long() * bits[None, :, None, None]).sum(dim=1)


def block_labels(labels: Tensor, block: int, n_labels: int) -> Tensor:
    """``(N, H // block, W // block)`` majority label of each ``block x block`` block of ``(N, H, W)`` labels.

    The most frequent pixel label of the block; ties go to the smaller label
    (``argmax`` returns the first maximum).

    Parameters
    ----------
    labels : torch.Tensor
        ``(N, H, W)`` int64 pixel labels in ``[0, n_labels)``.
    block : int
        Block side in px; ``H`` and ``W`` must be multiples of it.
    n_labels : int
        Number of labels.

    Returns
    -------
    torch.Tensor
        ``(N, H // block, W // block)`` int64 majority labels.
    """
    counts = F.avg_pool2d(F.one_hot(labels, n_labels).permute(0, 3, 1, 2).to(torch.float32), block)
    return counts.argmax(dim=1)


def anatomy_info_nce(
    outputs: Sequence[Tensor],
    labels: Tensor,
    block: int,
    critic: Critic = "mse",
    tau: float = 0.5,
    n_labels: int | None = None,
) -> Tensor:
    """Anatomy-aware block-wise InfoNCE (docs/method.md, section 3, "Anatomy-aware term").

    Definition. Every output is cut into a grid of ``G = (H / k) (W / k)``
    blocks of ``C x k x k`` px; block ``g`` of sample ``s`` in modality ``m``
    is the point ``(m, s, g)`` and its label ``L(s, g)`` is the majority pixel
    label of the block (:func:`block_labels`). Anchors are the blocks inside a
    region, ``L(s, g) != 0``, in every modality (positives only inside
    corresponding regions: background blocks are only ever negatives). For an
    anchor ``a = (m, s, g)`` and each other modality ``m'`` the positive is
    ``p = (m', s, g)``, the same place, and the negatives are every point
    ``(m'', s', g')`` of another sample (``s' != s``, any label), or of the
    same sample with another label (``L(s, g') != L(s, g)``): blocks of the
    same region of the same patch are left out, as likely false negatives.
    The term is ``-S[a, p] + log(exp S[a, p] + sum_neg exp S[a, j])`` with
    ``S = sim / tau`` (:func:`similarity_matrix`); the loss is its mean over
    all anchors and other modalities, 0 when no block is inside a region.
    Costs a ``(M N G)^2`` similarity matrix. Float32 (float64 for float64
    outputs), autocast disabled.

    Parameters
    ----------
    outputs : Sequence[torch.Tensor]
        ``M >= 2`` tensors ``(N, C, H, W)``, one per modality, aligned.
    labels : torch.Tensor
        ``(N, H, W)`` integer region label of every pixel of every
        sample (:func:`region_labels`; 0 is background, outside every
        region); the same for all modalities, since the masks are derived
        once per place from both modalities' images.
    block : int
        Block side ``k`` in px; ``H`` and ``W`` must be multiples of it.
    critic : {"mse", "cosine", "cosine_columns"}, optional
        As :func:`info_nce`, applied to blocks. Default ``"mse"``.
    tau : float, optional
        Temperature, as :func:`info_nce`. Default 0.5.
    n_labels : int or None, optional
        Labels lie in ``[0, n_labels)``; ``None`` (default): ``labels.max() + 1``.

    Returns
    -------
    torch.Tensor
        The scalar loss.

    Raises
    ------
    ValueError
        If there are fewer than 2 modalities, the outputs are not equal 4-D shapes, ``block`` does not
        divide ``H`` and ``W``, ``labels`` is not ``(N, H, W)``, ``tau <= 0`` or ``critic`` is unknown.
    """
    if len(outputs) < 2:
        raise ValueError(f"anatomy_info_nce needs outputs of at least 2 modalities, got {len(outputs)}")
    shape = outputs[0].shape
    if len(shape) != 4 or any(o.shape != shape for o in outputs):
        raise ValueError(
            f"anatomy_info_nce expects equal (N, C, H, W) outputs, got {[tuple(o.shape) for o in outputs]}"
        )
    n_samples, channels, height, width = shape
    if block < 1 or height % block or width % block:
        raise ValueError(f"the block size {block} px must divide the outputs' {height} x {width} px")
    if labels.shape != (n_samples, height, width):
        raise ValueError(f"labels must be ({n_samples}, {height}, {width}), got {tuple(labels.shape)}")
    device = outputs[0].device
    labels = labels.to(device=device, dtype=torch.long)
    n_labels = int(labels.max()) + 1 if n_labels is None else int(n_labels)
    rows, cols = height // block, width // block
    per_sample = rows * cols
    places = n_samples * per_sample
    dtype = _compute_dtype(functools.reduce(torch.promote_types, (o.dtype for o in outputs)))
    with _autocast_off(device):
        label = block_labels(labels, block, n_labels).reshape(places)  # place s * G + g
        z = torch.cat([o.to(device=device, dtype=dtype) for o in outputs])
        # (M N, C, rows, k, cols, k) -> point (m N + s) G + g = m * places + s * G + g, a (C, k, k) block.
        blocks = (
            z.reshape(-1, channels, rows, block, cols, block)
            .permute(0, 2, 4, 1, 3, 5)
            .reshape(-1, channels, block, block)
        )
        sim = similarity_matrix(blocks, critic, tau)
        n_points = blocks.shape[0]
        index = torch.arange(n_points, device=device)
        place = index % places
        sample = place // per_sample
        point_label = label[place]
        other_sample = sample[:, None] != sample[None, :]
        other_label = point_label[:, None] != point_label[None, :]
        negative = (place[:, None] != place[None, :]) & (other_sample | other_label)
        log_negatives = negative_log_sum(sim, negative)
        anchor = (point_label != 0).to(dtype)
        total = sim.new_zeros(())
        for shift in range(1, len(outputs)):  # the positive in each other modality
            partner = (index + shift * places) % n_points
            positive = sim.gather(1, partner[:, None]).squeeze(1)
            total = total + ((torch.logaddexp(positive, log_negatives) - positive) * anchor).sum()
        return total / (anchor.sum() * (len(outputs) - 1)).clamp_min(1.0)


def activation_decay(outputs: Sequence[Tensor], l1: float, l2: float) -> Tensor:
    """``l1 * mean(|y|) + l2 * mean(y ** 2)``, each ONE mean over the elements of all outputs together.

    As the authors' code (docs/method.md, section 3): the outputs of all
    networks count as one set of activations, so two networks of equal size
    get the same weight as one (a sum of per-network means would double it).
    Outputs may differ in shape; each element counts once. Computed in float32
    (float64 if any output is float64) with autocast disabled.

    Parameters
    ----------
    outputs : Sequence[torch.Tensor]
        The networks' outputs, of any shapes.
    l1 : float
        Weight of the mean absolute activation.
    l2 : float
        Weight of the mean squared activation.

    Returns
    -------
    torch.Tensor
        The scalar decay term.

    Raises
    ------
    ValueError
        If ``outputs`` is empty or has no element.
    """
    if not outputs:
        raise ValueError("activation_decay needs at least one output")
    device = outputs[0].device
    dtype = _compute_dtype(functools.reduce(torch.promote_types, (y.dtype for y in outputs)))
    count = sum(y.numel() for y in outputs)
    if count == 0:
        raise ValueError("activation_decay needs at least one output element")
    with _autocast_off(device):
        # Sums over all outputs divided once by the total count: no concatenated copy.
        ys = [y.to(device=device, dtype=dtype) for y in outputs]
        abs_sum = torch.stack([y.abs().sum() for y in ys]).sum()
        sq_sum = torch.stack([y.square().sum() for y in ys]).sum()
        return (l1 * abs_sum + l2 * sq_sum) / count


# --------------------------------------------------------------------------- ablation terms
# Beyond the paper, each off by default (docs/method.md, section 5, "Ablations"); in float32 with
# autocast off like the terms above.

STRUCTURE_PENALTIES: tuple[str, ...] = ("tv", "gradient")


def gaussian_blur(z: Tensor, sigma: float) -> Tensor:
    """``(N, C, H, W)`` blurred by a separable Gaussian of ``sigma`` px (reflect padding).

    The kernel reaches ``ceil(3 sigma)`` px, at most the image's shorter side minus one (reflect
    padding cannot reach farther), renormalised.

    Parameters
    ----------
    z : torch.Tensor
        ``(N, C, H, W)`` images; each channel is blurred on its own.
    sigma : float
        Standard deviation of the Gaussian in px (> 0).

    Returns
    -------
    torch.Tensor
        The blurred images, the shape and dtype of ``z``.
    """
    radius = max(1, min(int(math.ceil(3.0 * sigma)), min(z.shape[-2:]) - 1))
    offsets = torch.arange(-radius, radius + 1, device=z.device, dtype=z.dtype)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    channels = z.shape[1]
    padded = F.pad(z, (radius, radius, radius, radius), mode="reflect")
    rows = F.conv2d(padded, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    return F.conv2d(rows, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)


def highpass(outputs: Sequence[Tensor], sigma: float) -> list[Tensor]:
    """Each output minus its Gaussian blur of ``sigma`` px: what the critic sees with the high-pass ablation.

    The critic then compares structure finer than ``sigma`` only; the slowly
    varying part of a CoMIR is free.

    Parameters
    ----------
    outputs : Sequence[torch.Tensor]
        ``(N, C, H, W)`` outputs, one per modality.
    sigma : float
        Standard deviation of the blur in px (:func:`gaussian_blur`).

    Returns
    -------
    list of torch.Tensor
        The high-passed outputs, float32, in the order of ``outputs``.
    """
    with _autocast_off(outputs[0].device):
        return [z.float() - gaussian_blur(z.float(), float(sigma)) for z in outputs]


def _differences(z: Tensor) -> tuple[Tensor, Tensor]:
    return z[..., :, 1:] - z[..., :, :-1], z[..., 1:, :] - z[..., :-1, :]


def structure_penalty(outputs: Sequence[Tensor], kind: str) -> Tensor:
    """A structural term on the CoMIRs: ``tv`` or ``gradient``.

    ``tv``: the mean absolute finite difference (total variation per pixel)
    of every output: smoother CoMIRs.  ``gradient``: the mean squared
    difference of the finite differences of each pair of modalities' outputs:
    CoMIRs with the same edges.

    Parameters
    ----------
    outputs : Sequence[torch.Tensor]
        ``(N, C, H, W)`` outputs, one per modality (``gradient`` needs at least two).
    kind : {"tv", "gradient"}
        Which term (:data:`STRUCTURE_PENALTIES`).

    Returns
    -------
    torch.Tensor
        The scalar term, float32.

    Raises
    ------
    ValueError
        If ``kind`` is not one of :data:`STRUCTURE_PENALTIES`.
    """
    if kind not in STRUCTURE_PENALTIES:
        raise ValueError(f"structure penalty must be one of {STRUCTURE_PENALTIES}, got {kind!r}")
    with _autocast_off(outputs[0].device):
        grads = [_differences(z.float()) for z in outputs]
        if kind == "tv":
            return torch.stack([(dx.abs().mean() + dy.abs().mean()) / 2 for dx, dy in grads]).mean()
        pairs = [
            ((a[0] - b[0]).square().mean() + (a[1] - b[1]).square().mean()) / 2
            for i, a in enumerate(grads)
            for b in grads[i + 1 :]
        ]
        return torch.stack(pairs).mean()


def self_similarity(x: Tensor, radius: int) -> Tensor:
    """MIND-style local self-similarity descriptor ``(N, 8, H, W)`` of ``(N, C, H, W)``.

    For the 8 offsets of the square of half-side ``radius`` px, ``D_o`` is the
    3x3 mean of the squared difference between the image and itself shifted by
    ``o`` (summed over channels, replicate borders); the descriptor is
    ``exp(-D_o / V)`` with ``V`` the mean of ``D_o`` over the offsets (Heinrich
    et al. 2012): it describes the local structure, not the intensities, so the
    descriptors of an input and of its CoMIR can be compared.

    Parameters
    ----------
    x : torch.Tensor
        ``(N, C, H, W)`` images.
    radius : int
        Half-side in px of the square whose corners and edge midpoints are the 8 offsets.

    Returns
    -------
    torch.Tensor
        ``(N, 8, H, W)`` descriptor, values in (0, 1].
    """
    r = int(radius)
    offsets = [(dy, dx) for dy in (-r, 0, r) for dx in (-r, 0, r) if dy or dx]
    padded = F.pad(x, (r, r, r, r), mode="replicate")
    height, width = x.shape[-2:]
    distances = []
    for dy, dx in offsets:
        shifted = padded[..., r + dy : r + dy + height, r + dx : r + dx + width]
        squared = (x - shifted).square().sum(dim=1, keepdim=True)
        distances.append(F.avg_pool2d(F.pad(squared, (1, 1, 1, 1), mode="replicate"), 3, stride=1))
    d = torch.cat(distances, dim=1)
    variance = d.mean(dim=1, keepdim=True)
    variance = variance + 1e-3 * variance.mean() + 1e-12  # flat regions: no division by ~0
    return torch.exp(-d / variance)


def self_similarity_loss(inputs: Sequence[Tensor], outputs: Sequence[Tensor], radius: int) -> Tensor:
    """Mean absolute difference of each modality's input and CoMIR self-similarity descriptors.

    Away from the ``radius + 1`` px border (where the shifts read padding).

    Parameters
    ----------
    inputs : Sequence[torch.Tensor]
        ``(N, C_in, H, W)`` network inputs, one per modality.
    outputs : Sequence[torch.Tensor]
        ``(N, C, H, W)`` CoMIRs, one per modality, in the order of ``inputs``.
    radius : int
        Offset of :func:`self_similarity` in px.

    Returns
    -------
    torch.Tensor
        The scalar term (mean over modalities), float32.

    Raises
    ------
    ValueError
        If ``inputs`` and ``outputs`` differ in length.
    """
    border = int(radius) + 1
    with _autocast_off(outputs[0].device):
        terms = []
        for x, z in zip(inputs, outputs, strict=True):
            difference = self_similarity(x.float(), radius) - self_similarity(z.float(), radius)
            terms.append(difference[..., border:-border, border:-border].abs().mean())
        return torch.stack(terms).mean()


def rot90_batch(x: Tensor, k: Tensor) -> Tensor:
    """Rotate sample ``i`` of ``(N, C, H, W)`` by ``k[i]`` quarter turns.

    Same direction as ``torch.rot90(x[i], k[i], dims=(1, 2))`` (dims (2, 3) of
    the batch); negative ``k`` turns the other way. Samples are grouped by
    ``k mod 4``, so there are at most three rotations whatever ``N``. Requires
    square images so that every sample keeps its shape. Differentiable.

    Parameters
    ----------
    x : torch.Tensor
        ``(N, C, H, W)`` square images (``H == W``).
    k : torch.Tensor
        ``(N,)`` integer quarter turns per sample (any integers; taken modulo 4).

    Returns
    -------
    torch.Tensor
        ``(N, C, H, W)`` rotated images.

    Raises
    ------
    ValueError
        If ``x`` is not 4-D or not square, or ``k`` is not an integer tensor of shape ``(N,)``.
    """
    if x.dim() != 4:
        raise ValueError(f"rot90_batch expects (N, C, H, W), got shape {tuple(x.shape)}")
    if x.shape[2] != x.shape[3]:
        raise ValueError(f"rot90_batch needs square images (H == W), got {x.shape[2]} x {x.shape[3]}")
    k = torch.as_tensor(k, device=x.device)
    if k.shape != (x.shape[0],) or k.is_floating_point() or k.is_complex():
        raise ValueError(f"k must be an integer tensor of shape ({x.shape[0]},), got {k.dtype} {tuple(k.shape)}")
    k = k % 4
    out = x
    for turns in (1, 2, 3):
        idx = (k == turns).nonzero().squeeze(1)
        if idx.numel():
            out = out.index_copy(0, idx, torch.rot90(x.index_select(0, idx), turns, dims=(2, 3)))
    return out


def equivariant_forward(model: nn.Module, x: Tensor, generator: torch.Generator | None) -> Tensor:
    """C4-equivariant training forward pass: ``rot90(model(rot90(x, k)), -k)``.

    ``k`` in {0, 1, 2, 3} is drawn per sample from ``generator`` (a CPU
    generator, so the draws do not depend on the device; ``None`` uses
    torch's global CPU generator), then moved to ``x.device``. Use one call
    (or one generator stream) per modality so that each modality gets its own
    draws (docs/method.md, section 4).

    Parameters
    ----------
    model : torch.nn.Module
        The network, mapping ``(N, C_in, H, W)`` to ``(N, C, H, W)``.
    x : torch.Tensor
        ``(N, C_in, H, W)`` square input batch.
    generator : torch.Generator or None
        CPU generator of the quarter turns; ``None``: torch's global CPU generator.

    Returns
    -------
    torch.Tensor
        ``(N, C, H, W)`` outputs, rotated back to the input's orientation.
    """
    k = torch.randint(0, 4, (x.shape[0],), generator=generator).to(x.device)
    return rot90_batch(model(rot90_batch(x, k)), -k)
