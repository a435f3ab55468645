"""pix2pix (Isola et al. 2017): the model, its training step and inference (docs/translation.md, section 3.1).

Value range, batches, mixed precision and seeding: :mod:`comir.translation.base`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from comir.translation import losses
from comir.translation.base import (
    Images,
    _adam,
    _build_generator,
    _direction_domains,
    _floats,
    _frozen,
    _LinearDecayModel,
)
from comir.translation.networks import PatchDiscriminator, init_gan_weights_
from comir.translation.params import Pix2PixConfig


class Pix2Pix(_LinearDecayModel):
    """pix2pix (Isola et al. 2017): a conditional GAN with an L1 term, trained on aligned pairs, one direction.

    Networks: ``generator`` (source -> target domain of ``config.direction``) and
    ``discriminator``, a PatchGAN that sees the source image and the (real or
    translated) target image concatenated. Loss of the generator:
    ``GAN(D(x, G(x)), real) + lambda_l1 * |G(x) - y|_1``; of the discriminator:
    ``0.5 * (GAN(D(x, y), real) + GAN(D(x, G(x)), fake))``. No image pool (the
    published pix2pix uses none). See docs/translation.md, section 3.1.

    Parameters
    ----------
    channels_a, channels_b : int
        Channel counts of the domains (may differ).
    config : Pix2PixConfig or Mapping[str, Any] or None, optional
        A :class:`Pix2PixConfig`, a mapping for :meth:`Pix2PixConfig.from_dict`, or ``None`` for the defaults.
    device : torch.device or str, optional
        Where the networks live and run. Default ``"cpu"``.
    mixed_precision : bool, optional
        Run the networks under autocast on ``device`` (:mod:`comir.translation.base`). Default False.
    seed : int, optional
        Determines the initial weights. Default 0.
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

        Parameters
        ----------
        batch_a, batch_b : torch.Tensor or numpy.ndarray
            Aligned ``(N, C, H, W)`` pairs in [0, 1] (item ``i`` of both is a pair); sides multiples of
            :attr:`multiple`. The source and target follow ``config.direction``.

        Returns
        -------
        dict[str, float]
            The losses: ``discriminator``; ``generator_adversarial`` and ``generator_l1`` unweighted;
            ``generator`` their weighted sum.

        Raises
        ------
        ValueError
            If a batch is not 4-D with its domain's channels and sides multiples of :attr:`multiple`, or the
            batches hold different numbers of images.
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
        """The generator's loss terms on aligned batches, networks in eval mode, nothing updated.

        Parameters
        ----------
        batch_a, batch_b : torch.Tensor or numpy.ndarray
            Aligned ``(N, C, H, W)`` pairs in [0, 1], as for :meth:`training_step`.

        Returns
        -------
        dict[str, float]
            ``generator_adversarial``, ``generator_l1`` (unweighted) and ``generator`` (their weighted sum).

        Raises
        ------
        ValueError
            If the batches do not fit, as for :meth:`training_step`.
        """
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
