"""Hyper-parameters of the translation models: frozen dataclasses, every field checked (docs/translation.md, section 4).

:class:`Pix2PixConfig`, :class:`CycleGANConfig` and :class:`DRITConfig` hold one
method's hyper-parameters each; their defaults are the CoMIR paper's settings.
Each field has a rule (an integer or real range, a choice, a flag) that checks
it on construction and names it in the ValueError; ``from_dict`` rejects
unknown keys (likely typos).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

from comir.io import reject_unknown_keys
from comir.translation import losses
from comir.translation.networks import DRIT_DISCRIMINATOR_NORMS, NORMS

DIRECTIONS: tuple[str, ...] = ("a2b", "b2a")
GENERATORS: tuple[str, ...] = ("resnet", "unet")

_Rule = Callable[[str, Any], Any]


def _integer(minimum: int) -> _Rule:
    def check(label: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
            raise ValueError(f"{label} must be an integer >= {minimum}, got {value!r}")
        return int(value)

    return check


def _real(low: float, high: float = math.inf, low_open: bool = False, high_open: bool = False) -> _Rule:
    interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open or math.isinf(high) else ']'}"

    def check(label: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            raise ValueError(f"{label} must be a finite number in {interval}, got {value!r}")
        if value < low or (low_open and value == low) or value > high or (high_open and value == high):
            raise ValueError(f"{label} must be in {interval}, got {value!r}")
        return float(value)

    return check


def _one_of(choices: Sequence[str]) -> _Rule:
    def check(label: str, value: Any) -> str:
        if value not in choices:
            raise ValueError(f"{label} must be one of {tuple(choices)}, got {value!r}")
        return value

    return check


def _flag(label: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{label} must be true or false, got {value!r}")
    return value


_POSITIVE = _real(0.0, low_open=True)
_NON_NEGATIVE = _real(0.0)
_BETA = _real(0.0, 1.0, high_open=True)


class _Config:
    """Validation, ``to_dict`` and ``from_dict`` shared by the hyper-parameter dataclasses.

    ``_RULES`` maps every field to its check; each check names the field in its
    ValueError and returns the value normalised (integers given for floats become floats).
    """

    _RULES: Mapping[str, _Rule] = {}

    def __post_init__(self) -> None:
        for field in fields(self):
            label = f"{type(self).__name__}.{field.name}"
            # frozen dataclass: normalised values are written through object.__setattr__
            object.__setattr__(self, field.name, self._RULES[field.name](label, getattr(self, field.name)))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML-safe dict of the hyper-parameters."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Any:
        """The config of ``values`` (missing keys take their defaults); unknown keys are an error (likely a typo)."""
        reject_unknown_keys(values, sorted(field.name for field in fields(cls)), f"{cls.__name__} key(s)")
        return cls(**dict(values))


@dataclass(frozen=True)
class _GanConfig(_Config):
    """Hyper-parameters shared by pix2pix and CycleGAN; defaults: the CoMIR paper's settings.

    ``generator``: ``"resnet"`` (:class:`~comir.translation.networks.ResnetGenerator` with
    ``residual_blocks``) or ``"unet"`` (:class:`~comir.translation.networks.UnetGenerator`
    with ``unet_downsamplings``; 8 is pix2pix's "unet_256"). ``filters`` and
    ``discriminator_filters`` are the first layers' widths (ngf, ndf);
    ``discriminator_layers`` = 3 is the 70x70 PatchGAN. ``norm`` applies to the
    generator and the discriminator. ``dropout``: 0.5 in the generator's residual
    blocks (U-Net: inner up path). Adam (``learning_rate``, ``beta1``, ``beta2``);
    ``epochs_constant`` epochs at that rate, then ``epochs_decay`` epochs of linear
    decay (:func:`linear_decay_factor`). Weights start from N(0, ``init_std``).
    """

    generator: str = "resnet"
    residual_blocks: int = 9
    unet_downsamplings: int = 8
    filters: int = 64
    discriminator_filters: int = 64
    discriminator_layers: int = 3
    norm: str = "instance"
    dropout: bool = False
    gan_mode: str = "lsgan"
    learning_rate: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    epochs_constant: int = 100
    epochs_decay: int = 100
    init_std: float = 0.02

    _RULES = {
        "generator": _one_of(GENERATORS),
        "residual_blocks": _integer(0),
        "unet_downsamplings": _integer(5),
        "filters": _integer(1),
        "discriminator_filters": _integer(1),
        "discriminator_layers": _integer(1),
        "norm": _one_of(NORMS),
        "dropout": _flag,
        "gan_mode": _one_of(losses.GAN_MODES),
        "learning_rate": _POSITIVE,
        "beta1": _BETA,
        "beta2": _BETA,
        "epochs_constant": _integer(0),
        "epochs_decay": _integer(0),
        "init_std": _POSITIVE,
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.epochs_constant + self.epochs_decay < 1:
            raise ValueError(f"{type(self).__name__}.epochs_constant + epochs_decay must be >= 1, got 0")

    @property
    def epochs(self) -> int:
        """Epochs of the whole schedule."""
        return self.epochs_constant + self.epochs_decay


@dataclass(frozen=True)
class Pix2PixConfig(_GanConfig):
    """pix2pix's hyper-parameters (see :class:`_GanConfig` for the shared ones).

    ``direction``: the one direction the model learns, ``"a2b"`` or ``"b2a"`` (the
    published ``--direction``; train two models for both). ``lambda_l1``: weight of the
    L1 term (100, pix2pix paper).
    """

    direction: str = "a2b"
    lambda_l1: float = 100.0

    _RULES = {**_GanConfig._RULES, "direction": _one_of(DIRECTIONS), "lambda_l1": _NON_NEGATIVE}


@dataclass(frozen=True)
class CycleGANConfig(_GanConfig):
    """CycleGAN's hyper-parameters (see :class:`_GanConfig` for the shared ones).

    ``lambda_cycle``: weight of each domain's cycle term (10, the published lambda_A and
    lambda_B). ``lambda_identity``: the identity terms weigh ``lambda_identity *
    lambda_cycle`` (0.5, published); they are skipped when the domains have different
    channel counts (:func:`comir.translation.losses.identity_loss`). ``pool_size``: images
    in each history pool for the discriminators (50; 0 disables the pools).
    """

    lambda_cycle: float = 10.0
    lambda_identity: float = 0.5
    pool_size: int = 50

    _RULES = {
        **_GanConfig._RULES,
        "lambda_cycle": _NON_NEGATIVE,
        "lambda_identity": _NON_NEGATIVE,
        "pool_size": _integer(0),
    }


@dataclass(frozen=True)
class DRITConfig(_Config):
    """DRIT's hyper-parameters; defaults: the published code's, with the CoMIR paper's choices.

    Architecture: ``filters`` (content encoder; content codes have ``4 * filters``
    channels), ``attribute_dim`` and ``attribute_filters`` (attribute encoder),
    image discriminators with ``discriminator_filters``, ``discriminator_layers``,
    ``discriminator_scales`` and ``discriminator_norm`` (CoMIR: 3 scales, no norm),
    content discriminator with ``content_discriminator_layers`` 7x7 stride-2 layers.
    ``content_noise_std``: N(0, std^2) noise added to content codes in training.
    ``mode_seeking``: DRIT++'s mode-seeking term (on by default in the published code).

    Training: Adam (``learning_rate``, ``beta1``, ``beta2``, ``weight_decay``) for every
    network except the content discriminator (``content_discriminator_learning_rate``,
    published: ``learning_rate / 2.5``), whose gradient norm is clipped to
    ``content_discriminator_clip``. ``content_discriminator_iterations`` (d_iter):
    see :meth:`DRIT.updates_all_networks`. ``epochs`` with linear decay after
    ``decay_start_epoch`` (:func:`drit_decay_factor`). Loss weights ``lambda_*``: see
    docs/translation.md, section 3.3.
    """

    filters: int = 64
    attribute_dim: int = 8
    attribute_filters: int = 64
    discriminator_filters: int = 64
    discriminator_layers: int = 4
    discriminator_scales: int = 3
    discriminator_norm: str = "none"
    content_discriminator_layers: int = 3
    content_discriminator_iterations: int = 3
    content_discriminator_clip: float = 5.0
    content_noise_std: float = 1.0
    mode_seeking: bool = True
    learning_rate: float = 1e-4
    content_discriminator_learning_rate: float = 4e-5
    beta1: float = 0.5
    beta2: float = 0.999
    weight_decay: float = 1e-4
    epochs: int = 1200
    decay_start_epoch: int = 600
    lambda_adversarial: float = 1.0
    lambda_content_adversarial: float = 1.0
    lambda_cross_cycle: float = 10.0
    lambda_self_reconstruction: float = 10.0
    lambda_kl_attribute: float = 0.01
    lambda_kl_content: float = 0.01
    lambda_latent_regression: float = 10.0
    lambda_mode_seeking: float = 1.0
    init_std: float = 0.02

    _RULES = {
        "filters": _integer(1),
        "attribute_dim": _integer(1),
        "attribute_filters": _integer(1),
        "discriminator_filters": _integer(1),
        "discriminator_layers": _integer(1),
        "discriminator_scales": _integer(1),
        "discriminator_norm": _one_of(DRIT_DISCRIMINATOR_NORMS),
        "content_discriminator_layers": _integer(0),
        "content_discriminator_iterations": _integer(1),
        "content_discriminator_clip": _POSITIVE,
        "content_noise_std": _NON_NEGATIVE,
        "mode_seeking": _flag,
        "learning_rate": _POSITIVE,
        "content_discriminator_learning_rate": _POSITIVE,
        "beta1": _BETA,
        "beta2": _BETA,
        "weight_decay": _NON_NEGATIVE,
        "epochs": _integer(1),
        "decay_start_epoch": _integer(0),
        "lambda_adversarial": _NON_NEGATIVE,
        "lambda_content_adversarial": _NON_NEGATIVE,
        "lambda_cross_cycle": _NON_NEGATIVE,
        "lambda_self_reconstruction": _NON_NEGATIVE,
        "lambda_kl_attribute": _NON_NEGATIVE,
        "lambda_kl_content": _NON_NEGATIVE,
        "lambda_latent_regression": _NON_NEGATIVE,
        "lambda_mode_seeking": _NON_NEGATIVE,
        "init_std": _POSITIVE,
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.decay_start_epoch > self.epochs:
            raise ValueError(
                f"DRITConfig.decay_start_epoch must be <= epochs ({self.epochs}), got {self.decay_start_epoch}"
            )
