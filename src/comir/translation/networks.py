"""Generators and discriminators of the GAN translation baselines (docs/translation.md, section 2).

pix2pix and CycleGAN (the layouts of the published ``pytorch-CycleGAN-and-pix2pix`` code):

* :class:`ResnetGenerator`: c7s1-64, d128, d256, ``n`` residual blocks with reflection
  padding, u128, u64 (transposed convolutions), c7s1-out, tanh;
* :class:`UnetGenerator`: pix2pix's U-Net (``downsamplings=8`` is "unet_256");
* :class:`PatchDiscriminator`: the 70x70 PatchGAN (``layers=3``).

Convolutions followed by a normalisation have a bias only under instance norm, as
published (batch norm's shift makes one redundant). Instance norm has neither
affine parameters nor running statistics.

DRIT (the published concatenation variant, ``--concat 1``):

* :class:`DritContentEncoder`: one branch per domain, then a residual block shared by
  both domains;
* :class:`DritAttributeEncoder`: one branch per domain giving the mean and log-variance
  of the attribute code;
* :class:`DritGenerator`: a shared residual block, then one decoder per domain that
  concatenates the attribute code to its input at every stage;
* :class:`DritContentDiscriminator` and :class:`MultiScaleDiscriminator`.

Every network takes its input and output channel counts as parameters; DRIT's
per-domain branches take each domain's own count. Weights are initialised by
:func:`init_gan_weights_` (pix2pix, CycleGAN) or :func:`init_drit_weights_` (DRIT),
drawing from torch's global generator: seed it (or fork it) to make a network
reproducible.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

NORMS: tuple[str, ...] = ("instance", "batch", "none")
DRIT_DISCRIMINATOR_NORMS: tuple[str, ...] = ("none", "instance")
DOMAINS: tuple[str, ...] = ("a", "b")


def norm_layer(kind: str, channels: int) -> nn.Module:
    """The normalisation ``kind`` ("instance", "batch" or "none") over ``channels`` feature maps.

    Parameters
    ----------
    kind : str
        ``"instance"`` (no affine parameters, no running statistics), ``"batch"`` (affine, running
        statistics) or ``"none"`` (identity).
    channels : int
        Number of feature maps.

    Returns
    -------
    torch.nn.Module
        The layer.

    Raises
    ------
    ValueError
        If ``kind`` is not one of :data:`NORMS`.
    """
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    if kind == "batch":
        return nn.BatchNorm2d(channels, affine=True, track_running_stats=True)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; expected one of {NORMS}")


def _conv_bias(norm: str) -> bool:
    """Whether a convolution followed by ``norm`` has a bias: only under instance norm, as published."""
    return norm == "instance"


def init_gan_weights_(module: nn.Module, std: float = 0.02) -> nn.Module:
    """pix2pix/CycleGAN initialisation, in place: convolution and linear weights N(0, std), biases 0.

    Batch-norm scales are drawn from N(1, std), their shifts set to 0.

    Parameters
    ----------
    module : torch.nn.Module
        The network; every submodule is initialised, drawing from torch's global generator.
    std : float, optional
        Standard deviation of the normal draws. Default 0.02.

    Returns
    -------
    torch.nn.Module
        ``module`` itself.
    """
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            nn.init.normal_(layer.weight, 0.0, std)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, nn.BatchNorm2d):
            nn.init.normal_(layer.weight, 1.0, std)
            nn.init.zeros_(layer.bias)
    return module


def init_drit_weights_(module: nn.Module, std: float = 0.02) -> nn.Module:
    """DRIT initialisation, in place: convolution weights N(0, std); everything else keeps PyTorch's default.

    As published: convolution biases and the linear layers (attribute heads) keep
    PyTorch's default initialisation.

    Parameters
    ----------
    module : torch.nn.Module
        The network; its (transposed) convolutions are initialised, drawing from torch's global generator.
    std : float, optional
        Standard deviation of the normal draws. Default 0.02.

    Returns
    -------
    torch.nn.Module
        ``module`` itself.
    """
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d | nn.ConvTranspose2d):
            nn.init.normal_(layer.weight, 0.0, std)
    return module


# --------------------------------------------------------------------------- pix2pix / CycleGAN


class ResnetBlock(nn.Module):
    """Residual block: (reflection pad 1, 3x3 conv, norm, ReLU, [dropout 0.5]) then (pad, conv, norm), plus input."""

    def __init__(self, channels: int, norm: str = "instance", dropout: bool = False):
        super().__init__()
        bias = _conv_bias(norm)
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, kernel_size=3, bias=bias),
            norm_layer(norm, channels),
            nn.ReLU(inplace=True),
        ]
        if dropout:
            layers.append(nn.Dropout(0.5))
        layers += [
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, kernel_size=3, bias=bias),
            norm_layer(norm, channels),
        ]
        self.body = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """``x`` plus the block's residual.

        Parameters
        ----------
        x : torch.Tensor
            ``(N, channels, H, W)`` features.

        Returns
        -------
        torch.Tensor
            Same shape as ``x``.
        """
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """CycleGAN's ResNet generator (Johnson et al.): c7s1-f, d2f, d4f, residual blocks, u2f, uf, c7s1-out, tanh.

    Input height and width must be multiples of :attr:`multiple` (two stride-2
    downsamplings); the output has the input's size.
    """

    multiple = 4

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        filters: int = 64,
        residual_blocks: int = 9,
        norm: str = "instance",
        dropout: bool = False,
    ):
        super().__init__()
        bias = _conv_bias(norm)
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(in_channels, filters, kernel_size=7, bias=bias),
            norm_layer(norm, filters),
            nn.ReLU(inplace=True),
        ]
        channels = filters
        for _ in range(2):
            layers += [
                nn.Conv2d(channels, 2 * channels, kernel_size=3, stride=2, padding=1, bias=bias),
                norm_layer(norm, 2 * channels),
                nn.ReLU(inplace=True),
            ]
            channels *= 2
        layers += [ResnetBlock(channels, norm, dropout) for _ in range(residual_blocks)]
        for _ in range(2):
            layers += [
                nn.ConvTranspose2d(
                    channels, channels // 2, kernel_size=3, stride=2, padding=1, output_padding=1, bias=bias
                ),
                norm_layer(norm, channels // 2),
                nn.ReLU(inplace=True),
            ]
            channels //= 2
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(channels, out_channels, kernel_size=7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """The translation of ``x`` (in [-1, 1]), same height and width.

        Parameters
        ----------
        x : torch.Tensor
            ``(N, in_channels, H, W)`` images in [-1, 1]; ``H`` and ``W`` multiples of :attr:`multiple`.

        Returns
        -------
        torch.Tensor
            ``(N, out_channels, H, W)`` in [-1, 1].
        """
        return self.model(x)


class _UnetLevel(nn.Module):
    """One U-Net level: 4x4 stride-2 conv down, the inner levels, 4x4 stride-2 transposed conv up.

    Every level but the outermost returns its input concatenated with its output (the skip connection).
    ``in_channels`` (the image's channels) is given for the outermost level only, and makes it the outermost.
    """

    def __init__(
        self,
        outer_channels: int,
        inner_channels: int,
        inner: _UnetLevel | None,
        norm: str,
        dropout: bool = False,
        in_channels: int | None = None,
    ):
        super().__init__()
        bias = _conv_bias(norm)
        self.outermost = in_channels is not None
        down_conv = nn.Conv2d(
            in_channels if self.outermost else outer_channels,
            inner_channels,
            kernel_size=4,
            stride=2,
            padding=1,
            bias=bias,
        )
        # Not in place: the input is also the skip connection.
        down_relu = nn.LeakyReLU(0.2)
        up_in = inner_channels if inner is None else 2 * inner_channels
        if self.outermost:
            down = [down_conv]
            up = [
                nn.ReLU(),
                nn.ConvTranspose2d(up_in, outer_channels, kernel_size=4, stride=2, padding=1),
                nn.Tanh(),
            ]
        else:
            down = [down_relu, down_conv] if inner is None else [down_relu, down_conv, norm_layer(norm, inner_channels)]
            up = [
                nn.ReLU(),
                nn.ConvTranspose2d(up_in, outer_channels, kernel_size=4, stride=2, padding=1, bias=bias),
                norm_layer(norm, outer_channels),
            ]
            if dropout:
                up.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*down, *([] if inner is None else [inner]), *up)

    def forward(self, x: Tensor) -> Tensor:
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], dim=1)


class UnetGenerator(nn.Module):
    """pix2pix's U-Net: ``downsamplings`` 4x4 stride-2 convolutions down, as many up, skip connections.

    Filters per level, from the outside in: f, 2f, 4f, then 8f for the remaining
    levels (``downsamplings - 3`` of them; the innermost has no normalisation).
    ``dropout`` (0.5) acts in the up path of the 8f levels except the innermost,
    as published. ``downsamplings=8`` is pix2pix's "unet_256": input sides must
    be multiples of :attr:`multiple` = ``2 ** downsamplings``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        downsamplings: int = 8,
        filters: int = 64,
        norm: str = "instance",
        dropout: bool = False,
    ):
        super().__init__()
        if downsamplings < 5:
            raise ValueError(f"UnetGenerator needs at least 5 downsamplings, got {downsamplings}")
        self.multiple = 2**downsamplings
        level = _UnetLevel(8 * filters, 8 * filters, None, norm)
        for _ in range(downsamplings - 5):
            level = _UnetLevel(8 * filters, 8 * filters, level, norm, dropout)
        for factor in (4, 2, 1):
            level = _UnetLevel(factor * filters, 2 * factor * filters, level, norm)
        self.model = _UnetLevel(out_channels, filters, level, norm, in_channels=in_channels)

    def forward(self, x: Tensor) -> Tensor:
        """The translation of ``x`` (in [-1, 1]), same height and width.

        Parameters
        ----------
        x : torch.Tensor
            ``(N, in_channels, H, W)`` images in [-1, 1]; ``H`` and ``W`` multiples of :attr:`multiple`.

        Returns
        -------
        torch.Tensor
            ``(N, out_channels, H, W)`` in [-1, 1].
        """
        return self.model(x)


class PatchDiscriminator(nn.Module):
    """PatchGAN: 4x4 convolutions, ``layers`` of stride 2 then one of stride 1, and a 1-channel 4x4 output conv.

    Filters f, 2f, 4f, ... capped at 8f; the first layer has no normalisation,
    LeakyReLU 0.2 throughout. ``layers=3`` is the 70x70 PatchGAN. pix2pix's
    conditional discriminator takes input and output image concatenated
    (``in_channels`` = their channel sum).
    """

    def __init__(self, in_channels: int, filters: int = 64, layers: int = 3, norm: str = "instance"):
        super().__init__()
        bias = _conv_bias(norm)
        sequence: list[nn.Module] = [
            nn.Conv2d(in_channels, filters, kernel_size=4, stride=2, padding=1),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        multiplier = 1
        for n in range(1, layers + 1):
            previous, multiplier = multiplier, min(2**n, 8)
            stride = 2 if n < layers else 1
            sequence += [
                nn.Conv2d(filters * previous, filters * multiplier, kernel_size=4, stride=stride, padding=1, bias=bias),
                norm_layer(norm, filters * multiplier),
                nn.LeakyReLU(0.2, inplace=True),
            ]
        sequence.append(nn.Conv2d(filters * multiplier, 1, kernel_size=4, stride=1, padding=1))
        self.model = nn.Sequential(*sequence)

    def forward(self, x: Tensor) -> Tensor:
        """One logit per (overlapping) patch of ``x``: ``(N, 1, h, w)``.

        Parameters
        ----------
        x : torch.Tensor
            ``(N, in_channels, H, W)`` images (for pix2pix, source and target concatenated).

        Returns
        -------
        torch.Tensor
            ``(N, 1, h, w)`` logits.
        """
        return self.model(x)


# --------------------------------------------------------------------------- DRIT


def _drit_leaky_conv(
    in_channels: int, out_channels: int, kernel_size: int, stride: int, padding: int, norm: str = "none"
) -> nn.Sequential:
    """DRIT's reflection pad -> conv (bias) -> [instance norm] -> LeakyReLU with PyTorch's default slope 0.01."""
    layers: list[nn.Module] = [
        nn.ReflectionPad2d(padding),
        nn.Conv2d(in_channels, out_channels, kernel_size=kernel_size, stride=stride),
    ]
    if norm == "instance":
        layers.append(nn.InstanceNorm2d(out_channels))
    layers.append(nn.LeakyReLU(inplace=True))
    return nn.Sequential(*layers)


def _drit_relu_instance_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    """DRIT's reflection pad 1 -> 3x3 stride-2 conv (bias) -> instance norm -> ReLU."""
    return nn.Sequential(
        nn.ReflectionPad2d(1),
        nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=2),
        nn.InstanceNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class _DritResBlock(nn.Module):
    """DRIT's residual block: (pad, 3x3 conv with bias, instance norm, ReLU, pad, 3x3 conv, instance norm) + input."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, kernel_size=3),
            nn.InstanceNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, kernel_size=3),
            nn.InstanceNorm2d(channels),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class _ChannelAffineLayerNorm(nn.Module):
    """DRIT's layer norm: normalises over (C, H, W) per sample, then a per-channel scale (ones) and shift (zeros)."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(channels, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape[1:]
        return F.layer_norm(x, shape, self.weight.expand(shape), self.bias.expand(shape), self.eps)


def _drit_up(in_channels: int, out_channels: int) -> nn.Sequential:
    """DRIT's 3x3 stride-2 transposed conv (bias) -> layer norm -> ReLU: doubles height and width."""
    return nn.Sequential(
        nn.ConvTranspose2d(in_channels, out_channels, kernel_size=3, stride=2, padding=1, output_padding=1),
        _ChannelAffineLayerNorm(out_channels),
        nn.ReLU(inplace=True),
    )


class DritContentEncoder(nn.Module):
    """DRIT's content encoder: a branch per domain, then one residual block shared by both domains.

    Branch: 7x7 conv (f) with LeakyReLU, two 3x3 stride-2 convs with instance norm
    and ReLU (2f, 4f), three residual blocks. The content code has
    :attr:`out_channels` = 4f channels and a quarter of the input's height and width.

    The published encoder ends with a Gaussian noise layer (N(0, 1) added in
    training only); here the noise is added by :class:`comir.translation.drit.DRIT`,
    which owns the seeded random generator, so this module is deterministic.
    """

    multiple = 4

    def __init__(self, channels_a: int, channels_b: int, filters: int = 64):
        super().__init__()
        self.out_channels = 4 * filters
        self.branches = nn.ModuleDict(
            {domain: self._branch(channels, filters) for domain, channels in _pairs(channels_a, channels_b)}
        )
        self.shared = _DritResBlock(self.out_channels)

    @staticmethod
    def _branch(in_channels: int, filters: int) -> nn.Sequential:
        return nn.Sequential(
            _drit_leaky_conv(in_channels, filters, kernel_size=7, stride=1, padding=3),
            _drit_relu_instance_conv(filters, 2 * filters),
            _drit_relu_instance_conv(2 * filters, 4 * filters),
            *(_DritResBlock(4 * filters) for _ in range(3)),
        )

    def forward(self, x: Tensor, domain: str) -> Tensor:
        """The content code of images ``x`` of ``domain`` (``"a"`` or ``"b"``).

        Parameters
        ----------
        x : torch.Tensor
            ``(N, C, H, W)`` images of ``domain`` in [-1, 1]; ``H`` and ``W`` multiples of :attr:`multiple`.
        domain : str
            ``"a"`` or ``"b"``: which branch encodes them.

        Returns
        -------
        torch.Tensor
            ``(N, out_channels, H / 4, W / 4)`` content code.
        """
        return self.shared(self.branches[domain](x))


class _DritAttributeBlock(nn.Module):
    """DRIT's attribute-encoder block (norm-free): LReLU, 3x3 conv, LReLU, 3x3 conv, 2x2 mean pool, plus shortcut.

    Shortcut: 2x2 mean pool then 1x1 conv. All convolutions reflection-padded and with bias.
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.LeakyReLU(0.2),
            nn.ReflectionPad2d(1),
            nn.Conv2d(in_channels, in_channels, kernel_size=3),
            nn.LeakyReLU(0.2),
            nn.ReflectionPad2d(1),
            nn.Conv2d(in_channels, out_channels, kernel_size=3),
            nn.AvgPool2d(2),
        )
        self.shortcut = nn.Sequential(nn.AvgPool2d(2), nn.Conv2d(in_channels, out_channels, kernel_size=1))

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x) + self.shortcut(x)


class _DritAttributeBranch(nn.Module):
    """One domain's attribute encoder: features to a vector, then linear heads for mean and log-variance."""

    def __init__(self, in_channels: int, attribute_dim: int, filters: int):
        super().__init__()
        self.features = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(in_channels, filters, kernel_size=4, stride=2),
            _DritAttributeBlock(filters, 2 * filters),
            _DritAttributeBlock(2 * filters, 3 * filters),
            _DritAttributeBlock(3 * filters, 4 * filters),
            nn.LeakyReLU(0.2),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.mean = nn.Linear(4 * filters, attribute_dim)
        self.log_variance = nn.Linear(4 * filters, attribute_dim)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        features = self.features(x)
        return self.mean(features), self.log_variance(features)


class DritAttributeEncoder(nn.Module):
    """DRIT's attribute encoder (concatenation variant): per domain, the mean and log-variance of the code.

    Branch: 4x4 stride-2 conv (f), three residual mean-pool blocks (2f, 3f, 4f) without
    normalisation, LeakyReLU 0.2, global average pool, two linear heads to
    ``attribute_dim``. Global pooling makes it accept any input size of at least 16 px.
    """

    def __init__(self, channels_a: int, channels_b: int, attribute_dim: int = 8, filters: int = 64):
        super().__init__()
        self.branches = nn.ModuleDict(
            {
                domain: _DritAttributeBranch(channels, attribute_dim, filters)
                for domain, channels in _pairs(channels_a, channels_b)
            }
        )

    def forward(self, x: Tensor, domain: str) -> tuple[Tensor, Tensor]:
        """``(mean, log_variance)``, each ``(N, attribute_dim)``, of images ``x`` of ``domain``.

        Parameters
        ----------
        x : torch.Tensor
            ``(N, C, H, W)`` images of ``domain`` in [-1, 1], sides at least 16 px.
        domain : str
            ``"a"`` or ``"b"``: which branch encodes them.

        Returns
        -------
        mean : torch.Tensor
            ``(N, attribute_dim)`` means of the attribute code.
        log_variance : torch.Tensor
            ``(N, attribute_dim)`` log-variances.
        """
        return self.branches[domain](x)


def _tile(code: Tensor, like: Tensor) -> Tensor:
    """The ``(N, D)`` code broadcast to ``(N, D, H, W)`` of the feature map ``like``."""
    return code[:, :, None, None].expand(-1, -1, like.shape[2], like.shape[3]).to(like.dtype)


class _DritDecoder(nn.Module):
    """One domain's DRIT decoder: the attribute code is concatenated to the features before every stage."""

    def __init__(self, out_channels: int, content_channels: int, attribute_dim: int):
        super().__init__()
        channels = content_channels + attribute_dim
        self.residual = nn.Sequential(*(_DritResBlock(channels) for _ in range(3)))
        channels += attribute_dim
        self.up1 = _drit_up(channels, channels // 2)
        channels = channels // 2 + attribute_dim
        self.up2 = _drit_up(channels, channels // 2)
        channels = channels // 2 + attribute_dim
        self.out = nn.ConvTranspose2d(channels, out_channels, kernel_size=1)

    def forward(self, features: Tensor, attribute: Tensor) -> Tensor:
        x = self.residual(torch.cat([features, _tile(attribute, features)], dim=1))
        x = self.up1(torch.cat([x, _tile(attribute, x)], dim=1))
        x = self.up2(torch.cat([x, _tile(attribute, x)], dim=1))
        return torch.tanh(self.out(torch.cat([x, _tile(attribute, x)], dim=1)))


class DritGenerator(nn.Module):
    """DRIT's generator (concatenation variant): a shared residual block, then one decoder per domain.

    Decoder of a domain: code concatenated (c + d channels), three residual blocks,
    code concatenated, 3x3 stride-2 transposed conv with layer norm and ReLU to half
    the channels, code concatenated, the same again, code concatenated, 1x1
    transposed conv to the domain's channels, tanh. Output: 4x the content's height and width.
    """

    def __init__(self, channels_a: int, channels_b: int, content_channels: int = 256, attribute_dim: int = 8):
        super().__init__()
        self.shared = _DritResBlock(content_channels)
        self.decoders = nn.ModuleDict(
            {
                domain: _DritDecoder(channels, content_channels, attribute_dim)
                for domain, channels in _pairs(channels_a, channels_b)
            }
        )

    def forward(self, content: Tensor, attribute: Tensor, domain: str) -> Tensor:
        """The image of ``domain`` (in [-1, 1]) from a content code and an ``(N, attribute_dim)`` attribute code.

        Parameters
        ----------
        content : torch.Tensor
            ``(N, content_channels, h, w)`` content code.
        attribute : torch.Tensor
            ``(N, attribute_dim)`` attribute code.
        domain : str
            ``"a"`` or ``"b"``: which decoder renders the image.

        Returns
        -------
        torch.Tensor
            ``(N, C, 4h, 4w)`` image of ``domain`` in [-1, 1].
        """
        return self.decoders[domain](self.shared(content), attribute)


class DritContentDiscriminator(nn.Module):
    """DRIT's content discriminator: which domain a content code came from.

    ``strided_layers`` 7x7 stride-2 convs (published: 3), one 4x4 conv without
    padding, a 1x1 conv to one logit per position; reflection padding 1 and
    LeakyReLU 0.01. The published code asks for instance norm in these layers but
    never applies it (a string comparison that is always false); the network here
    is the one that ran, without normalisation. With 3 strided layers the content
    code must be at least 53 px (images of at least 212 px; the published crop is 216).
    """

    def __init__(self, channels: int = 256, strided_layers: int = 3):
        super().__init__()
        layers = [
            _drit_leaky_conv(channels, channels, kernel_size=7, stride=2, padding=1) for _ in range(strided_layers)
        ]
        layers += [
            _drit_leaky_conv(channels, channels, kernel_size=4, stride=1, padding=0),
            nn.Conv2d(channels, 1, kernel_size=1),
        ]
        self.model = nn.Sequential(*layers)

    def forward(self, content: Tensor) -> Tensor:
        """Logits (positive: domain B) per position of the content code: ``(N, 1, h, w)``.

        Parameters
        ----------
        content : torch.Tensor
            ``(N, channels, H, W)`` content codes; with 3 strided layers at least 53 px per side.

        Returns
        -------
        torch.Tensor
            ``(N, 1, h, w)`` logits.
        """
        return self.model(content)


class MultiScaleDiscriminator(nn.Module):
    """DRIT's image discriminator: the same architecture (separate weights) applied at ``scales`` resolutions.

    Per scale: ``layers`` 4x4 stride-2 convs (f, 2f, 4f, ...; reflection pad 1,
    bias, LeakyReLU 0.01, ``norm`` "none" as published and as the CoMIR paper used,
    or "instance"), then a 1x1 conv to one logit per position. Between scales the
    image is downsampled by a 3x3 stride-2 average pool (padding excluded).
    Returns one logit map per scale, finest first.
    """

    def __init__(self, in_channels: int, filters: int = 64, layers: int = 4, scales: int = 3, norm: str = "none"):
        super().__init__()
        if norm not in DRIT_DISCRIMINATOR_NORMS:
            raise ValueError(f"unknown norm {norm!r}; expected one of {DRIT_DISCRIMINATOR_NORMS}")
        self.downsample = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)
        self.scales = nn.ModuleList(self._scale(in_channels, filters, layers, norm) for _ in range(scales))

    @staticmethod
    def _scale(in_channels: int, filters: int, layers: int, norm: str) -> nn.Sequential:
        sequence = [_drit_leaky_conv(in_channels, filters, kernel_size=4, stride=2, padding=1, norm=norm)]
        channels = filters
        for _ in range(1, layers):
            sequence.append(_drit_leaky_conv(channels, 2 * channels, kernel_size=4, stride=2, padding=1, norm=norm))
            channels *= 2
        sequence.append(nn.Conv2d(channels, 1, kernel_size=1))
        return nn.Sequential(*sequence)

    def forward(self, x: Tensor) -> list[Tensor]:
        """One logit map per scale, finest first.

        Parameters
        ----------
        x : torch.Tensor
            ``(N, in_channels, H, W)`` images.

        Returns
        -------
        list[torch.Tensor]
            ``scales`` logit maps ``(N, 1, h, w)``, finest first.
        """
        outputs = []
        for index, scale in enumerate(self.scales):
            if index:
                x = self.downsample(x)
            outputs.append(scale(x))
        return outputs


def _pairs(channels_a: int, channels_b: int) -> tuple[tuple[str, int], ...]:
    """``(("a", channels_a), ("b", channels_b))``: the domains with their channel counts."""
    return tuple(zip(DOMAINS, (channels_a, channels_b)))
