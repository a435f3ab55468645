"""Training and inference of the GAN translation baselines pix2pix, CycleGAN and DRIT (docs/translation.md).

One class per method (:class:`Pix2Pix`, :class:`CycleGAN`, :class:`DRIT`), each
with a frozen dataclass of hyper-parameters whose defaults are the CoMIR
paper's settings (docs/translation.md, section 4).

**Value range.** Images in and out of the public methods (``training_step``,
``generator_losses``, ``translate``) are the pipeline's preprocessed float32
arrays or tensors, ``(N, C, H, W)`` (``translate`` also takes ``(C, H, W)``),
roughly in [0, 1]. They are clipped to [0, 1] and mapped to the networks'
range by ``2 x - 1``; outputs (tanh, in [-1, 1]) are mapped back by
``(y + 1) / 2``. Clipping matters for training: a generator ending in tanh
cannot produce values outside [-1, 1], so unclipped real images would let a
discriminator spot them by their range alone.

**Batches.** ``training_step(batch_a, batch_b)`` takes a batch of each domain
with the same number of images; item ``i`` of both is an aligned pair.
pix2pix needs the pairs (its L1 term compares the translation with the
partner). CycleGAN and DRIT are unpaired methods and never compare an image
with its partner; they receive the same aligned batches so that all three
methods train on the same data. Heights and widths must be multiples of the
model's :attr:`~_TranslationModel.multiple`.

**Mixed precision.** ``mixed_precision=True`` runs the networks under
:func:`comir.precision.autocast` on ``device``, exactly as given (the
configuration's CUDA-only rule, :func:`comir.precision.mixed_precision_enabled`,
is the caller's to apply); the losses compute in float32
(:mod:`comir.translation.losses`); a GradScaler scales the gradients only where
:func:`comir.precision.needs_grad_scaler` says so (float16).

**Seeding.** ``seed`` determines every initial weight (drawn under a fork of
torch's global generator, which is left as it was) and every random draw of
training: CycleGAN's image pools and DRIT's noise, attribute samples and random
codes use generators of their own, seeded from ``seed`` and saved by
``state_dict``. Dropout (off by default) draws from torch's global generator.
"""

from __future__ import annotations

import abc
import contextlib
import itertools
import logging
import math
import numbers
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from comir import precision
from comir.translation import losses
from comir.translation.networks import (
    DRIT_DISCRIMINATOR_NORMS,
    NORMS,
    DritAttributeEncoder,
    DritContentDiscriminator,
    DritContentEncoder,
    DritGenerator,
    MultiScaleDiscriminator,
    PatchDiscriminator,
    ResnetGenerator,
    UnetGenerator,
    init_drit_weights_,
    init_gan_weights_,
)

log = logging.getLogger(__name__)

DIRECTIONS: tuple[str, ...] = ("a2b", "b2a")
GENERATORS: tuple[str, ...] = ("resnet", "unet")

Images = Tensor | np.ndarray

# Streams of random numbers derived from a model's seed ([seed, stream], as comir.train does).
_WEIGHTS_STREAM, _POOL_A_STREAM, _POOL_B_STREAM, _SAMPLING_STREAM, _EVALUATION_STREAM = range(5)


def _stream_seed(seed: int, stream: int) -> int:
    """A 63-bit seed for one stream of random numbers of a model seeded with ``seed``."""
    return int(np.random.SeedSequence([seed, stream]).generate_state(1, np.uint64)[0] >> np.uint64(1))


def linear_decay_factor(epoch: int, constant_epochs: int, decay_epochs: int) -> float:
    """pix2pix/CycleGAN learning-rate factor of the 0-based ``epoch``: constant, then linear decay.

    ``1 - max(0, epoch + 1 - constant_epochs) / (decay_epochs + 1)``, the published
    rule: 1 for epochs ``0 .. constant_epochs - 1``, then ``decay_epochs / (decay_epochs + 1)``,
    ..., ``1 / (decay_epochs + 1)`` in the last epoch; it reaches 0 at epoch
    ``constant_epochs + decay_epochs``, the first after training.
    """
    return 1.0 - max(0, epoch + 1 - constant_epochs) / (decay_epochs + 1)


def drit_decay_factor(epoch: int, epochs: int, decay_start_epoch: int) -> float:
    """DRIT's learning-rate factor of the 0-based ``epoch``: ``1 - max(0, epoch - start) / (epochs - start + 1)``.

    The published rule: 1 up to and including epoch ``decay_start_epoch``, then a
    linear decay that would reach 0 at epoch ``epochs + 1`` (the last epoch,
    ``epochs - 1``, runs at ``2 / (epochs - decay_start_epoch + 1)``).
    """
    return 1.0 - max(0, epoch - decay_start_epoch) / (epochs - decay_start_epoch + 1)


# --------------------------------------------------------------------------- hyper-parameters

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
        known = {field.name for field in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} keys: {unknown}; known keys: {sorted(known)}")
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


# --------------------------------------------------------------------------- shared machinery


@contextlib.contextmanager
def _seeded_global_rng(seed: int) -> Iterator[None]:
    """Torch's global CPU generator seeded with ``seed`` inside, restored to its previous state after."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


@contextlib.contextmanager
def _frozen(*modules: nn.Module) -> Iterator[None]:
    """No gradients for the parameters of ``modules`` inside (a generator update through fixed discriminators)."""
    parameters = [p for module in modules for p in module.parameters()]
    states = [p.requires_grad for p in parameters]
    for parameter in parameters:
        parameter.requires_grad_(False)
    try:
        yield
    finally:
        for parameter, state in zip(parameters, states):
            parameter.requires_grad_(state)


def _direction_domains(direction: str) -> tuple[str, str]:
    """``(source, target)`` domains of ``"a2b"`` or ``"b2a"``."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    return direction[0], direction[2]


def _to_network_range(images: Tensor) -> Tensor:
    """[0, 1] images (clipped) to the networks' [-1, 1]."""
    return images.clamp(0.0, 1.0) * 2.0 - 1.0


def _pad_to_multiple(images: Tensor, multiple: int) -> Tensor:
    """``images`` padded at the bottom and right to height and width multiples of ``multiple``."""
    pad_h, pad_w = (-images.shape[-2]) % multiple, (-images.shape[-1]) % multiple
    if not (pad_h or pad_w):
        return images
    # Reflection keeps the border's texture; it needs padding smaller than the side, else replicate.
    mode = "reflect" if pad_h < images.shape[-2] and pad_w < images.shape[-1] else "replicate"
    return F.pad(images, (0, pad_w, 0, pad_h), mode=mode)


def _sum_of(terms: Iterable[Tensor]) -> Tensor:
    """The sum of loss terms (at least one)."""
    iterator = iter(terms)
    total = next(iterator)
    for term in iterator:
        total = total + term
    return total


def _floats(terms: Mapping[str, Tensor]) -> dict[str, float]:
    return {name: float(value.detach()) for name, value in terms.items()}


def _adam(parameters: Iterable[nn.Parameter], lr: float, config: Any, weight_decay: float = 0.0) -> torch.optim.Adam:
    return torch.optim.Adam(parameters, lr=lr, betas=(config.beta1, config.beta2), weight_decay=weight_decay)


class _TranslationModel(abc.ABC):
    """What the three methods share: devices, precision, value ranges, schedule, inference, state.

    Subclasses build ``networks`` (name -> module) and ``optimizers`` (name ->
    Adam) and implement the method's steps.
    """

    config_class: type[_Config]

    def __init__(
        self,
        channels_a: int,
        channels_b: int,
        config: Any = None,
        *,
        device: torch.device | str = "cpu",
        mixed_precision: bool = False,
        seed: int = 0,
    ):
        self.channels = {
            "a": _integer(1)("channels_a", channels_a),
            "b": _integer(1)("channels_b", channels_b),
        }
        if config is None:
            config = self.config_class()
        elif isinstance(config, Mapping):
            config = self.config_class.from_dict(config)
        elif not isinstance(config, self.config_class):
            raise TypeError(f"config must be a {self.config_class.__name__} or a mapping, got {type(config).__name__}")
        self.config = config
        self.device = torch.device(device)
        self.mixed_precision = bool(mixed_precision)
        self.seed = int(seed)
        with _seeded_global_rng(_stream_seed(self.seed, _WEIGHTS_STREAM)):
            networks = self._build_networks()
        self.networks: dict[str, nn.Module] = {name: net.to(self.device) for name, net in networks.items()}
        self.optimizers: dict[str, torch.optim.Optimizer] = self._build_optimizers()
        for optimizer in self.optimizers.values():
            for group in optimizer.param_groups:
                group["initial_lr"] = group["lr"]
        self.scaler = torch.amp.GradScaler(
            self.device.type, enabled=precision.needs_grad_scaler(self.device, self.mixed_precision)
        )
        self.epoch = 0
        self.set_epoch(0)
        self._build_random_state()

    # -- what each method implements
    @abc.abstractmethod
    def _build_random_state(self) -> None:
        """Random state beyond the weights (image pools, sampling generators), seeded from ``self.seed``."""

    @abc.abstractmethod
    def _build_networks(self) -> dict[str, nn.Module]:
        """The method's networks by name, on the CPU, initialised."""

    @abc.abstractmethod
    def _build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """The method's optimisers by name, over ``self.networks``."""

    @abc.abstractmethod
    def _translate(self, images: Tensor, direction: str, partner: Images | None) -> Tensor:
        """Translations in [-1, 1] of a padded batch in [-1, 1] (eval mode, no gradients, autocast as configured)."""

    @property
    @abc.abstractmethod
    def multiple(self) -> int:
        """Training images' heights and widths must be multiples of this (``translate`` pads)."""

    @property
    @abc.abstractmethod
    def epochs(self) -> int:
        """Epochs of the learning-rate schedule."""

    @abc.abstractmethod
    def learning_rate_factor(self, epoch: int) -> float:
        """The learning-rate multiplier of the 0-based ``epoch``."""

    # -- schedule
    def set_epoch(self, epoch: int) -> None:
        """Set every optimiser's learning rate for the 0-based ``epoch`` (call before each epoch).

        ``epoch`` may be :attr:`epochs` (after the last epoch: the rate reached by the decay).
        """
        epoch = _integer(0)("epoch", epoch)
        if epoch > self.epochs:
            raise ValueError(f"epoch must be <= {self.epochs} (the schedule's length), got {epoch}")
        factor = self.learning_rate_factor(epoch)
        for optimizer in self.optimizers.values():
            for group in optimizer.param_groups:
                group["lr"] = group["initial_lr"] * factor
        self.epoch = epoch

    # -- helpers for the subclasses
    def _autocast(self) -> contextlib.AbstractContextManager:
        return precision.autocast(self.device, self.mixed_precision)

    def _train_mode(self) -> None:
        for network in self.networks.values():
            network.train()

    @contextlib.contextmanager
    def _evaluating(self) -> Iterator[None]:
        """All networks in eval mode inside, their previous modes restored after."""
        modes = {name: network.training for name, network in self.networks.items()}
        for network in self.networks.values():
            network.eval()
        try:
            yield
        finally:
            for name, network in self.networks.items():
                network.train(modes[name])

    def _network_batch(self, images: Images, domain: str, label: str) -> Tensor:
        """``(N, C, H, W)`` (or ``(C, H, W)``) images of ``domain`` as a float32 batch on the device, in [-1, 1]."""
        batch = torch.as_tensor(images).to(device=self.device, dtype=torch.float32)
        if batch.dim() == 3:
            batch = batch[None]
        if batch.dim() != 4 or batch.shape[1] != self.channels[domain]:
            raise ValueError(
                f"{label} must be (N, {self.channels[domain]}, H, W) images of domain {domain.upper()}, "
                f"got shape {tuple(batch.shape)}"
            )
        return _to_network_range(batch)

    def _training_batches(self, batch_a: Images, batch_b: Images) -> tuple[Tensor, Tensor]:
        """Both training batches in the networks' range, checked: 4-D, same batch size, sides multiples."""
        real = []
        for domain, images in (("a", batch_a), ("b", batch_b)):
            if images.ndim != 4:
                raise ValueError(f"batch_{domain} must be 4-D (N, C, H, W), got shape {tuple(images.shape)}")
            batch = self._network_batch(images, domain, f"batch_{domain}")
            if batch.shape[2] % self.multiple or batch.shape[3] % self.multiple:
                raise ValueError(
                    f"batch_{domain}: height and width must be multiples of {self.multiple}, "
                    f"got {tuple(batch.shape[2:])}"
                )
            real.append(batch)
        if real[0].shape[0] != real[1].shape[0]:
            raise ValueError(
                f"batch_a and batch_b must hold as many images, got {real[0].shape[0]} and {real[1].shape[0]}"
            )
        return real[0], real[1]

    def _minimise(self, loss: Tensor, optimizer_names: Sequence[str], clip_norm: float | None = None) -> None:
        """One step of the named optimisers on ``loss`` (scaled when float16 needs it), gradient norm clipped."""
        optimizers = [self.optimizers[name] for name in optimizer_names]
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if clip_norm is not None:
            for optimizer in optimizers:
                self.scaler.unscale_(optimizer)
                parameters = [p for group in optimizer.param_groups for p in group["params"]]
                torch.nn.utils.clip_grad_norm_(parameters, clip_norm)
        for optimizer in optimizers:
            self.scaler.step(optimizer)
        self.scaler.update()

    # -- inference
    @torch.no_grad()
    def translate(self, images: Images, direction: str, partner: Images | None = None) -> Images:
        """Translate ``images`` of the source domain of ``direction`` (``"a2b"`` or ``"b2a"``) to the other domain.

        ``images``: ``(N, C, H, W)`` or ``(C, H, W)``, roughly in [0, 1] (clipped);
        returns the translation in [0, 1], shaped and typed like ``images`` (a numpy
        array for an array, a tensor on the input's device for a tensor). Any height
        and width: the input is padded to :attr:`multiple` and the output cropped
        back. The networks run in eval mode, under mixed precision if configured.

        ``partner``: DRIT only (required there): images of the target domain whose
        attribute code styles the translation, one per image or one for all. pix2pix
        and CycleGAN ignore it, so that callers can treat the three methods alike.
        """
        source, _ = _direction_domains(direction)
        batch = self._network_batch(images, source, "images")
        height, width = batch.shape[2:]
        with self._evaluating(), self._autocast():
            output = self._translate(_pad_to_multiple(batch, self.multiple), direction, partner)
        output = (output.float()[:, :, :height, :width] + 1.0) / 2.0
        if images.ndim == 3:
            output = output[0]
        if isinstance(images, np.ndarray):
            return output.cpu().numpy()
        return output.to(images.device)

    # -- state
    @abc.abstractmethod
    def _random_state(self) -> dict[str, Any]:
        """The state of the method's own random generators, as entries of :meth:`state_dict`."""

    @abc.abstractmethod
    def _load_random_state(self, state: Mapping[str, Any]) -> None:
        """Inverse of :meth:`_random_state`, from a whole :meth:`state_dict`."""

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume training: weights, optimisers, scaler, epoch, random generators.

        Also the method, config and channel counts, which :meth:`load_state_dict`
        checks. Safe for ``torch.save`` and ``torch.load(weights_only=True)``.
        """
        return {
            "method": type(self).__name__,
            "config": self.config.to_dict(),
            "channels": dict(self.channels),
            "epoch": self.epoch,
            "networks": {name: network.state_dict() for name, network in self.networks.items()},
            "optimizers": {name: optimizer.state_dict() for name, optimizer in self.optimizers.items()},
            "scaler": self.scaler.state_dict(),
            **self._random_state(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict` of a model of the same method, config and channel counts."""
        for key, expected in (
            ("method", type(self).__name__),
            ("config", self.config.to_dict()),
            ("channels", self.channels),
        ):
            if state[key] != expected:
                raise ValueError(f"the state belongs to another model: its {key} is {state[key]!r}, not {expected!r}")
        for name, network in self.networks.items():
            network.load_state_dict(state["networks"][name])
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state["optimizers"][name])
        if state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        self._load_random_state(state)
        self.set_epoch(state["epoch"])


def _build_generator(config: _GanConfig, in_channels: int, out_channels: int) -> nn.Module:
    """The ResNet or U-Net generator of a pix2pix/CycleGAN config."""
    if config.generator == "resnet":
        return ResnetGenerator(
            in_channels, out_channels, config.filters, config.residual_blocks, config.norm, config.dropout
        )
    return UnetGenerator(
        in_channels, out_channels, config.unet_downsamplings, config.filters, config.norm, config.dropout
    )


# --------------------------------------------------------------------------- pix2pix


class _LinearDecayModel(_TranslationModel):
    """pix2pix and CycleGAN: ``epochs_constant`` epochs at the learning rate, then linear decay."""

    config: _GanConfig

    @property
    def epochs(self) -> int:
        """``epochs_constant + epochs_decay``."""
        return self.config.epochs

    def learning_rate_factor(self, epoch: int) -> float:
        """:func:`linear_decay_factor` of the config's schedule."""
        return linear_decay_factor(epoch, self.config.epochs_constant, self.config.epochs_decay)


class Pix2Pix(_LinearDecayModel):
    """pix2pix (Isola et al. 2017): a conditional GAN with an L1 term, trained on aligned pairs, one direction.

    Networks: ``generator`` (source -> target domain of ``config.direction``) and
    ``discriminator``, a PatchGAN that sees the source image and the (real or
    translated) target image concatenated. Loss of the generator:
    ``GAN(D(x, G(x)), real) + lambda_l1 * |G(x) - y|_1``; of the discriminator:
    ``0.5 * (GAN(D(x, y), real) + GAN(D(x, G(x)), fake))``. No image pool (the
    published pix2pix uses none). See docs/translation.md, section 3.1.

    Args:
        channels_a, channels_b: channel counts of the domains (may differ).
        config: a :class:`Pix2PixConfig`, a mapping for :meth:`Pix2PixConfig.from_dict`,
            or ``None`` for the defaults.
        device: where the networks live and run.
        mixed_precision: run the networks under autocast on ``device`` (module docstring).
        seed: determines the initial weights.
    """

    config_class = Pix2PixConfig

    def _build_networks(self) -> dict[str, nn.Module]:
        config = self.config
        self.source, self.target = _direction_domains(config.direction)
        in_channels, out_channels = self.channels[self.source], self.channels[self.target]
        discriminator = PatchDiscriminator(
            in_channels + out_channels, config.discriminator_filters, config.discriminator_layers, config.norm
        )
        return {
            "generator": init_gan_weights_(_build_generator(config, in_channels, out_channels), config.init_std),
            "discriminator": init_gan_weights_(discriminator, config.init_std),
        }

    def _build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        lr = self.config.learning_rate
        return {name: _adam(network.parameters(), lr, self.config) for name, network in self.networks.items()}

    @property
    def multiple(self) -> int:
        """Image sides must be multiples of this: the generator's."""
        return self.networks["generator"].multiple

    def _source_target(self, batch_a: Images, batch_b: Images) -> tuple[Tensor, Tensor]:
        real_a, real_b = self._training_batches(batch_a, batch_b)
        return (real_a, real_b) if self.source == "a" else (real_b, real_a)

    def _generator_terms(self, source: Tensor, target: Tensor, fake: Tensor) -> dict[str, Tensor]:
        with self._autocast():
            predictions = self.networks["discriminator"](torch.cat([source, fake], dim=1))
        adversarial = losses.adversarial_loss(predictions, 1.0, self.config.gan_mode)
        l1 = losses.l1_loss(fake, target)
        return {
            "generator_adversarial": adversarial,
            "generator_l1": l1,
            "generator": adversarial + self.config.lambda_l1 * l1,
        }

    def training_step(self, batch_a: Images, batch_b: Images) -> dict[str, float]:
        """One pix2pix iteration in the published order: the discriminator's update, then the generator's.

        ``batch_a``, ``batch_b``: aligned ``(N, C, H, W)`` pairs in [0, 1]. Returns the
        losses (``discriminator``; ``generator_adversarial`` and ``generator_l1``
        unweighted; ``generator`` their weighted sum).
        """
        source, target = self._source_target(batch_a, batch_b)
        generator, discriminator = self.networks["generator"], self.networks["discriminator"]
        self._train_mode()
        with self._autocast():
            fake = generator(source)
            fake_predictions = discriminator(torch.cat([source, fake.detach()], dim=1))
            real_predictions = discriminator(torch.cat([source, target], dim=1))
        discriminator_loss = losses.discriminator_loss(real_predictions, fake_predictions, self.config.gan_mode)
        self._minimise(discriminator_loss, ("discriminator",))
        with _frozen(discriminator):
            terms = self._generator_terms(source, target, fake)
            self._minimise(terms["generator"], ("generator",))
        return _floats({"discriminator": discriminator_loss, **terms})

    @torch.no_grad()
    def generator_losses(self, batch_a: Images, batch_b: Images) -> dict[str, float]:
        """The generator's loss terms on aligned batches, networks in eval mode, nothing updated."""
        source, target = self._source_target(batch_a, batch_b)
        with self._evaluating(), self._autocast():
            return _floats(self._generator_terms(source, target, self.networks["generator"](source)))

    def _translate(self, images: Tensor, direction: str, partner: Images | None) -> Tensor:
        if direction != self.config.direction:
            raise ValueError(f"this pix2pix model translates {self.config.direction} only, not {direction}")
        return self.networks["generator"](images)

    def _build_random_state(self) -> None:
        """Nothing: pix2pix draws no random numbers of its own (dropout uses the global generator)."""

    def _random_state(self) -> dict[str, Any]:
        return {}  # pix2pix draws no random numbers of its own (dropout uses the global generator)

    def _load_random_state(self, state: Mapping[str, Any]) -> None:
        """Nothing to restore (:meth:`_random_state`)."""


# --------------------------------------------------------------------------- CycleGAN


class ImagePool:
    """CycleGAN's history of generated images (Shrivastava et al. 2017), seeded.

    Until ``size`` images are stored, every queried image is stored and returned.
    Then each queried image is, with probability 1/2, swapped with a random stored
    one (the stored one is returned), else returned as is. ``size`` 0 returns the
    queries unchanged.
    """

    def __init__(self, size: int, seed: int):
        self.size = size
        self.images: list[Tensor] = []
        self.generator = torch.Generator().manual_seed(seed)

    def query(self, images: Tensor) -> Tensor:
        """The batch the discriminator sees for the (detached) generated ``images``."""
        if self.size == 0:
            return images
        returned = []
        for image in images.detach().split(1):
            if len(self.images) < self.size:
                self.images.append(image)
                returned.append(image)
            elif float(torch.rand((), generator=self.generator)) > 0.5:
                index = int(torch.randint(self.size, (), generator=self.generator))
                returned.append(self.images[index])
                self.images[index] = image
            else:
                returned.append(image)
        return torch.cat(returned)

    def state_dict(self) -> dict[str, Any]:
        """The stored images and the generator's state."""
        return {"images": list(self.images), "rng": self.generator.get_state()}

    def load_state_dict(self, state: Mapping[str, Any], device: torch.device) -> None:
        """Inverse of :meth:`state_dict`, the images moved to ``device``."""
        self.images = [image.to(device) for image in state["images"]]
        self.generator.set_state(state["rng"])


class CycleGAN(_LinearDecayModel):
    """CycleGAN (Zhu et al. 2017): two generators and two discriminators with cycle consistency.

    Networks: ``generator_a2b``, ``generator_b2a`` and the PatchGANs
    ``discriminator_a`` (judges images of domain A) and ``discriminator_b``.
    Generator loss: ``GAN(D_B(G(a)), real) + GAN(D_A(F(b)), real) + lambda_cycle *
    (|F(G(a)) - a|_1 + |G(F(b)) - b|_1) + lambda_cycle * lambda_identity *
    (|F(a) - a|_1 + |G(b) - b|_1)``; each discriminator: ``0.5 * (GAN(D(real), real) +
    GAN(D(pool(fake)), fake))`` with a seeded :class:`ImagePool` per domain. The
    identity terms need ``G`` to accept images of B, i.e. equal channel counts:
    with different counts they are skipped (:attr:`identity_active`) and not
    reported. See docs/translation.md, section 3.2. Arguments as :class:`Pix2Pix`;
    ``seed`` also seeds the pools.
    """

    config_class = CycleGANConfig

    def _build_random_state(self) -> None:
        """The seeded image pools (and a note when the identity terms cannot apply)."""
        self.pools = {
            domain: ImagePool(self.config.pool_size, _stream_seed(self.seed, stream))
            for domain, stream in (("a", _POOL_A_STREAM), ("b", _POOL_B_STREAM))
        }
        if self.config.lambda_identity > 0 and not self.identity_active:
            log.info(
                "CycleGAN: identity loss skipped, the domains have %d and %d channels",
                self.channels["a"],
                self.channels["b"],
            )

    @property
    def identity_active(self) -> bool:
        """Whether the identity terms are part of the loss: a positive weight and equal channel counts."""
        return self.config.lambda_identity > 0 and self.channels["a"] == self.channels["b"]

    def _build_networks(self) -> dict[str, nn.Module]:
        config, channels = self.config, self.channels
        networks = {
            "generator_a2b": _build_generator(config, channels["a"], channels["b"]),
            "generator_b2a": _build_generator(config, channels["b"], channels["a"]),
            "discriminator_a": PatchDiscriminator(
                channels["a"], config.discriminator_filters, config.discriminator_layers, config.norm
            ),
            "discriminator_b": PatchDiscriminator(
                channels["b"], config.discriminator_filters, config.discriminator_layers, config.norm
            ),
        }
        return {name: init_gan_weights_(network, config.init_std) for name, network in networks.items()}

    def _build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        def parameters(*names: str) -> Iterator[nn.Parameter]:
            return itertools.chain.from_iterable(self.networks[name].parameters() for name in names)

        lr = self.config.learning_rate
        return {
            "generators": _adam(parameters("generator_a2b", "generator_b2a"), lr, self.config),
            "discriminators": _adam(parameters("discriminator_a", "discriminator_b"), lr, self.config),
        }

    @property
    def multiple(self) -> int:
        """Image sides must be multiples of this: the generators'."""
        return self.networks["generator_a2b"].multiple

    def _generator_terms(self, real_a: Tensor, real_b: Tensor) -> tuple[dict[str, Tensor], Tensor, Tensor]:
        """The generators' loss terms, and the translations ``fake_a``, ``fake_b`` for the discriminators."""
        config, networks = self.config, self.networks
        a2b, b2a = networks["generator_a2b"], networks["generator_b2a"]
        with self._autocast():
            fake_b = a2b(real_a)
            reconstructed_a = b2a(fake_b)
            fake_a = b2a(real_b)
            reconstructed_b = a2b(fake_a)
            predictions_b = networks["discriminator_b"](fake_b)
            predictions_a = networks["discriminator_a"](fake_a)
        terms = {
            "generator_adversarial_a2b": losses.adversarial_loss(predictions_b, 1.0, config.gan_mode),
            "generator_adversarial_b2a": losses.adversarial_loss(predictions_a, 1.0, config.gan_mode),
            "cycle_a": losses.cycle_consistency_loss(reconstructed_a, real_a),
            "cycle_b": losses.cycle_consistency_loss(reconstructed_b, real_b),
        }
        total = (
            terms["generator_adversarial_a2b"]
            + terms["generator_adversarial_b2a"]
            + config.lambda_cycle * (terms["cycle_a"] + terms["cycle_b"])
        )
        if self.identity_active:
            with self._autocast():
                same_a, same_b = b2a(real_a), a2b(real_b)
            terms["identity_a"] = losses.identity_loss(same_a, real_a)
            terms["identity_b"] = losses.identity_loss(same_b, real_b)
            total = total + config.lambda_cycle * config.lambda_identity * (terms["identity_a"] + terms["identity_b"])
        terms["generator"] = total
        return terms, fake_a, fake_b

    def training_step(self, batch_a: Images, batch_b: Images) -> dict[str, float]:
        """One CycleGAN iteration in the published order: both generators' update, then both discriminators'.

        ``batch_a``, ``batch_b``: ``(N, C, H, W)`` in [0, 1], as many images each (the
        pairing is not used). Returns the unweighted terms
        (``generator_adversarial_a2b``/``_b2a``, ``cycle_a``/``_b``, ``identity_a``/``_b``
        when active), ``generator`` (their weighted sum), ``discriminator_a`` and
        ``discriminator_b``.
        """
        real_a, real_b = self._training_batches(batch_a, batch_b)
        discriminator_a, discriminator_b = self.networks["discriminator_a"], self.networks["discriminator_b"]
        self._train_mode()
        with _frozen(discriminator_a, discriminator_b):
            terms, fake_a, fake_b = self._generator_terms(real_a, real_b)
            self._minimise(terms["generator"], ("generators",))
        with self._autocast():
            real_predictions_a = discriminator_a(real_a)
            fake_predictions_a = discriminator_a(self.pools["a"].query(fake_a.detach()))
            real_predictions_b = discriminator_b(real_b)
            fake_predictions_b = discriminator_b(self.pools["b"].query(fake_b.detach()))
        terms["discriminator_a"] = losses.discriminator_loss(
            real_predictions_a, fake_predictions_a, self.config.gan_mode
        )
        terms["discriminator_b"] = losses.discriminator_loss(
            real_predictions_b, fake_predictions_b, self.config.gan_mode
        )
        self._minimise(terms["discriminator_a"] + terms["discriminator_b"], ("discriminators",))
        return _floats(terms)

    @torch.no_grad()
    def generator_losses(self, batch_a: Images, batch_b: Images) -> dict[str, float]:
        """The generators' loss terms on a batch, networks in eval mode, nothing updated (pools untouched)."""
        real_a, real_b = self._training_batches(batch_a, batch_b)
        with self._evaluating():
            return _floats(self._generator_terms(real_a, real_b)[0])

    def _translate(self, images: Tensor, direction: str, partner: Images | None) -> Tensor:
        return self.networks[f"generator_{direction}"](images)

    def _random_state(self) -> dict[str, Any]:
        return {"pools": {domain: pool.state_dict() for domain, pool in self.pools.items()}}

    def _load_random_state(self, state: Mapping[str, Any]) -> None:
        for domain, pool in self.pools.items():
            pool.load_state_dict(state["pools"][domain], self.device)


# --------------------------------------------------------------------------- DRIT


class DRIT(_TranslationModel):
    """DRIT (Lee et al. 2018) as published, with DRIT++'s mode seeking: disentangled content and attribute codes.

    Concatenation variant (``--concat 1``): the attribute code is concatenated to the
    generator's features, the attribute encoder outputs a mean and log-variance
    (KL term). Networks: ``content_encoder``, ``attribute_encoder``, ``generator``
    (all with a branch per domain), ``discriminator_a`` and ``discriminator_b``
    (translations with encoded attributes), ``discriminator_a_random`` and
    ``discriminator_b_random`` (translations with random attribute codes), and
    ``content_discriminator``; one Adam optimiser per network, as published.

    A training batch of ``2n`` images per domain is split as the published batch of
    2: the first ``n`` are encoded and translated, the last ``n`` are the real
    images the ``*_random`` discriminators compare with translations from random
    codes. Losses and order: docs/translation.md, section 3.3. Arguments as
    :class:`Pix2Pix`; ``seed`` also seeds the training noise and samples.
    """

    config_class = DRITConfig

    def _build_random_state(self) -> None:
        """The seeded generator of the training noise and attribute samples."""
        self.generator = torch.Generator(device=self.device).manual_seed(_stream_seed(self.seed, _SAMPLING_STREAM))

    def _build_networks(self) -> dict[str, nn.Module]:
        config, channels_a, channels_b = self.config, self.channels["a"], self.channels["b"]
        content_encoder = DritContentEncoder(channels_a, channels_b, config.filters)

        def image_discriminator(channels: int) -> MultiScaleDiscriminator:
            return MultiScaleDiscriminator(
                channels,
                config.discriminator_filters,
                config.discriminator_layers,
                config.discriminator_scales,
                config.discriminator_norm,
            )

        networks = {
            "content_encoder": content_encoder,
            "attribute_encoder": DritAttributeEncoder(
                channels_a, channels_b, config.attribute_dim, config.attribute_filters
            ),
            "generator": DritGenerator(channels_a, channels_b, content_encoder.out_channels, config.attribute_dim),
            "discriminator_a": image_discriminator(channels_a),
            "discriminator_a_random": image_discriminator(channels_a),
            "discriminator_b": image_discriminator(channels_b),
            "discriminator_b_random": image_discriminator(channels_b),
            "content_discriminator": DritContentDiscriminator(
                content_encoder.out_channels, config.content_discriminator_layers
            ),
        }
        return {name: init_drit_weights_(network, config.init_std) for name, network in networks.items()}

    def _build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        config = self.config
        return {
            name: _adam(
                network.parameters(),
                config.content_discriminator_learning_rate if name == "content_discriminator" else config.learning_rate,
                config,
                config.weight_decay,
            )
            for name, network in self.networks.items()
        }

    @property
    def multiple(self) -> int:
        """Image sides must be multiples of this: the content encoder's."""
        return DritContentEncoder.multiple

    @property
    def epochs(self) -> int:
        """``config.epochs``."""
        return self.config.epochs

    def learning_rate_factor(self, epoch: int) -> float:
        """:func:`drit_decay_factor` of the config's schedule."""
        return drit_decay_factor(epoch, self.config.epochs, self.config.decay_start_epoch)

    def updates_all_networks(self, iteration: int, iterations_per_epoch: int) -> bool:
        """Whether the 0-based ``iteration`` of an epoch is a :meth:`training_step`, as the published loop decides.

        The published loop trains the content discriminator alone
        (:meth:`content_discriminator_step`) on all iterations except every
        ``content_discriminator_iterations``-th and the last two of an epoch, which
        update all networks.
        """
        return (iteration + 1) % self.config.content_discriminator_iterations == 0 or (
            iteration >= iterations_per_epoch - 2
        )

    # -- forward pass
    def _halves(self, real: Tensor) -> tuple[Tensor, Tensor]:
        if real.shape[0] < 2 or real.shape[0] % 2:
            raise ValueError(f"DRIT trains on an even number (>= 2) of images per domain, got {real.shape[0]}")
        half = real.shape[0] // 2
        return real[:half], real[half:]

    def _content(self, images: Tensor, domain: str, generator: torch.Generator | None) -> Tensor:
        """Content code of ``images``; plus the published N(0, std^2) noise when a ``generator`` is given."""
        content = self.networks["content_encoder"](images, domain)
        if generator is None or self.config.content_noise_std == 0:
            return content
        noise = torch.randn(content.shape, generator=generator, device=content.device)
        return content + self.config.content_noise_std * noise

    def _attribute(self, images: Tensor, domain: str, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        """``(mean, log_variance, sample)`` of the attribute code of ``images`` (reparameterised sample)."""
        mean, log_variance = self.networks["attribute_encoder"](images, domain)
        noise = torch.randn(mean.shape, generator=generator, device=mean.device)
        # exp in float32: under autocast the heads' outputs are half precision.
        return mean, log_variance, mean + noise * torch.exp(0.5 * log_variance.float())

    def _forward(self, real_a: Tensor, real_b: Tensor, generator: torch.Generator, noise: bool) -> dict[str, Any]:
        """All translations of one DRIT iteration (the published ``forward``), by name."""
        networks, config = self.networks, self.config
        real_a, real_a_random = self._halves(real_a)
        real_b, real_b_random = self._halves(real_b)
        noise_generator = generator if noise else None
        content_a = self._content(real_a, "a", noise_generator)
        content_b = self._content(real_b, "b", noise_generator)
        mean_a, log_variance_a, attribute_a = self._attribute(real_a, "a", generator)
        mean_b, log_variance_b, attribute_b = self._attribute(real_b, "b", generator)
        random_codes = [
            torch.randn((real_a.shape[0], config.attribute_dim), generator=generator, device=self.device)
            for _ in range(2 if config.mode_seeking else 1)
        ]
        # One generator pass per domain over stacked inputs, as published: cross translation,
        # self-reconstruction, translations from random codes.
        half = real_a.shape[0]
        fakes_a = networks["generator"](
            torch.cat([content_b, content_a, *[content_b] * len(random_codes)]),
            torch.cat([attribute_a, attribute_a, *random_codes]),
            "a",
        ).split(half)
        fakes_b = networks["generator"](
            torch.cat([content_a, content_b, *[content_a] * len(random_codes)]),
            torch.cat([attribute_b, attribute_b, *random_codes]),
            "b",
        ).split(half)
        fake_a, fake_b = fakes_a[0], fakes_b[0]
        # Second translation: encode the translations and translate back (cross-cycle reconstruction).
        reconstructed_content_a = self._content(fake_b, "b", noise_generator)
        reconstructed_content_b = self._content(fake_a, "a", noise_generator)
        _, _, reconstructed_attribute_a = self._attribute(fake_a, "a", generator)
        _, _, reconstructed_attribute_b = self._attribute(fake_b, "b", generator)
        return {
            "real_a": real_a,
            "real_b": real_b,
            "real_a_random": real_a_random,
            "real_b_random": real_b_random,
            "content_a": content_a,
            "content_b": content_b,
            "mean_a": mean_a,
            "mean_b": mean_b,
            "log_variance_a": log_variance_a,
            "log_variance_b": log_variance_b,
            "random_codes": random_codes,
            "fake_a": fake_a,
            "fake_b": fake_b,
            "self_reconstruction_a": fakes_a[1],
            "self_reconstruction_b": fakes_b[1],
            "fakes_a_random": list(fakes_a[2:]),
            "fakes_b_random": list(fakes_b[2:]),
            "cycle_a": networks["generator"](reconstructed_content_a, reconstructed_attribute_a, "a"),
            "cycle_b": networks["generator"](reconstructed_content_b, reconstructed_attribute_b, "b"),
            # Latent regression: the attribute mean recovered from the translation of the first random code.
            "recovered_code_a": networks["attribute_encoder"](fakes_a[2], "a")[0],
            "recovered_code_b": networks["attribute_encoder"](fakes_b[2], "b")[0],
        }

    # -- losses
    def _encoder_generator_terms(self, passes: Mapping[str, Any]) -> dict[str, Tensor]:
        """The encoders' and generator's loss terms (unweighted) and the two weighted sums they are updated with.

        ``encoder_generator`` updates the content encoder, attribute encoder and
        generator; ``generator_random`` then updates the content encoder and generator.
        """
        config, networks = self.config, self.networks
        with self._autocast():
            content_predictions = [networks["content_discriminator"](passes[f"content_{d}"]) for d in "ab"]
            fake_predictions = {d: networks[f"discriminator_{d}"](passes[f"fake_{d}"]) for d in "ab"}
            random_predictions = {
                d: [networks[f"discriminator_{d}_random"](fake) for fake in passes[f"fakes_{d}_random"]] for d in "ab"
            }
        terms = {
            "adversarial_a": losses.adversarial_loss(fake_predictions["a"], 1.0, "vanilla"),
            "adversarial_b": losses.adversarial_loss(fake_predictions["b"], 1.0, "vanilla"),
            "content_adversarial": _sum_of(losses.content_adversarial_loss(p) for p in content_predictions),
            "kl_attribute": _sum_of(
                losses.attribute_kl_loss(passes[f"mean_{d}"], passes[f"log_variance_{d}"]) for d in "ab"
            ),
            "kl_content": _sum_of(losses.content_l2_loss(passes[f"content_{d}"]) for d in "ab"),
            "cross_cycle": _sum_of(losses.l1_loss(passes[f"cycle_{d}"], passes[f"real_{d}"]) for d in "ab"),
            "self_reconstruction": _sum_of(
                losses.l1_loss(passes[f"self_reconstruction_{d}"], passes[f"real_{d}"]) for d in "ab"
            ),
            "adversarial_random": _sum_of(
                losses.adversarial_loss(p, 1.0, "vanilla") for d in "ab" for p in random_predictions[d]
            ),
            "latent_regression": _sum_of(
                losses.latent_regression_loss(passes[f"recovered_code_{d}"], passes["random_codes"][0]) for d in "ab"
            ),
        }
        terms["encoder_generator"] = (
            config.lambda_adversarial * (terms["adversarial_a"] + terms["adversarial_b"])
            + config.lambda_content_adversarial * terms["content_adversarial"]
            + config.lambda_kl_attribute * terms["kl_attribute"]
            + config.lambda_kl_content * terms["kl_content"]
            + config.lambda_cross_cycle * terms["cross_cycle"]
            + config.lambda_self_reconstruction * terms["self_reconstruction"]
        )
        generator_random = (
            config.lambda_adversarial * terms["adversarial_random"]
            + config.lambda_latent_regression * terms["latent_regression"]
        )
        if config.mode_seeking:
            codes = passes["random_codes"]
            terms["mode_seeking"] = _sum_of(
                losses.mode_seeking_loss(*passes[f"fakes_{d}_random"], *codes) for d in "ab"
            )
            generator_random = generator_random + config.lambda_mode_seeking * terms["mode_seeking"]
        terms["generator_random"] = generator_random
        return terms

    # -- updates
    def _update_discriminators(self, passes: Mapping[str, Any]) -> dict[str, Tensor]:
        """The published ``update_D``: the four image discriminators, then the content discriminator."""
        networks = self.networks
        terms = {}
        with self._autocast():
            for d in "ab":
                discriminator, discriminator_random = (
                    networks[f"discriminator_{d}"],
                    networks[f"discriminator_{d}_random"],
                )
                terms[f"discriminator_{d}"] = losses.discriminator_loss(
                    discriminator(passes[f"real_{d}"]), discriminator(passes[f"fake_{d}"].detach()), "vanilla", 1.0
                )
                real_random = passes[f"real_{d}_random"]
                terms[f"discriminator_{d}_random"] = _sum_of(
                    losses.discriminator_loss(
                        discriminator_random(real_random), discriminator_random(fake.detach()), "vanilla", 1.0
                    )
                    for fake in passes[f"fakes_{d}_random"]
                )
            content_predictions = [networks["content_discriminator"](passes[f"content_{d}"].detach()) for d in "ab"]
        image_names = ("discriminator_a", "discriminator_a_random", "discriminator_b", "discriminator_b_random")
        # Their parameters and inputs are disjoint: one backward pass of the sum gives each its own gradients.
        self._minimise(_sum_of(terms[name] for name in image_names), image_names)
        terms["content_discriminator"] = losses.content_discriminator_loss(*content_predictions)
        self._minimise(
            terms["content_discriminator"], ("content_discriminator",), self.config.content_discriminator_clip
        )
        return terms

    def _step_with_gradients(
        self, names: Sequence[str], parameters: list[nn.Parameter], gradients: Sequence[Tensor]
    ) -> None:
        for parameter, gradient in zip(parameters, gradients):
            parameter.grad = gradient
        for name in names:
            self.scaler.step(self.optimizers[name])
        self.scaler.update()

    def _update_encoders_generator(self, terms: Mapping[str, Tensor]) -> None:
        """The published ``update_EG``: a step of both encoders and the generator, then content encoder and generator.

        Both gradients are taken at the current weights before either step. (The
        published code steps, then back-propagates the second loss through the graph
        of the first forward pass, whose saved weights the first step changed in
        place; current PyTorch rejects that.)
        """
        all_names = ("content_encoder", "attribute_encoder", "generator")
        generator_names = ("content_encoder", "generator")
        all_parameters = [p for name in all_names for p in self.networks[name].parameters()]
        generator_parameters = [p for name in generator_names for p in self.networks[name].parameters()]
        scale = self.scaler.get_scale()
        all_gradients = torch.autograd.grad(
            self.scaler.scale(terms["encoder_generator"]), all_parameters, retain_graph=True
        )
        generator_gradients = torch.autograd.grad(self.scaler.scale(terms["generator_random"]), generator_parameters)
        self._step_with_gradients(all_names, all_parameters, all_gradients)
        # The first step's scaler update may have changed the scale the second gradients were taken with.
        rescale = self.scaler.get_scale() / scale
        self._step_with_gradients(generator_names, generator_parameters, [g * rescale for g in generator_gradients])

    def training_step(self, batch_a: Images, batch_b: Images) -> dict[str, float]:
        """One full DRIT iteration as published: all discriminators' updates, then the encoders' and generator's.

        ``batch_a``, ``batch_b``: ``(2n, C, H, W)`` in [0, 1] (class docstring). Returns
        the discriminators' losses and the unweighted encoder/generator terms with
        their weighted sums ``encoder_generator`` and ``generator_random``.
        """
        real_a, real_b = self._training_batches(batch_a, batch_b)
        self._train_mode()
        with self._autocast():
            passes = self._forward(real_a, real_b, self.generator, noise=True)
        discriminator_terms = self._update_discriminators(passes)
        terms = self._encoder_generator_terms(passes)
        self._update_encoders_generator(terms)
        return _floats({**discriminator_terms, **terms})

    def content_discriminator_step(self, batch_a: Images, batch_b: Images) -> dict[str, float]:
        """The published ``update_D_content``: one update of the content discriminator alone.

        Uses the first half of each batch, as :meth:`training_step` does; returns
        ``{"content_discriminator": loss}``.
        """
        real_a, real_b = self._training_batches(batch_a, batch_b)
        self._train_mode()
        with torch.no_grad(), self._autocast():
            contents = [
                self._content(self._halves(real)[0], d, self.generator) for d, real in zip("ab", (real_a, real_b))
            ]
        with self._autocast():
            predictions = [self.networks["content_discriminator"](content) for content in contents]
        loss = losses.content_discriminator_loss(*predictions)
        self._minimise(loss, ("content_discriminator",), self.config.content_discriminator_clip)
        return {"content_discriminator": float(loss.detach())}

    @torch.no_grad()
    def generator_losses(self, batch_a: Images, batch_b: Images) -> dict[str, float]:
        """The encoders' and generator's loss terms, nothing updated, reproducibly.

        Networks in eval mode, no content noise; attribute samples and random codes
        from a generator seeded afresh on every call (the training generator is untouched).
        """
        real_a, real_b = self._training_batches(batch_a, batch_b)
        generator = torch.Generator(device=self.device).manual_seed(_stream_seed(self.seed, _EVALUATION_STREAM))
        with self._evaluating(), self._autocast():
            passes = self._forward(real_a, real_b, generator, noise=False)
            return _floats(self._encoder_generator_terms(passes))

    def _translate(self, images: Tensor, direction: str, partner: Images | None) -> Tensor:
        """Content of ``images`` with the attribute mean of ``partner`` (the mean, not a sample: deterministic)."""
        if partner is None:
            raise ValueError(
                "DRIT translates with the attribute code of a partner image of the target domain: pass partner"
            )
        source, target = _direction_domains(direction)
        partner_batch = self._network_batch(partner, target, "partner")
        if partner_batch.shape[0] not in (1, images.shape[0]):
            raise ValueError(f"partner must hold 1 or {images.shape[0]} images, got {partner_batch.shape[0]}")
        attribute, _ = self.networks["attribute_encoder"](partner_batch, target)
        content = self.networks["content_encoder"](images, source)
        return self.networks["generator"](content, attribute.expand(images.shape[0], -1), target)

    def _random_state(self) -> dict[str, Any]:
        return {"rng": self.generator.get_state()}

    def _load_random_state(self, state: Mapping[str, Any]) -> None:
        self.generator.set_state(state["rng"])


METHODS: dict[str, type[_TranslationModel]] = {"pix2pix": Pix2Pix, "cyclegan": CycleGAN, "drit": DRIT}


def build_model(
    method: str,
    channels_a: int,
    channels_b: int,
    config: Mapping[str, Any] | None = None,
    *,
    device: torch.device | str = "cpu",
    mixed_precision: bool = False,
    seed: int = 0,
) -> _TranslationModel:
    """The model of ``method`` (a key of :data:`METHODS`) with ``config`` given as a mapping (or defaults)."""
    if method not in METHODS:
        raise ValueError(f"unknown translation method {method!r}; expected one of {tuple(METHODS)}")
    return METHODS[method](channels_a, channels_b, config, device=device, mixed_precision=mixed_precision, seed=seed)
