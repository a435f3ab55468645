"""FC-DenseNet ("Tiramisu") used by CoMIR, one network per modality.

The architecture follows the specification (docs, section 2) and the authors'
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

    def __post_init__(self) -> None:
        down = tuple(int(n) for n in self.down_blocks)
        up = tuple(reversed(down)) if self.up_blocks is None else tuple(int(n) for n in self.up_blocks)
        # frozen dataclass: normalised values are written through object.__setattr__
        object.__setattr__(self, "down_blocks", down)
        object.__setattr__(self, "up_blocks", up)
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
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> TiramisuConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error (likely a typo)."""
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown TiramisuConfig keys: {sorted(unknown)}")
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
        self.out_channels = (in_channels if keep_input else 0) + n_layers * growth_rate

    def forward(self, x: Tensor) -> Tensor:
        features = [x]
        for layer in self.layers:
            features.append(layer(features))
        return torch.cat(features if self.keep_input else features[1:], 1)


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


class Tiramisu(nn.Module):
    """FC-DenseNet mapping ``(N, in_channels, H, W)`` to ``(N, out_channels, H, W)``.

    ``H`` and ``W`` must be divisible by ``config.multiple``; pad (never crop)
    before calling at inference.
    """

    def __init__(self, config: TiramisuConfig):
        super().__init__()
        self.config = config
        g, p, ckpt = config.growth_rate, config.dropout, config.checkpoint

        self.first_conv = nn.Conv2d(
            config.in_channels, config.init_filters, kernel_size=3, padding=1, bias=True
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

    def _check_input(self, x: Tensor) -> None:
        cfg = self.config
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
        self._check_input(x)
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


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (BatchNorm running statistics are buffers, not counted)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
