"""FC-DenseNet ("Tiramisu") used by CoMIR, one network per modality.

The architecture follows docs/method.md, section 2, and the authors'
public code (``DenseUNet`` with ``upsampling_type="upsample"`` and the
``ModNet`` head):

* first layer: 3x3 convolution with bias to ``init_filters`` channels;
* dense layer: BN -> ReLU -> 3x3 conv (``growth_rate`` outputs) -> Dropout;
* down path: each dense block outputs its input concatenated with its new
  features; transition down: BN -> ReLU -> 1x1 conv to
  ``int(C * compression)`` -> Dropout2d -> MaxPool 2;
* bottleneck and up blocks output only their new features, except the last up
  block which also keeps its input; transition up: nearest x2 upsampling ->
  3x3 conv -> ReLU -> concatenation with the skip connection (no transposed
  convolution, which creates checkerboard/grid artefacts);
* head: 1x1 convolution without bias to the CoMIR channels, no activation.

Ablation (beyond the paper, off by default): ``input_filters`` appends fixed,
not learned, 3x3 filters of the input's channel mean (Sobel magnitude,
horizontal and vertical Sobel derivatives, Laplacian; replicate padding) as
extra input channels, so the network sees image gradients directly.

All convolutions except the head have a bias, as in the authors' code.
Weights use PyTorch's default initialisation; seed ``torch`` before building
a network to make it reproducible.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from comir.io import reject_unknown_keys


@dataclass(frozen=True)
class TiramisuConfig:
    """Hyper-parameters of a :class:`Tiramisu`.

    The defaults (with ``out_channels=1``) are the paper's biomedical
    configuration (~1.05 M parameters). The Zurich configuration is
    ``init_filters=16, down_blocks=(2, 2, 2), bottleneck=3, compression=1.0,
    dropout=0.0, out_channels=3``.

    ``up_blocks=None`` means ``reversed(down_blocks)``; it is resolved when the
    config is created, so ``config.up_blocks`` is always a tuple and two
    configs describing the same network compare equal. Lists are accepted for
    the block tuples (as read from JSON/YAML) and converted to tuples.

    ``checkpoint=True`` recomputes each dense layer's concatenation/BN/ReLU/conv
    in the backward pass instead of storing it (trades compute for memory);
    it only acts when gradients are computed and never changes the results.
    """

    in_channels: int
    out_channels: int
    init_filters: int = 32
    down_blocks: tuple[int, ...] = (4, 4, 4, 4, 4, 4)
    bottleneck: int = 4
    up_blocks: tuple[int, ...] | None = None
    growth_rate: int = 12
    compression: float = 0.75
    dropout: float = 0.2
    checkpoint: bool = False
    input_filters: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        down = tuple(int(n) for n in self.down_blocks)
        up = tuple(reversed(down)) if self.up_blocks is None else tuple(int(n) for n in self.up_blocks)
        # frozen dataclass: normalised values are written through object.__setattr__
        object.__setattr__(self, "down_blocks", down)
        object.__setattr__(self, "up_blocks", up)
        object.__setattr__(self, "input_filters", tuple(self.input_filters))
        unknown = [name for name in self.input_filters if name not in INPUT_FILTERS]
        if unknown or len(set(self.input_filters)) != len(self.input_filters):
            raise ValueError(
                f"TiramisuConfig.input_filters must be distinct names of {INPUT_FILTERS}, got {self.input_filters}"
            )
        for name in ("in_channels", "out_channels", "init_filters", "growth_rate"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"TiramisuConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not down:
            raise ValueError("TiramisuConfig.down_blocks must contain at least one block")
        if len(up) != len(down):
            raise ValueError(
                f"TiramisuConfig.up_blocks must have as many blocks as down_blocks "
                f"({len(down)}), got {len(up)}"
            )
        if any(n < 1 for n in down + up) or self.bottleneck < 1:
            raise ValueError("every dense block (down, bottleneck, up) needs at least one layer")
        if not 0.0 < self.compression <= 1.0:
            raise ValueError(f"TiramisuConfig.compression must be in (0, 1], got {self.compression}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"TiramisuConfig.dropout must be in [0, 1), got {self.dropout}")

    @property
    def depth(self) -> int:
        """Number of pooling steps (= number of down blocks)."""
        return len(self.down_blocks)

    @property
    def multiple(self) -> int:
        """Input height and width must be divisible by this (``2 ** depth``)."""
        return 2**self.depth

    def to_dict(self) -> dict:
        """Plain JSON/YAML-safe dict (tuples become lists)."""
        d = asdict(self)
        d["down_blocks"] = list(self.down_blocks)
        d["up_blocks"] = list(self.up_blocks)
        d["input_filters"] = list(self.input_filters)
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> TiramisuConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error (likely a typo).

        Parameters
        ----------
        d : Mapping
            The fields of a :class:`TiramisuConfig` by name, as written by :meth:`to_dict`; omitted fields
            take their defaults.

        Returns
        -------
        TiramisuConfig
            The configuration, normalised and validated.

        Raises
        ------
        ValueError
            If ``d`` has a key that is not a field, or a value the configuration rejects.
        """
        reject_unknown_keys(d, [f.name for f in fields(cls)], "TiramisuConfig key(s)")
        return cls(**dict(d))


class _DenseLayer(nn.Module):
    """BN -> ReLU -> 3x3 conv -> Dropout on the concatenation of its inputs."""

    def __init__(self, in_channels: int, growth_rate: int, dropout: float, use_checkpoint: bool):
        super().__init__()
        self.norm = nn.BatchNorm2d(in_channels)
        self.conv = nn.Conv2d(in_channels, growth_rate, kernel_size=3, padding=1, bias=True)
        self.dropout = nn.Dropout(dropout)
        self.use_checkpoint = use_checkpoint

    def _bottleneck(self, *features: Tensor) -> Tensor:
        return self.conv(F.relu(self.norm(torch.cat(features, 1))))

    def infer(self, concatenated: Tensor) -> Tensor:
        """The layer's new features from its input already concatenated (inference only: no dropout)."""
        return self.conv(F.relu(self.norm(concatenated), inplace=True))

    def forward(self, features: list[Tensor]) -> Tensor:
        # Memory-efficient DenseNet (Pleiss et al. 2017), as the authors'
        # "efficient" option: the concatenation, BN and ReLU outputs are not
        # stored but recomputed in the backward pass. This only matters when
        # gradients are computed, so it is skipped otherwise (inference).
        # Caveat in train mode: the recomputation runs BN again, so its
        # running statistics are updated twice per step (as in torchvision's
        # memory_efficient DenseNet); the step's outputs and gradients are
        # unchanged.
        if self.use_checkpoint and torch.is_grad_enabled() and any(f.requires_grad for f in features):
            out = checkpoint(self._bottleneck, *features, use_reentrant=False)
        else:
            out = self._bottleneck(*features)
        return self.dropout(out)


class _DenseBlock(nn.Module):
    """``n_layers`` dense layers; outputs the new features, plus the input if ``keep_input``."""

    def __init__(
        self,
        in_channels: int,
        growth_rate: int,
        n_layers: int,
        dropout: float,
        keep_input: bool,
        use_checkpoint: bool,
    ):
        super().__init__()
        self.layers = nn.ModuleList(
            _DenseLayer(in_channels + i * growth_rate, growth_rate, dropout, use_checkpoint)
            for i in range(n_layers)
        )
        self.keep_input = keep_input
        self.growth_rate = growth_rate
        self.out_channels = (in_channels if keep_input else 0) + n_layers * growth_rate

    def forward(self, x: Tensor) -> Tensor:
        if torch.is_grad_enabled() or self.training:
            features = [x]
            for layer in self.layers:
                features.append(layer(features))
            return torch.cat(features if self.keep_input else features[1:], 1)
        # Inference: the block's features live in one buffer; each layer reads the leading
        # channels as a view and writes only its new ones. Concatenating anew for every layer
        # copies a number of channels that grows with the square of the depth (autograd needs
        # those copies, inference does not).
        batch, channels, height, width = x.shape
        total = channels + len(self.layers) * self.growth_rate
        features = x.new_empty((batch, total, height, width))
        features[:, :channels] = x
        for layer in self.layers:
            features[:, channels : channels + self.growth_rate] = layer.infer(features[:, :channels])
            channels += self.growth_rate
        return features if self.keep_input else features[:, x.shape[1] :]


class _TransitionDown(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int, dropout: float):
        super().__init__(
            nn.BatchNorm2d(in_channels),
            nn.ReLU(),
            nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=True),
            nn.Dropout2d(dropout),
            nn.MaxPool2d(2),
        )


class _TransitionUp(nn.Module):
    """Nearest x2 upsampling -> 3x3 conv -> ReLU, then ``cat([skip, up])``.

    The conv keeps the channel count of the features it upsamples (as in the
    authors' code); this is what gives the paper's parameter counts.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.up = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(channels, channels, kernel_size=3, padding=1, bias=True),
            nn.ReLU(),
        )

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        return torch.cat([skip, self.up(x)], 1)


INPUT_FILTERS = ("sobel", "grad_x", "grad_y", "laplacian")
_SOBEL_X = ((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0))
_LAPLACIAN = ((0.0, 1.0, 0.0), (1.0, -4.0, 1.0), (0.0, 1.0, 0.0))


class InputFilters(nn.Module):
    """Fixed 3x3 filters of the channel mean appended to the input: ``(N, C, H, W) -> (N, C + K, H, W)``.

    ``sobel``: gradient magnitude ``sqrt(gx^2 + gy^2)`` (Sobel, /8 so that a
    unit ramp has gradient 1); ``grad_x``/``grad_y``: the two derivatives;
    ``laplacian``: the 4-neighbour Laplacian.  Replicate padding.
    """

    def __init__(self, names: tuple[str, ...]):
        super().__init__()
        self.names = tuple(names)
        sobel_x = torch.tensor(_SOBEL_X) / 8.0
        kernels = torch.stack([sobel_x, sobel_x.T, torch.tensor(_LAPLACIAN)])[:, None]
        self.register_buffer("kernels", kernels, persistent=False)  # (3, 1, 3, 3), not learned

    def forward(self, x: Tensor) -> Tensor:
        """``x`` with the filters' responses appended as channels.

        Parameters
        ----------
        x : torch.Tensor
            ``(N, C, H, W)`` input; the filters act on its channel mean.

        Returns
        -------
        torch.Tensor
            ``(N, C + K, H, W)``: ``x`` followed by the ``K`` responses in the order of ``names``.
        """
        grey = F.pad(x.mean(dim=1, keepdim=True), (1, 1, 1, 1), mode="replicate")
        gx, gy, laplacian = F.conv2d(grey, self.kernels.to(grey.dtype)).unbind(dim=1)
        computed = {
            "grad_x": gx,
            "grad_y": gy,
            "laplacian": laplacian,
            # The small constant keeps the gradient of sqrt finite on flat regions.
            "sobel": torch.sqrt(gx * gx + gy * gy + 1e-12) if "sobel" in self.names else None,
        }
        return torch.cat([x, *(computed[name][:, None] for name in self.names)], dim=1)


class Tiramisu(nn.Module):
    """FC-DenseNet mapping ``(N, in_channels, H, W)`` to ``(N, out_channels, H, W)``.

    ``H`` and ``W`` must be divisible by ``config.multiple``; pad (never crop)
    before calling at inference.
    """

    def __init__(self, config: TiramisuConfig):
        super().__init__()
        self.config = config
        g, p, ckpt = config.growth_rate, config.dropout, config.checkpoint

        self.input_filters = InputFilters(config.input_filters) if config.input_filters else None
        self.first_conv = nn.Conv2d(
            config.in_channels + len(config.input_filters), config.init_filters, kernel_size=3, padding=1, bias=True
        )
        channels = config.init_filters

        self.down_blocks = nn.ModuleList()
        self.transitions_down = nn.ModuleList()
        skip_channels = []
        for n_layers in config.down_blocks:
            block = _DenseBlock(channels, g, n_layers, p, keep_input=True, use_checkpoint=ckpt)
            self.down_blocks.append(block)
            channels = block.out_channels
            skip_channels.append(channels)
            compressed = int(channels * config.compression)
            self.transitions_down.append(_TransitionDown(channels, compressed, p))
            channels = compressed

        self.bottleneck = _DenseBlock(channels, g, config.bottleneck, p, keep_input=False, use_checkpoint=ckpt)
        channels = self.bottleneck.out_channels

        self.transitions_up = nn.ModuleList()
        self.up_blocks = nn.ModuleList()
        last = len(config.up_blocks) - 1
        for i, (n_layers, skip) in enumerate(zip(config.up_blocks, reversed(skip_channels))):
            self.transitions_up.append(_TransitionUp(channels))
            keep_input = i == last  # the last up block also outputs its input
            block = _DenseBlock(channels + skip, g, n_layers, p, keep_input=keep_input, use_checkpoint=ckpt)
            self.up_blocks.append(block)
            channels = block.out_channels

        # No bias and no activation: the loss (MSE critic, InfoNCE) and the
        # registration methods work on the raw, unbounded representation.
        self.head = nn.Conv2d(channels, config.out_channels, kernel_size=1, bias=False)

    @staticmethod
    def check_input(cfg: TiramisuConfig, x: Tensor) -> None:
        """Raise :class:`ValueError` unless ``x`` is ``(N, in_channels, H, W)`` with sides divisible by ``2**depth``.

        Parameters
        ----------
        cfg : TiramisuConfig
            The configuration of the network ``x`` is meant for.
        x : torch.Tensor
            The input batch to check.

        Raises
        ------
        ValueError
            If ``x`` is not 4-D, has not ``cfg.in_channels`` channels, or its height or width is not a
            multiple of ``cfg.multiple``.
        """
        if x.dim() != 4:
            raise ValueError(f"Tiramisu expects a (N, C, H, W) tensor, got shape {tuple(x.shape)}")
        if x.shape[1] != cfg.in_channels:
            raise ValueError(
                f"Tiramisu expects {cfg.in_channels} input channel(s), got {x.shape[1]} "
                f"(input shape {tuple(x.shape)})"
            )
        h, w = x.shape[-2:]
        if h % cfg.multiple or w % cfg.multiple:
            raise ValueError(
                f"Tiramisu input height and width must be divisible by 2**depth = {cfg.multiple}, "
                f"got {h} x {w}; pad the image (e.g. reflect padding) and crop the output back"
            )

    def forward(self, x: Tensor) -> Tensor:
        """The CoMIR ``(N, out_channels, H, W)`` of ``x``.

        Parameters
        ----------
        x : torch.Tensor
            ``(N, in_channels, H, W)`` input, ``H`` and ``W`` divisible by ``config.multiple``.

        Returns
        -------
        torch.Tensor
            ``(N, out_channels, H, W)`` representation (unbounded: the head has no activation).

        Raises
        ------
        ValueError
            If ``x`` fails :meth:`check_input`.
        """
        self.check_input(self.config, x)
        if self.input_filters is not None:
            x = self.input_filters(x)
        x = self.first_conv(x)
        skips = []
        for block, transition in zip(self.down_blocks, self.transitions_down):
            x = block(x)
            skips.append(x)
            x = transition(x)
        x = self.bottleneck(x)
        for transition, block in zip(self.transitions_up, self.up_blocks):
            x = block(transition(x, skips.pop()))
        return self.head(x)


@dataclass(frozen=True)
class ReceptiveField:
    """Exact receptive field of a :class:`Tiramisu` along one axis (the same along y and x).

    Output pixel ``q`` depends on the input pixels ``q + first .. q + last``
    (inclusive, clipped to the image) with ``(first, last) = offsets[q % period]``:
    max-pooling and nearest upsampling make the field depend on the position
    of ``q`` within the pooling grid of ``period = 2 ** depth`` px, not only on
    the layer sizes. It is structural (which inputs the computation reads,
    whatever the weights).
    """

    offsets: tuple[tuple[int, int], ...]

    @property
    def period(self) -> int:
        """Number of distinct fields: ``2 ** depth``."""
        return len(self.offsets)

    @property
    def before(self) -> int:
        """Largest reach towards smaller coordinates (px above / left of the output pixel)."""
        return max(-first for first, _ in self.offsets)

    @property
    def after(self) -> int:
        """Largest reach towards larger coordinates (px below / right of the output pixel)."""
        return max(last for _, last in self.offsets)

    @property
    def size(self) -> int:
        """Largest extent of one output pixel's field, in input px."""
        return max(last - first + 1 for first, last in self.offsets)


# Receptive-field walk: a feature map at ``scale`` s (input px per feature px) is described by
# ``offsets[r]`` = (first, last): feature pixel Q with Q % period == r depends on the input
# pixels Q * s + first .. Q * s + last. Consecutive pixels' intervals overlap, so every union
# taken below is again an interval.
_Map = tuple[int, tuple[tuple[int, int], ...]]


def _conv3(m: _Map) -> _Map:
    """3x3 convolution (padding 1): pixel Q reads Q - 1, Q, Q + 1."""
    scale, off = m
    p = len(off)
    return scale, tuple(
        (
            min(d * scale + off[(r + d) % p][0] for d in (-1, 0, 1)),
            max(d * scale + off[(r + d) % p][1] for d in (-1, 0, 1)),
        )
        for r in range(p)
    )


def _pool(m: _Map) -> _Map:
    """2x2 max-pool, stride 2: new pixel Q reads old pixels 2Q and 2Q + 1 (at Q * 2s and Q * 2s + s)."""
    scale, off = m
    p = len(off)
    return 2 * scale, tuple(
        (
            min(off[2 * r % p][0], scale + off[(2 * r + 1) % p][0]),
            max(off[2 * r % p][1], scale + off[(2 * r + 1) % p][1]),
        )
        for r in range(max(1, p // 2))
    )


def _upsample(m: _Map) -> _Map:
    """Nearest 2x upsampling: new pixel q reads old pixel q // 2, which starts at q * s/2 - (q % 2) * s/2."""
    scale, off = m
    half = scale // 2
    return half, tuple((off[r // 2][0] - r % 2 * half, off[r // 2][1] - r % 2 * half) for r in range(2 * len(off)))


def _union(a: _Map, b: _Map) -> _Map:
    """Channel concatenation of two maps of the same scale."""
    (scale, oa), (_, ob) = a, b
    p = max(len(oa), len(ob))  # both are powers of two
    return scale, tuple(
        (min(oa[r % len(oa)][0], ob[r % len(ob)][0]), max(oa[r % len(oa)][1], ob[r % len(ob)][1]))
        for r in range(p)
    )


def _dense_block(m: _Map, n_layers: int, keep_input: bool) -> _Map:
    """Each layer convolves (3x3) the concatenation of the block input and all earlier layers."""
    seen, new = m, None
    for _ in range(n_layers):
        layer = _conv3(seen)
        seen = _union(seen, layer)
        new = layer if new is None else _union(new, layer)
    return seen if keep_input else new


def receptive_field(config: TiramisuConfig) -> ReceptiveField:
    """The exact receptive field of a :class:`Tiramisu` with ``config``, in input px.

    Walks the architecture as :meth:`Tiramisu.forward` runs it: 3x3
    convolutions widen the field by one feature pixel each side, 2x2
    max-pools double the scale, nearest 2x upsampling halves it, skip
    concatenations take the union; 1x1 convolutions, BatchNorm, ReLU and
    dropout do not change it. See docs/method.md, section 6.

    Parameters
    ----------
    config : TiramisuConfig
        The architecture of the network.

    Returns
    -------
    ReceptiveField
        Per residue ``r`` of the output pixel modulo ``2 ** depth``, the input offsets it reads.
    """
    m: _Map = (1, ((0, 0),))
    if config.input_filters:
        m = _conv3(m)  # the fixed 3x3 input filters (their input, read unfiltered too, is inside)
    m = _conv3(m)  # first convolution
    skips = []
    for n_layers in config.down_blocks:
        m = _dense_block(m, n_layers, keep_input=True)
        skips.append(m)
        m = _pool(m)  # transition down: BN, ReLU, 1x1 conv, dropout, max-pool
    m = _dense_block(m, config.bottleneck, keep_input=False)
    last = len(config.up_blocks) - 1
    for i, n_layers in enumerate(config.up_blocks):
        m = _union(skips.pop(), _conv3(_upsample(m)))  # transition up: upsample, 3x3 conv, ReLU, concat
        m = _dense_block(m, n_layers, keep_input=i == last)
    scale, offsets = m  # the 1x1 head does not widen it
    assert scale == 1 and len(offsets) == config.multiple
    return ReceptiveField(offsets)


def required_margin(config: TiramisuConfig) -> int:
    """Context px on each side of a tile for tiled inference to equal one pass exactly.

    A tile's kept centre starts and ends on the pooling grid (multiples of
    ``2 ** depth``), so its first output pixels have residues ``r = 0 ..
    period - 1`` and reach ``r + first_r`` px from its start; its last ones
    reach ``r + last_r - (period - 1)`` px past its end. The margin covers the
    farthest of these, rounded up to ``2 ** depth`` so that tiles stay on the
    grid (docs/method.md, section 6).

    Parameters
    ----------
    config : TiramisuConfig
        The architecture of the network.

    Returns
    -------
    int
        The margin in input px, a multiple of ``2 ** depth`` (0 when none is needed).
    """
    field = receptive_field(config)
    period = field.period
    need = max(
        0,
        max(-(r + first) for r, (first, _) in enumerate(field.offsets)),
        max(r + last - (period - 1) for r, (_, last) in enumerate(field.offsets)),
    )
    return -(-need // period) * period


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (BatchNorm running statistics are buffers, not counted).

    Parameters
    ----------
    model : torch.nn.Module
        Any module; parameters with ``requires_grad=False`` are not counted.

    Returns
    -------
    int
        The number of trainable scalar parameters.
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
