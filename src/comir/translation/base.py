"""What the GAN translation models pix2pix, CycleGAN and DRIT share: the base class and its helpers.

:class:`_TranslationModel` holds devices, precision, value ranges, the
learning-rate schedule, inference and state. One class per method subclasses it
with the method's networks, optimisers and training step
(:class:`Pix2Pix`, :class:`CycleGAN`, :class:`DRIT`), each with a frozen dataclass of
hyper-parameters whose defaults are the CoMIR paper's settings
(:mod:`comir.translation.params`; docs/translation.md, section 4). Here too: the
seeds of the models' random streams, pix2pix's and CycleGAN's linear-decay
schedule and their generator.

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
:func:`comir.network.precision.autocast` on ``device``, exactly as given (the
configuration's CUDA-only rule, :func:`comir.network.precision.mixed_precision_enabled`,
is the caller's to apply); the losses compute in float32
(:mod:`comir.translation.losses`); a GradScaler scales the gradients only where
:func:`comir.network.precision.needs_grad_scaler` says so (float16).

**Seeding.** ``seed`` determines every initial weight (drawn under a fork of
torch's global generator, which is left as it was) and every random draw of
training: CycleGAN's image pools and DRIT's noise, attribute samples and random
codes use generators of their own, seeded from ``seed`` and saved by
``state_dict``. Dropout (off by default) draws from torch's global generator.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from comir.network import precision
from comir.translation.networks import ResnetGenerator, UnetGenerator
from comir.translation.params import DIRECTIONS, _Config, _GanConfig, _integer

Images = Tensor | np.ndarray

# Streams of random numbers derived from a model's seed ([seed, stream], as comir.training.loop does).
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

    Parameters
    ----------
    epoch : int
        The 0-based epoch.
    constant_epochs : int
        Epochs at the full learning rate.
    decay_epochs : int
        Epochs of the linear decay.

    Returns
    -------
    float
        The factor, in [0, 1] for ``epoch <= constant_epochs + decay_epochs``.
    """
    return 1.0 - max(0, epoch + 1 - constant_epochs) / (decay_epochs + 1)


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

        Parameters
        ----------
        epoch : int
            The 0-based epoch, ``0 <= epoch <= epochs``; it may be :attr:`epochs` (after the last epoch:
            the rate reached by the decay).

        Raises
        ------
        ValueError
            If ``epoch`` is not an integer in ``[0, epochs]``.
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

        Any height and width: the input is padded to :attr:`multiple` and the output cropped
        back. The networks run in eval mode, under mixed precision if configured.

        Parameters
        ----------
        images : torch.Tensor or numpy.ndarray
            ``(N, C, H, W)`` or ``(C, H, W)`` images of the source domain, roughly in [0, 1] (clipped).
        direction : str
            ``"a2b"`` or ``"b2a"``.
        partner : torch.Tensor or numpy.ndarray or None, optional
            DRIT only (required there): images of the target domain whose attribute code styles the
            translation, one per image or one for all. pix2pix and CycleGAN ignore it, so that callers
            can treat the three methods alike. Default None.

        Returns
        -------
        torch.Tensor or numpy.ndarray
            The translation in [0, 1], shaped and typed like ``images`` (a numpy array for an array, a
            tensor on the input's device for a tensor).

        Raises
        ------
        ValueError
            If ``direction`` is unknown, ``images`` do not have the source domain's channels, a pix2pix
            model is asked for the other direction, or DRIT's ``partner`` is missing or of the wrong count.
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
        """Restore a :meth:`state_dict` of a model of the same method, config and channel counts.

        Parameters
        ----------
        state : Mapping[str, Any]
            A :meth:`state_dict`, e.g. as ``torch.load(..., weights_only=True)`` returns it.

        Raises
        ------
        ValueError
            If the state's method, config or channel counts differ from this model's.
        """
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
