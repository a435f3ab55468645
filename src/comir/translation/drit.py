"""DRIT (Lee et al. 2018) with DRIT++'s mode seeking: the model, its training step and inference.

docs/translation.md, section 3.3. Value range, batches, mixed precision and seeding: :mod:`comir.translation.base`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from comir.translation import losses
from comir.translation.base import (
    _EVALUATION_STREAM,
    _SAMPLING_STREAM,
    Images,
    _adam,
    _direction_domains,
    _floats,
    _stream_seed,
    _sum_of,
    _TranslationModel,
)
from comir.translation.networks import (
    DritAttributeEncoder,
    DritContentDiscriminator,
    DritContentEncoder,
    DritGenerator,
    MultiScaleDiscriminator,
    init_drit_weights_,
)
from comir.translation.params import DRITConfig


def drit_decay_factor(epoch: int, epochs: int, decay_start_epoch: int) -> float:
    """DRIT's learning-rate factor of the 0-based ``epoch``: ``1 - max(0, epoch - start) / (epochs - start + 1)``.

    The published rule: 1 up to and including epoch ``decay_start_epoch``, then a
    linear decay that would reach 0 at epoch ``epochs + 1`` (the last epoch,
    ``epochs - 1``, runs at ``2 / (epochs - decay_start_epoch + 1)``).

    Parameters
    ----------
    epoch : int
        The 0-based epoch.
    epochs : int
        Epochs of the schedule.
    decay_start_epoch : int
        The last epoch at the full learning rate.

    Returns
    -------
    float
        The factor.
    """
    return 1.0 - max(0, epoch - decay_start_epoch) / (epochs - decay_start_epoch + 1)


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
        """:func:`drit_decay_factor` of the config's schedule.

        Parameters
        ----------
        epoch : int
            The 0-based epoch.

        Returns
        -------
        float
            The learning-rate multiplier, with ``config.epochs`` and ``config.decay_start_epoch``.
        """
        return drit_decay_factor(epoch, self.config.epochs, self.config.decay_start_epoch)

    def updates_all_networks(self, iteration: int, iterations_per_epoch: int) -> bool:
        """Whether the 0-based ``iteration`` of an epoch is a :meth:`training_step`, as the published loop decides.

        The published loop trains the content discriminator alone
        (:meth:`content_discriminator_step`) on all iterations except every
        ``content_discriminator_iterations``-th and the last two of an epoch, which
        update all networks.

        Parameters
        ----------
        iteration : int
            The 0-based iteration within the epoch.
        iterations_per_epoch : int
            Iterations of an epoch.

        Returns
        -------
        bool
            True for a full :meth:`training_step`, False for a :meth:`content_discriminator_step`.
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

        Parameters
        ----------
        batch_a, batch_b : torch.Tensor or numpy.ndarray
            ``(2n, C, H, W)`` images of domains A and B in [0, 1], ``n >= 1`` (class docstring); sides
            multiples of :attr:`multiple`.

        Returns
        -------
        dict[str, float]
            The discriminators' losses and the unweighted encoder/generator terms with their weighted sums
            ``encoder_generator`` and ``generator_random``.

        Raises
        ------
        ValueError
            If a batch is not 4-D with its domain's channels and sides multiples of :attr:`multiple`, the
            batches hold different numbers of images, or the number is odd or below 2.
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

        Uses the first half of each batch, as :meth:`training_step` does.

        Parameters
        ----------
        batch_a, batch_b : torch.Tensor or numpy.ndarray
            ``(2n, C, H, W)`` images of domains A and B in [0, 1], as for :meth:`training_step`.

        Returns
        -------
        dict[str, float]
            ``{"content_discriminator": loss}``.

        Raises
        ------
        ValueError
            If the batches do not fit, as for :meth:`training_step`.
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

        Parameters
        ----------
        batch_a, batch_b : torch.Tensor or numpy.ndarray
            ``(2n, C, H, W)`` images of domains A and B in [0, 1], as for :meth:`training_step`.

        Returns
        -------
        dict[str, float]
            The unweighted encoder/generator terms and their weighted sums ``encoder_generator`` and
            ``generator_random``.

        Raises
        ------
        ValueError
            If the batches do not fit, as for :meth:`training_step`.
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
