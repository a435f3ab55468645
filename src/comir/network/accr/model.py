"""The ACCR model: two CoMIR encoders, cross-modal attention and the registration head (the package doc)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from comir.network.accr.attention import CosineMatching, CrossAttention, positional_encoding
from comir.network.accr.geometry import (
    HEAD_TRANSFORMS,
    autocast_off,
    consensus_start,
    invert_matrices,
    local_soft_argmax,
    matrix_params,
    robust_fit,
    token_centres,
    token_validity,
    transform_points,
)
from comir.network.model import Tiramisu

#: The two encoders' slots (the modalities of a CoMIR model, :data:`comir.imaging.preprocess.SLOTS`).
ENCODER_SLOTS: tuple[str, str] = ("A", "B")


@dataclass(frozen=True)
class ACCRConfig:
    """Hyper-parameters of the attention and the head of an :class:`ACCRNet` (the encoders have theirs).

    Attributes
    ----------
    patch : int
        Side of a token in px of the CoMIRs: the coarse level of the attention. An ``H x W``
        reference gives ``(H / patch) (W / patch)`` tokens.
    key_stride : int
        Distance in px between the floating image's tokens; divides ``patch``. A floating image
        gives ``((H - patch) / key_stride + 1) ((W - patch) / key_stride + 1)`` tokens; the
        attention's memory is the product of the two counts per head.
    embed_dim : int
        Channels of a token; divisible by ``heads`` and, with ``positional``, by 4.
    heads : int
        Attention heads.
    transform : str
        The head's transform model: ``"rigid"`` (angle, tx, ty) or ``"affine"`` (6 parameters).
    field : bool
        Whether the head also gives a coarse displacement field (:mod:`comir.network.accr`).
    positional : bool
        Whether 2-D positional encodings are added to the tokens.
    attention : bool
        Whether the reference tokens attend to the floating ones through the learned cross-attention
        (:class:`.attention.CrossAttention`); ``False`` (an ablation): their weights are the plain
        cosines of the embedded tokens (:class:`.attention.CosineMatching`), with no exchange between
        the images, so ``heads`` is unused and stage 2 trains the embedding and the confidence.
    match_radius : int or None
        A reference token's correspondence is the attention-weighted mean of the floating tokens
        within this many key steps (per axis) of its most attended one
        (:func:`.geometry.local_soft_argmax`); ``None``: of every floating token (the plain
        soft-argmax, pulled towards the image's centre when the attention spreads).
    """

    patch: int = 8
    key_stride: int = 4
    embed_dim: int = 32
    heads: int = 4
    transform: str = "rigid"
    field: bool = False
    positional: bool = True
    attention: bool = True
    match_radius: int | None = 2

    def __post_init__(self) -> None:
        if self.transform not in HEAD_TRANSFORMS:
            raise ValueError(f"ACCRConfig.transform must be one of {HEAD_TRANSFORMS}, got {self.transform!r}")
        if min(int(self.patch), int(self.key_stride), int(self.heads), int(self.embed_dim)) < 1:
            raise ValueError("ACCRConfig's patch, key_stride, heads and embed_dim must be >= 1")
        if self.match_radius is not None and int(self.match_radius) < 0:
            raise ValueError(f"ACCRConfig.match_radius must be >= 0 or None, got {self.match_radius}")
        if self.patch % self.key_stride:
            raise ValueError(f"ACCRConfig.key_stride {self.key_stride} must divide patch {self.patch}")
        if (self.attention and self.embed_dim % self.heads) or (self.positional and self.embed_dim % 4):
            raise ValueError(
                f"ACCRConfig.embed_dim {self.embed_dim} must be divisible by heads ({self.heads})"
                + (" and by 4 (the positional encoding's sin/cos of x and y)" if self.positional else "")
            )

    @property
    def window(self) -> int:
        """Side in px of what a token's embedding sees: its square and ``patch // 2`` px around it."""
        return self.patch + 2 * (self.patch // 2)

    def multiple(self, *encoder_multiples: int) -> int:
        """What input sides must be divisible by, with encoders of these ``2 ** depth``: they and the token side.

        Parameters
        ----------
        *encoder_multiples : int
            The encoders' :attr:`comir.network.model.TiramisuConfig.multiple`.

        Returns
        -------
        int
            Their least common multiple with ``patch``.
        """
        return math.lcm(self.patch, *encoder_multiples)

    def parameter_count(self, channels: int) -> int:
        """The number of parameters of an :class:`ACCRNet` besides its encoders', for CoMIRs of ``channels``.

        The embedding (convolution and LayerNorm), the attention (two LayerNorms, the query, key,
        value and output projections, a scale per head; none without ``attention``) and the
        confidence MLP.

        Parameters
        ----------
        channels : int
            Channels of the encoders' CoMIRs (the embedding's input).

        Returns
        -------
        int
            The number of parameters of the embedding, the attention and the confidence MLP.
        """
        d = self.embed_dim
        embedding = channels * self.window**2 * d + d + 2 * d
        attention = 2 * 2 * d + 4 * (d * d + d) + self.heads if self.attention else 0
        confidence = (d * d + d) + (d + 1)
        return embedding + attention + confidence


@dataclass(frozen=True)
class ACCROutput:
    """What :meth:`ACCRNet.forward` gives for a batch of ``N`` pairs (``L_r``, ``L_f``: token counts).

    Attributes
    ----------
    matrix : torch.Tensor
        ``(N, 2, 3)`` float32 floating -> reference matrices (pixels of the inputs).
    params : torch.Tensor
        ``(N, 3)`` (angle in radians, tx, ty: the matrix is :func:`comir.geometry.rigid_matrix`
        of them about the origin) or ``(N, 6)`` (the matrix row by row,
        :data:`comir.geometry.MATRIX_KEYS`).
    attention : torch.Tensor
        ``(N, heads, L_r, L_f)`` (one head without ``attention``): the weights of each reference
        token over the floating tokens (rows sum to 1); tokens row by row of their grids.
    correspondences : torch.Tensor
        ``(N, L_r, 2)`` float32: each reference token's soft correspondence (x, y) in the floating image.
    confidence : torch.Tensor
        ``(N, L_r)`` float32 in [0, 1]: the fit's weights (0 for tokens outside the reference's valid pixels).
    support : torch.Tensor
        ``(N,)`` float32: the summed confidence of the reference tokens that the matrix sends within a
        token (``patch`` px) of their correspondences: how many tokens agree with the answer.
    reference_grid, floating_grid : tuple of int
        The token grids ``(rows, columns)`` of the two inputs.
    representations : tuple of torch.Tensor
        The CoMIRs ``(N, C, H, W)`` of the reference and the floating input.
    coarse_field, field : torch.Tensor or None
        With ``field``: ``(N, rows, columns, 2)`` float32 backward displacements at the reference
        token centres, and ``(N, H, W, 2)`` the same upsampled to every reference pixel; else ``None``.
    """

    matrix: Tensor
    params: Tensor
    attention: Tensor
    correspondences: Tensor
    confidence: Tensor
    support: Tensor
    reference_grid: tuple[int, int]
    floating_grid: tuple[int, int]
    representations: tuple[Tensor, Tensor]
    coarse_field: Tensor | None = None
    field: Tensor | None = None


class ACCRNet(nn.Module):
    """Two CoMIR encoders, cross-modal attention and a registration head (:mod:`comir.network.accr`).

    Parameters
    ----------
    config : ACCRConfig
        The attention's and the head's hyper-parameters.
    encoders : Mapping of str to Tiramisu
        The networks of the slots ``"A"`` and ``"B"`` (e.g. a trained CoMIR model's); both must
        give CoMIRs of the same number of channels. Modules shared between them (shared blocks,
        or one network for both) stay shared. They are used as given, not copied.
    """

    def __init__(self, config: ACCRConfig, encoders: Mapping[str, Tiramisu]):
        super().__init__()
        if set(encoders) != set(ENCODER_SLOTS):
            raise ValueError(f"ACCRNet needs the encoders {ENCODER_SLOTS}, got {sorted(encoders)}")
        channels = {encoders[slot].config.out_channels for slot in ENCODER_SLOTS}
        if len(channels) != 1:
            raise ValueError(f"the two encoders give CoMIRs of different channel counts: {sorted(channels)}")
        self.config = config
        self.encoders = nn.ModuleDict({slot: encoders[slot] for slot in ENCODER_SLOTS})
        d = config.embed_dim
        # Applied with the stride of the side (patch or key_stride) by tokens(), not by its own forward.
        self.embed = nn.Conv2d(channels.pop(), d, kernel_size=config.window)
        self.embed_norm = nn.LayerNorm(d)
        self.attention = CrossAttention(d, config.heads) if config.attention else CosineMatching()
        self.confidence = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, 1))
        self.encoders.eval()

    @property
    def multiple(self) -> int:
        """Input sides must be divisible by this: the encoders' ``2 ** depth`` and the token side."""
        return self.config.multiple(*(encoder.config.multiple for encoder in self.encoders.values()))

    def head_parameters(self) -> list[nn.Parameter]:
        """The parameters besides the encoders': the embedding, the attention and the confidence."""
        encoder = {id(p) for p in self.encoders.parameters()}
        return [p for p in self.parameters() if id(p) not in encoder]

    def train(self, mode: bool = True) -> ACCRNet:
        """Train or eval mode for the head; the encoders stay in eval mode (the package doc).

        Stage 2 keeps stage 1's BatchNorm statistics and no dropout: fine-tuning (their weights
        trained) then changes what they compute only through the weights, and a model registers
        as it was trained.

        Parameters
        ----------
        mode : bool, optional
            True for train mode, False for eval mode (of everything but the encoders). Default True.

        Returns
        -------
        ACCRNet
            ``self``.
        """
        super().train(mode)
        self.encoders.eval()
        return self

    def tokens(self, comir: Tensor, stride: int) -> tuple[Tensor, tuple[int, int]]:
        """A CoMIR's tokens every ``stride`` px ``(N, L, D)``, without positions, and their grid ``(rows, cols)``.

        Parameters
        ----------
        comir : torch.Tensor
            ``(N, C, H, W)`` CoMIRs; each channel is instance-normalised before the embedding.
        stride : int
            Distance in px between tokens (``patch`` for the reference, ``key_stride`` for the floating
            image).

        Returns
        -------
        tokens : torch.Tensor
            ``(N, L, embed_dim)`` layer-normalised embeddings, row by row.
        grid : tuple[int, int]
            ``(rows, columns)`` of the tokens: ``((H - patch) / stride + 1, (W - patch) / stride + 1)``.
        """
        standardised = F.instance_norm(comir.float()).to(comir.dtype)
        padding = self.config.patch // 2
        embedded = F.conv2d(standardised, self.embed.weight, self.embed.bias, stride=stride, padding=padding)
        grid = (embedded.shape[-2], embedded.shape[-1])
        return self.embed_norm(embedded.flatten(2).transpose(1, 2)), grid

    def forward(
        self,
        reference: Tensor,
        floating: Tensor,
        reference_slot: str = "A",
        reference_valid: Tensor | None = None,
        floating_valid: Tensor | None = None,
        field: bool | None = None,
    ) -> ACCROutput:
        """Register a batch: ``reference`` ``(N, C_ref, H, W)`` and ``floating`` ``(N, C_flo, H', W')``.

        Parameters
        ----------
        reference, floating : torch.Tensor
            The networks' inputs; sides divisible by :attr:`multiple`.
        reference_slot : str
            The reference's modality (``"A"`` or ``"B"``); the floating input is the other one.
        reference_valid, floating_valid : torch.Tensor or None
            ``(N, H, W)`` bool valid-pixel masks; a token counts when half its pixels are valid.
            Invalid reference tokens get confidence 0, invalid floating tokens are not attended
            to (a pair needs at least one valid floating token). ``None``: every pixel is valid.
        field : bool or None
            Whether to give the displacement field; ``None``: :attr:`ACCRConfig.field`. The field
            has no parameters of its own (it is made of the correspondences, the confidences and
            the matrix), so any model gives one; ``ACCRConfig.field`` also trains it (stage 2).

        Returns
        -------
        ACCROutput
            Matrices, parameters, attention, correspondences, confidences, CoMIRs and (with
            ``field``) the displacement field. The fit and the field are computed in float32
            with autocast off; the encoders and the attention run in the caller's precision.

        Raises
        ------
        ValueError
            For an unknown slot or sides not divisible by :attr:`multiple`.
        """
        if reference_slot not in ENCODER_SLOTS:
            raise ValueError(f"reference_slot must be one of {ENCODER_SLOTS}, got {reference_slot!r}")
        for role, image in (("reference", reference), ("floating", floating)):
            if image.dim() != 4 or image.shape[-2] % self.multiple or image.shape[-1] % self.multiple:
                raise ValueError(
                    f"ACCR {role} input must be (N, C, H, W) with H and W divisible by {self.multiple}, "
                    f"got {tuple(image.shape)}"
                )
        floating_slot = ENCODER_SLOTS[1 - ENCODER_SLOTS.index(reference_slot)]
        comirs = (self.encoders[reference_slot](reference), self.encoders[floating_slot](floating))
        return self.match(comirs[0], comirs[1], reference_valid, floating_valid, field)

    def match(
        self,
        reference_comir: Tensor,
        floating_comir: Tensor,
        reference_valid: Tensor | None = None,
        floating_valid: Tensor | None = None,
        field: bool | None = None,
    ) -> ACCROutput:
        """:meth:`forward` after the encoders: the attention and the head on two batches of CoMIRs.

        For a reference registered against several floating images (start angles, :mod:`comir.register.accr`)
        the reference's CoMIR is computed once.

        Parameters
        ----------
        reference_comir, floating_comir : torch.Tensor
            ``(N, C, H, W)`` and ``(N, C, H', W')``: the encoders' outputs for inputs whose sides are
            divisible by :attr:`multiple` (not checked here).
        reference_valid, floating_valid : torch.Tensor or None
            As :meth:`forward`'s.
        field : bool or None
            As :meth:`forward`'s.

        Returns
        -------
        ACCROutput
            As :meth:`forward`'s, with these CoMIRs as its ``representations``.
        """
        with_field = self.config.field if field is None else bool(field)
        patch, stride, dim = self.config.patch, self.config.key_stride, self.config.embed_dim
        comirs = (reference_comir, floating_comir)
        device = reference_comir.device
        queries, reference_grid = self.tokens(comirs[0], patch)
        keys, floating_grid = self.tokens(comirs[1], stride)
        query_positions = token_centres(reference_grid, patch, patch, device)
        key_positions = token_centres(floating_grid, stride, patch, device)
        if self.config.positional:
            queries = queries + positional_encoding(query_positions / patch, dim).to(queries.dtype)
            keys = keys + positional_encoding(key_positions / patch, dim).to(keys.dtype)
        ignored = None if floating_valid is None else ~token_validity(floating_valid, patch, stride)
        attended, attention = self.attention(queries, keys, ignored)
        logits = self.confidence(attended)[..., 0]
        with autocast_off(device):
            weights = attention.float().mean(dim=1)
            correspondences = local_soft_argmax(weights, key_positions, floating_grid, self.config.match_radius)
            confidence = torch.sigmoid(logits.float())
            if reference_valid is not None:
                confidence = confidence * token_validity(reference_valid, patch, patch)
            transform = self.config.transform
            targets = query_positions.expand_as(correspondences)
            start = consensus_start(correspondences, targets, confidence, transform, patch)
            matrix = robust_fit(correspondences, targets, confidence, transform, patch, start)
            residuals = (transform_points(matrix, correspondences) - targets).norm(dim=-1)
            agree = (residuals <= patch).to(confidence.dtype)  # the tokens the matrix sends within a token
            support = (confidence * agree).sum(dim=1).detach()
            coarse_field = dense_field = None
            if with_field:
                # A token's own correspondence where it is confident and agrees with the fitted transform
                # within a token (a coarse field's deviation; farther, a wrong match), the transform's elsewhere.
                modelled = transform_points(invert_matrices(matrix), query_positions)
                trust = (confidence * agree)[..., None]
                blend = trust * correspondences + (1 - trust) * modelled
                coarse_field = (blend - query_positions).reshape(len(blend), *reference_grid, 2)
                dense_field = F.interpolate(
                    coarse_field.permute(0, 3, 1, 2), scale_factor=patch, mode="bilinear", align_corners=False
                ).permute(0, 2, 3, 1)
        return ACCROutput(
            matrix=matrix,
            params=matrix_params(matrix, transform),
            attention=attention,
            correspondences=correspondences,
            confidence=confidence,
            support=support,
            reference_grid=reference_grid,
            floating_grid=floating_grid,
            representations=comirs,
            coarse_field=coarse_field,
            field=dense_field,
        )


__all__ = ["ENCODER_SLOTS", "ACCRConfig", "ACCRNet", "ACCROutput"]
