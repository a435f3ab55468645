"""CycleGAN (Zhu et al. 2017): the model, its training step and inference (docs/translation.md, section 3.2).

Value range, batches, mixed precision and seeding: :mod:`comir.translation.base`;
the discriminators' image pools: :mod:`comir.translation.pool`.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from comir.translation import losses
from comir.translation.base import (
    _POOL_A_STREAM,
    _POOL_B_STREAM,
    Images,
    _adam,
    _build_generator,
    _floats,
    _frozen,
    _LinearDecayModel,
    _stream_seed,
)
from comir.translation.networks import PatchDiscriminator, init_gan_weights_
from comir.translation.params import CycleGANConfig
from comir.translation.pool import ImagePool

log = logging.getLogger(__name__)


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

        Parameters
        ----------
        batch_a, batch_b : torch.Tensor or numpy.ndarray
            ``(N, C, H, W)`` images of domains A and B in [0, 1], as many images each (the pairing is not
            used); sides multiples of :attr:`multiple`.

        Returns
        -------
        dict[str, float]
            The unweighted terms (``generator_adversarial_a2b``/``_b2a``, ``cycle_a``/``_b``,
            ``identity_a``/``_b`` when active), ``generator`` (their weighted sum), ``discriminator_a`` and
            ``discriminator_b``.

        Raises
        ------
        ValueError
            If a batch is not 4-D with its domain's channels and sides multiples of :attr:`multiple`, or the
            batches hold different numbers of images.
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
        """The generators' loss terms on a batch, networks in eval mode, nothing updated (pools untouched).

        Parameters
        ----------
        batch_a, batch_b : torch.Tensor or numpy.ndarray
            ``(N, C, H, W)`` images of domains A and B in [0, 1], as for :meth:`training_step`.

        Returns
        -------
        dict[str, float]
            The generator terms of :meth:`training_step` (no discriminator terms).

        Raises
        ------
        ValueError
            If the batches do not fit, as for :meth:`training_step`.
        """
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
