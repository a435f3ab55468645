"""ACCR's stage 2: the registration head trained on aligned pairs moved by known random transforms.

docs/explanation/accr.md. Each step cuts aligned patch pairs of the training images
(:class:`~comir.training.sampler.PatchSampler`, seeded per step by
:class:`~comir.training.sampler.TrainingBatches`, with its rotations, flips and intensity
augmentation), draws a random floating -> reference transform per pair (:func:`random_transforms`),
and makes the floating patch from the other modality moved by it, so the truth is known by
construction: reference pixel ``q`` of the central ``P x P`` crop of a ``P + 2 m`` px patch shows
what floating pixel ``p`` shows for ``q = M p``. The margin ``m`` (:func:`transform_margin`) keeps
every floating pixel inside the patch: no padding enters. With ``max_deformation_px`` the
reference patch is also deformed, by a random smooth field ``d`` per pair (:func:`random_deformations`):
reference pixel ``q`` shows the patch at ``q + d(q)``, so its true match is ``M^-1 (q + d(q))``,
in closed form (no field to invert); ``M`` stays the transform the head's matrix is scored against,
and the matches, the assignment, the confidence and the field learn the deformation. The reference modality alternates
over the steps (``reference_slots``), so one model registers both ways.

Losses, each with its weight (:class:`HeadTrainingConfig`):

* ``transform``: the mean distance (px) over the floating patch's four corner pixels between where
  the predicted and the true matrix send them (the project's corner error,
  :func:`comir.geometry.corner_error`) plus, with a field, the field's mean endpoint error (px)
  against the true mapping's field (the transform's, deformed where the reference is);
* ``match``: the mean distance (px) between each reference token's soft correspondence and where
  the truth puts its centre in the floating patch (tokens whose true match lies outside it left
  out): the attention's own supervision, one point per token where the corner error gives one
  number per pair, which is what makes the head learn within a hundred steps;
* ``assignment``: the cross-entropy of each reference token's attention (averaged over the heads)
  over the floating tokens against its true match spread bilinearly over the four tokens around
  it (tokens whose true match lies outside the floating token grid left out): a contrastive loss
  (InfoNCE), every other floating token a negative. The distance above moves the correspondence
  only within the window of the most attended token (:attr:`ACCRConfig.match_radius`); this one
  raises the right token's weight wherever the peak is, so the head learns on real images where
  the first peaks are mostly wrong;
* ``confidence``: the binary cross-entropy of each reference token's confidence against whether
  its correspondence lies within a token (``patch`` px) of its true match: the fit's weights and
  the registration's support (:attr:`ACCROutput.support`) learn which tokens to trust;
* ``similarity``: the mean squared difference between the reference's CoMIR and the floating's
  warped onto it by the prediction (field, else matrix), where the warp lands inside the floating
  patch; it needs no truth, but with fine-tuned encoders and no transform term it could shrink the
  CoMIRs instead of aligning them;
* ``smoothness``: the mean squared difference (px^2) of neighbouring coarse field vectors.

The encoders are frozen (``finetune_encoders: false``) or trained with the head; in both cases
they stay in eval mode (:meth:`comir.network.accr.model.ACCRNet.train`). Mixed precision as in CoMIR
training (:mod:`comir.network.precision`: on CUDA when asked; the fit and the losses in float32).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from comir import geometry
from comir.deformation.synthetic import random_displacement
from comir.network import precision
from comir.network.accr.geometry import invert_matrices, pixel_grid, sample_at, token_centres, transform_points
from comir.network.accr.model import ENCODER_SLOTS, ACCRConfig, ACCRNet, ACCROutput
from comir.network.device import resolve_device, to_device
from comir.network.model import TiramisuConfig
from comir.training.ablations import share_blocks
from comir.training.loop import build_models
from comir.training.sampler import PatchSampler, TrainingBatches

log = logging.getLogger(__name__)

# Seeds of the streams, with the run's seed: the patch pairs and the random transforms (CoMIR
# training uses 2, 5 and 6; distinct streams keep the draws independent of each other).
_PATCH_STREAM, _TRANSFORM_STREAM = 7, 8
# The head's initialisation seed offset (build_models seeds the encoders with offsets 0 and 1).
_HEAD_SEED_OFFSET = 3


@dataclass(frozen=True)
class HeadTrainingConfig:
    """The settings of :func:`train_registration_head`.

    Attributes
    ----------
    steps, batch_size : int
        Optimisation steps and pairs per step.
    patch_size : int
        Side ``P`` of the reference and floating patches; divisible by the model's ``multiple``.
    max_angle_deg, max_shift_px : float
        The random transforms: rotation about the patch centre ``U(-a, a)`` degrees, then a
        translation ``U(-t, t)`` px per axis.
    max_linear : float
        Affine heads only: each entry of the linear part is perturbed by ``U(-l, l)`` (scale and
        shear) after the rotation; must be 0 for a rigid head.
    max_deformation_px, deformation_smoothness_px : float
        The reference patch's random deformation (module doc): per pair a smooth invertible field
        (:func:`comir.deformation.synthetic.random_displacement`, control spacing
        ``deformation_smoothness_px``) whose largest displacement is drawn uniformly in
        ``[0, max_deformation_px]``; 0 (default): none, and the training is that of before.
    reference_slots : tuple of str
        The reference modality of step ``k`` is ``reference_slots[k % len]``.
    finetune_encoders : bool
        Whether the encoders' weights are trained too (else frozen).
    optimizer settings : float
        ``learning_rate``, ``weight_decay`` (Adam), ``grad_clip`` (norm over the trained parameters).
    transform_weight, match_weight, assignment_weight, confidence_weight : float
        The losses' weights (module doc).
    similarity_weight, smoothness_weight : float
        The losses' weights (module doc); the last needs a model with ``field``.
    rotation, flips, augmentation : bool, bool, Mapping
        :class:`~comir.training.sampler.PatchSampler`'s augmentation of the aligned pairs.
    device, mixed_precision, seed, threads :
        As in :class:`~comir.training.settings.TrainingConfig`.
    """

    steps: int = 200
    batch_size: int = 8
    patch_size: int = 64
    max_angle_deg: float = 10.0
    max_shift_px: float = 8.0
    max_linear: float = 0.0
    max_deformation_px: float = 0.0
    deformation_smoothness_px: float = 64.0
    reference_slots: tuple[str, ...] = ENCODER_SLOTS
    finetune_encoders: bool = False
    learning_rate: float = 3e-3
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    transform_weight: float = 1.0
    match_weight: float = 1.0
    assignment_weight: float = 1.0
    confidence_weight: float = 1.0
    similarity_weight: float = 0.0
    smoothness_weight: float = 0.0
    rotation: bool = True
    flips: bool = True
    augmentation: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    device: str = "cpu"
    mixed_precision: bool = True
    seed: int = 0
    threads: int = 1

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], seed: int, threads: int) -> HeadTrainingConfig:
        """From a validated ``accr.training`` section (its keys are fields), the run's seed and threads.

        Parameters
        ----------
        cfg : Mapping[str, Any]
            The section; ``reference_slots`` as a list.
        seed : int
            The run's random seed.
        threads : int
            Number of CPU threads of the run.

        Returns
        -------
        HeadTrainingConfig
            The settings of the run.
        """
        settings = dict(cfg)
        if "reference_slots" in settings:
            settings["reference_slots"] = tuple(settings["reference_slots"])
        return cls(seed=seed, threads=threads, **settings)


def build_accr(
    config: ACCRConfig, encoders: Mapping[str, TiramisuConfig], seed: int, shared_blocks: int = 0
) -> ACCRNet:
    """A new :class:`ACCRNet`: encoders as CoMIR training builds them (:func:`~comir.training.loop.build_models`).

    The first ``shared_blocks`` down blocks are shared (:func:`comir.training.ablations.share_blocks`);
    the head is initialised from its own seed. For a trained CoMIR model, pass its networks to
    :class:`ACCRNet` instead.

    Parameters
    ----------
    config : ACCRConfig
        The attention's and the head's hyper-parameters.
    encoders : Mapping[str, TiramisuConfig]
        The architectures of the encoders of the slots ``A`` and ``B``.
    seed : int
        The run's seed: the encoders are built as :func:`~comir.training.loop.build_models` does with it,
        the head after seeding torch's global generator with ``seed * 1000 + 3``.
    shared_blocks : int, optional
        Number of leading down blocks B shares with A. Default 0.

    Returns
    -------
    ACCRNet
        The untrained model.

    Raises
    ------
    ValueError
        If the blocks cannot be shared (:func:`~comir.training.ablations.share_blocks`) or the encoders'
        CoMIRs differ in channels.
    """
    models = build_models(encoders, seed)
    share_blocks(models, shared_blocks)
    torch.manual_seed(seed * 1000 + _HEAD_SEED_OFFSET)
    return ACCRNet(config, models)


def random_transforms(
    rng: np.random.Generator, n: int, size: int, cfg: HeadTrainingConfig, transform: str
) -> np.ndarray:
    """``(n, 2, 3)`` random floating -> reference matrices of ``size`` px patches (:class:`HeadTrainingConfig`).

    ``M = [L R | c + t - L R c]`` with ``R`` the rotation, ``L = I + U(-l, l)`` (affine only,
    else ``I``), ``t`` the translation and ``c`` the patch centre.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of the draws.
    n : int
        Number of matrices.
    size : int
        Side ``P`` of the patches in px; the centre ``c`` is ``((P - 1) / 2, (P - 1) / 2)``.
    cfg : HeadTrainingConfig
        ``max_angle_deg``, ``max_shift_px`` and ``max_linear`` bound the draws.
    transform : str
        The head's transform model: ``"affine"`` perturbs the linear part, anything else (``"rigid"``) does not.

    Returns
    -------
    numpy.ndarray
        ``(n, 2, 3)`` float64 matrices in px.
    """
    centre = np.full(2, (size - 1) / 2.0)
    angles = np.radians(rng.uniform(-cfg.max_angle_deg, cfg.max_angle_deg, n))
    shifts = rng.uniform(-cfg.max_shift_px, cfg.max_shift_px, (n, 2))
    perturb = rng.uniform(-cfg.max_linear, cfg.max_linear, (n, 2, 2)) if transform == "affine" else np.zeros((n, 2, 2))
    matrices = np.empty((n, 2, 3))
    for i in range(n):
        linear = (np.eye(2) + perturb[i]) @ geometry.rigid_matrix(angles[i], 0.0, 0.0)[:, :2]
        matrices[i] = np.hstack([linear, (centre + shifts[i] - linear @ centre)[:, None]])
    return matrices


def transform_margin(cfg: HeadTrainingConfig) -> int:
    """Margin ``m`` (px) around a ``P`` px patch that holds every floating pixel of :func:`random_transforms`.

    A patch pixel moves by at most ``|L R - I| r + |t|`` with ``r`` the half-diagonal: the
    rotation's part ``2 sin(a / 2) <= a``, the perturbation's at most its Frobenius norm ``2 l``;
    plus the reference's deformation (``max_deformation_px``: the deformed reference samples the
    patch that far beyond its crop) and one pixel for the bilinear interpolation.

    Parameters
    ----------
    cfg : HeadTrainingConfig
        ``patch_size``, ``max_angle_deg``, ``max_linear`` and ``max_shift_px``.

    Returns
    -------
    int
        The margin in px.
    """
    radius = (cfg.patch_size - 1) / math.sqrt(2)
    linear = math.radians(cfg.max_angle_deg) + 2 * cfg.max_linear
    return math.ceil(linear * radius + cfg.max_shift_px * math.sqrt(2) + cfg.max_deformation_px) + 1


def random_deformations(rng: np.random.Generator, n: int, cfg: HeadTrainingConfig) -> np.ndarray | None:
    """``(n, P, P, 2)`` float32 random smooth deformations of the reference patches, or None without any.

    Each pair's field is :func:`comir.deformation.synthetic.random_displacement` of the
    ``patch_size`` grid with control spacing ``deformation_smoothness_px`` and a largest
    displacement drawn uniformly in ``[0, max_deformation_px]``; a draw too steep to be invertible
    is drawn again from the same stream (deterministic), at most ten times.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of the draws (the step's, after its transforms).
    n : int
        Number of fields.
    cfg : HeadTrainingConfig
        ``patch_size``, ``max_deformation_px`` and ``deformation_smoothness_px``.

    Returns
    -------
    numpy.ndarray or None
        The fields (backward, on the reference grid: pixel ``q`` shows the patch at ``q + d(q)``),
        or None when ``max_deformation_px`` is 0.

    Raises
    ------
    ValueError
        When ten draws in a row would fold (``max_deformation_px`` too large for the spacing).
    """
    if not cfg.max_deformation_px:
        return None
    size = cfg.patch_size
    fields = np.empty((n, size, size, 2), np.float32)
    for i in range(n):
        for attempt in range(10):
            try:
                largest = rng.uniform(0.0, cfg.max_deformation_px)
                fields[i] = random_displacement((size, size), largest, cfg.deformation_smoothness_px, rng)
                break
            except ValueError:
                if attempt == 9:
                    raise ValueError(
                        f"max_deformation_px {cfg.max_deformation_px} is too large for deformation_smoothness_px "
                        f"{cfg.deformation_smoothness_px}: ten draws in a row would fold"
                    ) from None
    return fields


def corner_distance(estimated: torch.Tensor, truth: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """``(N,)`` mean distance (px) over the four corner pixels between two batches of matrices.

    :func:`comir.geometry.corner_error` in PyTorch, differentiable in ``estimated``.

    Parameters
    ----------
    estimated : torch.Tensor
        ``(N, 2, 3)`` estimated floating -> reference matrices.
    truth : torch.Tensor
        ``(N, 2, 3)`` true matrices.
    width, height : int
        Size in px of the floating image whose corner pixels are moved.

    Returns
    -------
    torch.Tensor
        ``(N,)`` distances in px, in ``estimated``'s dtype.
    """
    corners = torch.as_tensor(geometry.corners(width, height), dtype=estimated.dtype, device=estimated.device)
    return (transform_points(estimated, corners) - transform_points(truth, corners)).norm(dim=-1).mean(dim=1)


def check_head_settings(config: ACCRConfig, multiple: int, cfg: HeadTrainingConfig) -> None:
    """Stop at settings a model of ``config`` cannot be trained with (before any work, also at parse time).

    Parameters
    ----------
    config : ACCRConfig
        The model's attention and head.
    multiple : int
        What the model's input sides must be divisible by (:meth:`ACCRConfig.multiple`).
    cfg : HeadTrainingConfig
        The training's settings.

    Raises
    ------
    ValueError
        For a patch size not divisible by ``multiple``, ``max_linear`` with a rigid head, reference
        slots that are not encoder slots, or ``smoothness_weight`` without a field.
    """
    if cfg.patch_size % multiple:
        raise ValueError(f"patch_size {cfg.patch_size} must be divisible by the model's multiple {multiple}")
    if config.transform == "rigid" and cfg.max_linear:
        raise ValueError("max_linear (scale and shear) needs an affine head; this model's is rigid")
    unknown = [slot for slot in cfg.reference_slots if slot not in ENCODER_SLOTS]
    if unknown or not cfg.reference_slots:
        raise ValueError(f"reference_slots must name slots of {ENCODER_SLOTS}, got {cfg.reference_slots}")
    if cfg.smoothness_weight and not config.field:
        raise ValueError("smoothness_weight needs a model with a displacement field (ACCRConfig.field)")
    if not (math.isfinite(cfg.max_deformation_px) and cfg.max_deformation_px >= 0):
        raise ValueError(f"max_deformation_px must be finite and >= 0, got {cfg.max_deformation_px}")
    if not (math.isfinite(cfg.deformation_smoothness_px) and cfg.deformation_smoothness_px > 0):
        raise ValueError(f"deformation_smoothness_px must be finite and > 0, got {cfg.deformation_smoothness_px}")


def head_losses(
    output: ACCROutput, truth: torch.Tensor, weights: HeadTrainingConfig, deformation: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """The losses of one batch (module doc), each a float32 scalar, and their weighted ``total``.

    Parameters
    ----------
    output : ACCROutput
        The model's output for the batch.
    truth : torch.Tensor
        ``(N, 2, 3)``: the true floating -> reference matrices of the batch.
    weights : HeadTrainingConfig
        The losses' weights (``transform_weight``, ``match_weight``, ``assignment_weight``,
        ``confidence_weight``, ``similarity_weight``, ``smoothness_weight``); a zero weight skips
        that loss (but not ``corner_px``).
    deformation : torch.Tensor or None, optional
        ``(N, H, W, 2)``: the reference patches' deformations (:func:`moved_pairs`): reference pixel
        ``q``'s true match is ``truth^-1 (q + d(q))``. Default None: none, ``truth^-1 q``.

    Returns
    -------
    dict[str, torch.Tensor]
        ``corner_px``, then ``match_px``, ``assignment``, ``confidence``, ``field_px`` (with a
        field), ``similarity`` and ``smoothness`` as configured, and ``total``.
    """
    reference, floating = (comir.float() for comir in output.representations)
    height, width = reference.shape[-2:]
    grid = pixel_grid(height, width, reference.device)
    floating_corner = floating.new_tensor([floating.shape[-1] - 1, floating.shape[-2] - 1])
    inverse = invert_matrices(truth)
    losses = {"corner_px": corner_distance(output.matrix, truth, floating.shape[-1], floating.shape[-2]).mean()}
    total = weights.transform_weight * losses["corner_px"]
    patch = width // output.reference_grid[1]
    centres = token_centres(output.reference_grid, patch, patch, reference.device)
    if deformation is not None:  # each token centre's displacement, bilinear in the field
        samples = sample_at(deformation.permute(0, 3, 1, 2), centres.expand(len(truth), 1, -1, 2))
        centres = centres + samples[:, :, 0].transpose(1, 2)
    matches = transform_points(inverse, centres)
    inside = ((matches >= 0) & (matches <= floating_corner)).all(dim=-1)
    distances = (output.correspondences - matches).norm(dim=-1)
    if weights.match_weight:
        losses["match_px"] = (distances * inside).sum() / inside.sum().clamp_min(1)
        total = total + weights.match_weight * losses["match_px"]
    if weights.assignment_weight:
        losses["assignment"] = assignment_entropy(output, matches, patch)
        total = total + weights.assignment_weight * losses["assignment"]
    if weights.confidence_weight:
        right = (distances.detach() <= patch).float()
        # torch's binary_cross_entropy clamps the log at -100: a confidence of exactly 0 or 1 stays finite.
        entropy = torch.nn.functional.binary_cross_entropy(output.confidence, right, reduction="none")
        losses["confidence"] = (entropy * inside).sum() / inside.sum().clamp_min(1)
        total = total + weights.confidence_weight * losses["confidence"]
    if output.field is not None:
        deformed = grid.reshape(-1, 2) if deformation is None else (grid + deformation).reshape(len(truth), -1, 2)
        true_positions = transform_points(inverse, deformed).reshape(-1, height, width, 2)
        losses["field_px"] = (grid + output.field - true_positions).norm(dim=-1).mean()
        total = total + weights.transform_weight * losses["field_px"]
    if weights.similarity_weight:
        if output.field is not None:
            positions = grid + output.field
        else:
            moved = transform_points(invert_matrices(output.matrix), grid.reshape(-1, 2))
            positions = moved.reshape(-1, height, width, 2)
        inside = ((positions >= 0) & (positions <= floating_corner)).all(dim=-1)
        squared = (reference - sample_at(floating, positions)).pow(2).mean(dim=1)
        losses["similarity"] = (squared * inside).sum() / inside.sum().clamp_min(1)
        total = total + weights.similarity_weight * losses["similarity"]
    if weights.smoothness_weight:
        coarse = output.coarse_field
        rows = (coarse[:, 1:] - coarse[:, :-1]).pow(2).sum(-1).mean()
        columns = (coarse[:, :, 1:] - coarse[:, :, :-1]).pow(2).sum(-1).mean()
        losses["smoothness"] = rows + columns
        total = total + weights.smoothness_weight * losses["smoothness"]
    losses["total"] = total
    return losses


def assignment_entropy(output: ACCROutput, matches: torch.Tensor, patch: int) -> torch.Tensor:
    """The mean cross-entropy of the reference tokens' attention against their true matches (module doc).

    A true match at fractional floating-grid position ``(u, v)`` (token centres at integers) is
    the target distribution with the bilinear weights ``(1 - fu)(1 - fv)``, ``fu (1 - fv)``, ... on
    the four tokens around it; the loss of a token is ``-sum_k t_k log p_k`` with ``p`` its
    attention averaged over the heads: the bilinear interpolation of ``log p`` on the grid at
    ``(u, v)`` (:func:`~comir.network.accr.geometry.sample_at`). Tokens whose match lies outside
    the grid's span do not count.

    Parameters
    ----------
    output : ACCROutput
        The model's output (its ``attention``, ``floating_grid`` and floating CoMIR's width).
    matches : torch.Tensor
        ``(N, L_r, 2)`` where the truth puts each reference token's centre in the floating image (px).
    patch : int
        Side in px of a token.

    Returns
    -------
    torch.Tensor
        A float32 scalar (0 when no token's match is inside the grid).
    """
    rows, columns = output.floating_grid
    width = output.representations[1].shape[-1]
    stride = (width - patch) // (columns - 1) if columns > 1 else patch
    grid = (matches - (patch - 1) / 2) / stride  # fractional (column, row) of the floating token grid
    inside = ((grid >= 0) & (grid <= grid.new_tensor([columns - 1, rows - 1]))).all(dim=-1)
    probabilities = output.attention.float().mean(dim=1)
    logs = probabilities.clamp_min(torch.finfo(probabilities.dtype).tiny).log()
    # One single-channel image per reference token, sampled at its own match.
    sampled = sample_at(logs.reshape(-1, 1, rows, columns), grid.reshape(-1, 1, 1, 2))
    entropy = -sampled.reshape(inside.shape)
    return (entropy * inside).sum() / inside.sum().clamp_min(1)


def moved_pairs(
    arrays: Sequence[np.ndarray],
    reference_slot: str,
    truth: np.ndarray,
    margin: int,
    device: torch.device,
    deformation: np.ndarray | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch's reference patches (deformed by ``deformation``) and floating patches moved by ``truth`` (module doc).

    Parameters
    ----------
    arrays : Sequence[numpy.ndarray]
        The aligned ``(N, C, P + 2 m, P + 2 m)`` patches of A and B.
    reference_slot : str
        ``"A"`` or ``"B"``: which of ``arrays`` is the reference; the other is moved.
    truth : numpy.ndarray
        ``(N, 2, 3)`` floating -> reference matrices of the ``P`` px patches.
    margin : int
        The margin ``m`` in px (:func:`transform_margin`).
    device : torch.device
        Where the patches are put.
    deformation : numpy.ndarray or None, optional
        ``(N, P, P, 2)`` backward fields (:func:`random_deformations`): reference pixel ``q`` shows
        the patch at ``q + d(q)``, bilinearly. Default None: the central crop as it is.

    Returns
    -------
    reference : torch.Tensor
        ``(N, C_ref, P, P)``: the central crop of the reference patches (float32 where deformed).
    floating : torch.Tensor
        ``(N, C_flo, P, P)`` float32: the other modality sampled bilinearly where ``truth`` sends each pixel.

    Raises
    ------
    ValueError
        If ``reference_slot`` is not one of the encoder slots.
    """
    index = ENCODER_SLOTS.index(reference_slot)
    reference, other = (to_device(arrays[i], device) for i in (index, 1 - index))
    size = reference.shape[-1] - 2 * margin
    matrices = torch.as_tensor(truth, dtype=torch.float32, device=device)
    # Floating pixel p shows reference pixel M p, which is pixel M p + m of the larger patch.
    positions = transform_points(matrices, pixel_grid(size, size, device).reshape(-1, 2)) + margin
    floating = sample_at(other.float(), positions.reshape(-1, size, size, 2))
    if deformation is None:
        return reference[..., margin : margin + size, margin : margin + size], floating
    shifted = pixel_grid(size, size, device) + torch.as_tensor(deformation, dtype=torch.float32, device=device)
    return sample_at(reference.float(), shifted + margin), floating


def train_registration_head(
    model: ACCRNet, pairs: Sequence[tuple[np.ndarray, np.ndarray]], cfg: HeadTrainingConfig
) -> pd.DataFrame:
    """Train ``model``'s head (and its encoders with ``finetune_encoders``) in place; returns the history.

    Parameters
    ----------
    model : ACCRNet
        The model; its encoders' ``requires_grad`` is set by ``finetune_encoders``.
    pairs : sequence of (numpy.ndarray, numpy.ndarray)
        Aligned training pairs ``(A, B)`` of the networks' inputs ``(C, H, W)`` (as CoMIR
        training takes them); each image at least the sampler's crop of ``P + 2 m`` px
        (``m``: :func:`transform_margin`; with rotation, :func:`comir.imaging.preprocess.rotation_crop`
        of it).
    cfg : HeadTrainingConfig
        The settings; the same settings, pairs and initial model give the same model and history.

    Returns
    -------
    pandas.DataFrame
        One row per step: ``step``, ``reference`` (slot), ``total``, ``corner_px`` and the other
        losses configured, ``seconds``. The model is left in eval mode.

    Raises
    ------
    ValueError
        For settings the model cannot train with (patch size, transform, slots, smoothness
        without a field), or images smaller than the sampler's crop.
    FloatingPointError
        When the loss becomes non-finite.
    """
    check_head_settings(model.config, model.multiple, cfg)
    device = resolve_device(cfg.device)
    if device.type == "cpu":
        torch.set_num_threads(max(1, cfg.threads))
    margin = transform_margin(cfg)
    sampler = PatchSampler(pairs, cfg.patch_size + 2 * margin, cfg.rotation, cfg.flips, cfg.augmentation)
    batches = TrainingBatches(sampler, cfg.batch_size, cfg.seed, _PATCH_STREAM)
    for parameter in model.encoders.parameters():
        parameter.requires_grad_(cfg.finetune_encoders)
    model.to(device).train()
    trained = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trained, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    use_amp = precision.mixed_precision_enabled(device, cfg.mixed_precision)
    scaler = torch.amp.GradScaler(device.type, enabled=precision.needs_grad_scaler(device, use_amp))
    history = []
    log_every = max(1, cfg.steps // 20)  # about twenty progress lines, so a long CPU run shows where it is
    for step in range(cfg.steps):
        start = time.perf_counter()
        slot = cfg.reference_slots[step % len(cfg.reference_slots)]
        rng = np.random.default_rng([cfg.seed, _TRANSFORM_STREAM, step])
        truth = random_transforms(rng, cfg.batch_size, cfg.patch_size, cfg, model.config.transform)
        deformation = random_deformations(rng, cfg.batch_size, cfg)
        reference, floating = moved_pairs(batches[step], slot, truth, margin, device, deformation)
        with precision.autocast(device, use_amp):
            output = model(reference, floating, slot)
        deformed = None if deformation is None else torch.as_tensor(deformation, device=device)
        losses = head_losses(output, torch.as_tensor(truth, dtype=torch.float32, device=device), cfg, deformed)
        if not torch.isfinite(losses["total"]):
            raise FloatingPointError(f"the ACCR head's loss became {losses['total'].item()} at step {step}")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(losses["total"]).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(trained, cfg.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        row = {"step": step, "reference": slot, **{key: value.item() for key, value in losses.items()}}
        history.append({**row, "seconds": time.perf_counter() - start})
        if (step + 1) % log_every == 0 or step + 1 == cfg.steps:
            recent = history[-log_every:]
            log.info(
                "step %d of %d: loss %.4g, corner error %.2f px (%.2f s per step)",
                step + 1,
                cfg.steps,
                row["total"],
                row["corner_px"],
                sum(r["seconds"] for r in recent) / len(recent),
            )
    model.eval()
    return pd.DataFrame(history)


__all__ = [
    "HeadTrainingConfig",
    "assignment_entropy",
    "build_accr",
    "check_head_settings",
    "corner_distance",
    "head_losses",
    "moved_pairs",
    "random_deformations",
    "random_transforms",
    "train_registration_head",
    "transform_margin",
]
