"""Tests of comir.translation: the pix2pix, CycleGAN and DRIT baselines (docs/translation.md)."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch

from comir.network.model import count_parameters
from comir.translation import (
    DRIT,
    CycleGAN,
    CycleGANConfig,
    DRITConfig,
    ImagePool,
    Pix2Pix,
    Pix2PixConfig,
    build_model,
    drit_decay_factor,
    linear_decay_factor,
    losses,
)
from comir.translation.networks import (
    DritAttributeEncoder,
    DritContentDiscriminator,
    DritContentEncoder,
    DritGenerator,
    MultiScaleDiscriminator,
    PatchDiscriminator,
    ResnetGenerator,
    UnetGenerator,
)

# Tiny configurations: every test but the parameter counts trains or runs these on 32 px images.
TINY = {
    Pix2Pix: dict(residual_blocks=2, filters=8, discriminator_filters=8),
    CycleGAN: dict(residual_blocks=2, filters=8, discriminator_filters=8, pool_size=2),
    DRIT: dict(
        filters=8,
        attribute_filters=8,
        discriminator_filters=8,
        discriminator_layers=3,
        content_discriminator_layers=0,
    ),
}
MODELS = (Pix2Pix, CycleGAN, DRIT)


# One thread: the networks are tiny, and two OpenMP threads that spin-wait for each other made a
# training step ~100x slower (0.2 s -> 29 s of CPU for DRIT) on a loaded 2-core machine.
@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def images(n: int, channels: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.rand((n, channels, size, size), generator=torch.Generator().manual_seed(seed))


def tiny(cls, channels_a=3, channels_b=1, seed=0, mixed_precision=False, **overrides):
    return cls(channels_a, channels_b, {**TINY[cls], **overrides}, seed=seed, mixed_precision=mixed_precision)


def translate(model, x, direction="a2b", partner=None):
    if isinstance(model, DRIT) and partner is None:
        target_channels = model.channels[direction[2]]
        partner = images(x.shape[0] if x.ndim == 4 else 1, target_channels, seed=9)
    return model.translate(x, direction, partner=partner)


# --------------------------------------------------------------------------- (1) shapes


@pytest.mark.parametrize("size", [64, 128])
@pytest.mark.parametrize("in_channels, out_channels", [(3, 1), (1, 3)])
def test_generator_and_discriminator_shapes(in_channels, out_channels, size):
    x = torch.rand(2, in_channels, size, size)
    resnet = ResnetGenerator(in_channels, out_channels, filters=4, residual_blocks=1)
    assert resnet(x).shape == (2, out_channels, size, size)
    # A U-Net as deep as the image allows: its innermost level is 1x1.
    unet = UnetGenerator(in_channels, out_channels, downsamplings=int(math.log2(size)), filters=2, dropout=True)
    assert unet(x).shape == (2, out_channels, size, size)
    # 70x70 PatchGAN: three stride-2 layers, then two 4x4 stride-1 layers (-1 px each).
    assert PatchDiscriminator(in_channels, filters=4)(x).shape == (2, 1, size // 8 - 2, size // 8 - 2)
    conditional = PatchDiscriminator(in_channels + out_channels, filters=4, norm="batch")
    assert conditional(torch.cat([x, torch.rand(2, out_channels, size, size)], 1)).shape[1] == 1


@pytest.mark.parametrize("size", [64, 128])
@pytest.mark.parametrize("channels_a, channels_b", [(3, 1), (1, 3)])
def test_drit_network_shapes(channels_a, channels_b, size):
    a, b = torch.rand(2, channels_a, size, size), torch.rand(2, channels_b, size, size)
    content_encoder = DritContentEncoder(channels_a, channels_b, filters=4)
    content_a, content_b = content_encoder(a, "a"), content_encoder(b, "b")
    assert content_a.shape == content_b.shape == (2, 16, size // 4, size // 4)
    mean, log_variance = DritAttributeEncoder(channels_a, channels_b, attribute_dim=5, filters=4)(b, "b")
    assert mean.shape == log_variance.shape == (2, 5)
    generator = DritGenerator(channels_a, channels_b, content_channels=16, attribute_dim=5)
    assert generator(content_a, mean, "b").shape == (2, channels_b, size, size)
    assert generator(content_b, torch.rand(2, 5), "a").shape == (2, channels_a, size, size)
    # One 7x7 stride-2 layer (content side c -> (c - 5) // 2 + 1), then 4x4 without padding (-3).
    content_side = (size // 4 - 5) // 2 + 1 - 3
    assert DritContentDiscriminator(16, strided_layers=1)(content_a).shape == (2, 1, content_side, content_side)
    outputs = MultiScaleDiscriminator(channels_a, filters=4)(a)
    assert [o.shape for o in outputs] == [(2, 1, size // 16 // 2**s, size // 16 // 2**s) for s in range(3)]


def test_unet_256_shape():
    x = torch.rand(1, 3, 256, 256)
    assert UnetGenerator(3, 1, downsamplings=8, filters=2, norm="batch")(x).shape == (1, 1, 256, 256)


@pytest.mark.parametrize("cls", MODELS)
@pytest.mark.parametrize("channels_a, channels_b", [(3, 1), (1, 3)])
def test_translate_shapes_types_and_range(cls, channels_a, channels_b):
    model = tiny(cls, channels_a, channels_b)
    # Any size (padded to the model's multiple and cropped back), numpy in -> numpy out, tensor -> tensor.
    single = np.random.default_rng(0).uniform(-0.1, 1.1, (channels_a, 30, 45)).astype(np.float32)
    out = translate(model, single)
    assert isinstance(out, np.ndarray) and out.shape == (channels_b, 30, 45) and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    batch = images(2, channels_a)
    out = translate(model, batch)
    assert isinstance(out, torch.Tensor) and out.shape == (2, channels_b, 32, 32)
    if cls is not Pix2Pix:  # pix2pix learns one direction
        assert translate(model, images(1, channels_b), "b2a").shape == (1, channels_a, 32, 32)


# --------------------------------------------------------------------------- (2) parameter counts


def test_parameter_counts_of_the_published_pix2pix_and_cyclegan_networks():
    # The numbers the official pytorch-CycleGAN-and-pix2pix code prints ("Total number of parameters : X M"),
    # recomputed exactly (docs/translation.md, section 6). The meta device skips allocation.
    with torch.device("meta"):
        resnet = ResnetGenerator(3, 3, filters=64, residual_blocks=9, norm="instance")
        patch_cyclegan = PatchDiscriminator(3, filters=64, layers=3, norm="instance")
        patch_pix2pix = PatchDiscriminator(6, filters=64, layers=3, norm="batch")  # conditional: 3 + 3 inputs
        unet = UnetGenerator(3, 3, downsamplings=8, filters=64, norm="batch")
    assert count_parameters(resnet) == 11_378_179 and round(count_parameters(resnet) / 1e6, 3) == 11.378
    assert count_parameters(patch_cyclegan) == 2_764_737 and round(count_parameters(patch_cyclegan) / 1e6, 3) == 2.765
    assert count_parameters(patch_pix2pix) == 2_768_705 and round(count_parameters(patch_pix2pix) / 1e6, 3) == 2.769
    assert count_parameters(unet) == 54_413_955 and round(count_parameters(unet) / 1e6, 3) == 54.414


def test_default_models_have_the_published_architectures():
    pix2pix_networks, cyclegan_networks = Pix2Pix(3, 3).networks, CycleGAN(3, 3).networks
    assert count_parameters(pix2pix_networks["generator"]) == 11_378_179
    assert count_parameters(pix2pix_networks["discriminator"]) == 2_767_809  # instance norm, 6 inputs
    assert [count_parameters(n) for n in cyclegan_networks.values()] == [11_378_179] * 2 + [2_764_737] * 2


def test_drit_parameter_counts_match_the_published_code():
    # From HsinYingLee/DRIT, src/networks.py (master, commit f19f50a): E_content(3, 3), E_attr_concat(3, 3, 8,
    # norm_layer=None, nl_layer=LeakyReLU 0.2), G_concat(3, 3, nz=8), MultiScaleDis(3, n_scale=3, norm='None')
    # (4 of them: disA, disA2, disB, disB2) and Dis_content(), instantiated and counted with
    # sum(p.numel() for p in net.parameters()) (docs/translation.md, section 6).
    networks = DRIT(3, 3).networks
    counts = {name: count_parameters(network) for name, network in networks.items()}
    assert counts == {
        "content_encoder": 9_018_112,
        "attribute_encoder": 2_688_160,
        "generator": 9_564_710,
        "discriminator_a": 8_271_171,
        "discriminator_a_random": 8_271_171,
        "discriminator_b": 8_271_171,
        "discriminator_b_random": 8_271_171,
        "content_discriminator": 10_683_649,
    }
    assert sum(counts.values()) == 65_039_315
    encoder = networks["content_encoder"]
    assert count_parameters(encoder.branches["a"]) == 3_918_976 and count_parameters(encoder.shared) == 1_180_160
    assert count_parameters(networks["generator"].shared) == 1_180_160


# --------------------------------------------------------------------------- (3) losses


def test_adversarial_losses_against_formulas():
    prediction = torch.tensor([[0.5, 2.0], [-1.0, 0.0]])
    assert losses.adversarial_loss(prediction, 1.0, "lsgan").item() == pytest.approx((0.25 + 1.0 + 4.0 + 1.0) / 4)
    assert losses.adversarial_loss(prediction, 0.0, "lsgan").item() == pytest.approx((0.25 + 4.0 + 1.0 + 0.0) / 4)
    sigmoid = 1 / (1 + np.exp(-prediction.numpy().astype(float)))
    assert losses.adversarial_loss(prediction, 1.0, "vanilla").item() == pytest.approx(-np.log(sigmoid).mean())
    assert losses.adversarial_loss(prediction, 0.0, "vanilla").item() == pytest.approx(-np.log(1 - sigmoid).mean())
    # Multi-scale: the sum over scales.
    scales = [torch.tensor([0.0, 1.0]), torch.tensor([[3.0]])]
    assert losses.adversarial_loss(scales, 1.0, "lsgan").item() == pytest.approx(0.5 + 4.0)
    real, fake = torch.tensor([0.8, 1.2]), torch.tensor([0.1, 0.3])
    expected = 0.5 * ((0.04 + 0.04) / 2 + (0.01 + 0.09) / 2)
    assert losses.discriminator_loss(real, fake, "lsgan").item() == pytest.approx(expected)
    with pytest.raises(ValueError, match="GAN mode"):
        losses.adversarial_loss(prediction, 1.0, "wgan")


def test_reconstruction_losses_against_formulas():
    output = torch.tensor([[[[0.0, 0.5], [1.0, -1.0]]]])
    target = torch.tensor([[[[0.5, 0.5], [0.0, 1.0]]]])
    assert losses.l1_loss(output, target).item() == pytest.approx((0.5 + 0.0 + 1.0 + 2.0) / 4)
    assert losses.cycle_consistency_loss(output, target).item() == pytest.approx(0.875)
    assert losses.identity_loss(output, target).item() == pytest.approx(0.875)
    with pytest.raises(ValueError, match="channel counts"):
        losses.identity_loss(torch.zeros(1, 1, 2, 2), torch.zeros(1, 3, 2, 2))


def test_drit_losses_against_formulas():
    mean = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    log_variance = torch.tensor([[0.0, math.log(2.0)], [0.0, 0.0]])
    first = 0.5 * ((1 + 1 - 1 - 0) + (0 + 2 - 1 - math.log(2.0)))
    second = 0.5 * ((0 + 1 - 1 - 0) + (4 + 1 - 1 - 0))
    assert losses.attribute_kl_loss(mean, log_variance).item() == pytest.approx((first + second) / 2)
    assert losses.content_l2_loss(torch.tensor([1.0, -2.0, 0.0, 3.0])).item() == pytest.approx(14 / 4)
    logits_a, logits_b = torch.tensor([0.0, 2.0]), torch.tensor([-1.0])
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    expected = -(math.log(1 - sig(0.0)) + math.log(1 - sig(2.0))) / 2 - math.log(sig(-1.0))
    assert losses.content_discriminator_loss(logits_a, logits_b).item() == pytest.approx(expected)
    assert losses.content_adversarial_loss(torch.tensor([0.0])).item() == pytest.approx(math.log(2.0))
    x = 1.5
    half = -(0.5 * math.log(sig(x)) + 0.5 * math.log(1 - sig(x)))
    assert losses.content_adversarial_loss(torch.tensor([x])).item() == pytest.approx(half)
    assert losses.latent_regression_loss(torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 4.0]])).item() == 1.5
    image_1, image_2 = torch.zeros(1, 1, 2, 2), torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    code_1, code_2 = torch.zeros(1, 2), torch.tensor([[1.0, 3.0]])
    ratio = 0.5 / 2.0
    assert losses.mode_seeking_loss(image_1, image_2, code_1, code_2).item() == pytest.approx(1 / (ratio + 1e-5))


def test_losses_compute_in_float32_under_autocast():
    prediction = torch.tensor([0.5, 2.0], dtype=torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = losses.adversarial_loss(prediction, 1.0, "lsgan")
        l1 = losses.l1_loss(prediction, torch.ones(2))
    assert loss.dtype == l1.dtype == torch.float32
    assert loss.item() == pytest.approx(0.625) and l1.item() == pytest.approx(0.75)


# --------------------------------------------------------------------------- (4) training lowers the loss


@pytest.mark.parametrize(
    "cls, terms, overrides",
    [
        (Pix2Pix, ("generator", "generator_l1"), {}),
        (CycleGAN, ("generator", "cycle_a", "cycle_b"), {}),
        # DRIT's default rate (1e-4) moves tiny networks little in a few steps.
        (DRIT, ("encoder_generator", "self_reconstruction", "cross_cycle"), {"learning_rate": 1e-3}),
    ],
)
def test_a_few_training_steps_lower_the_generator_loss_on_a_fixed_batch(cls, terms, overrides):
    model = tiny(cls, seed=1, **overrides)
    batch_a, batch_b = images(2, 3, seed=1), images(2, 1, seed=2)
    before = model.generator_losses(batch_a, batch_b)
    assert model.generator_losses(batch_a, batch_b) == before  # evaluation changes nothing
    for _ in range(4):
        step = model.training_step(batch_a, batch_b)
        assert all(math.isfinite(value) for value in step.values())
    after = model.generator_losses(batch_a, batch_b)
    for term in terms:
        assert after[term] < before[term], term


# --------------------------------------------------------------------------- (5) hyper-parameters


def test_defaults_are_the_papers_settings():
    for config in (Pix2PixConfig(), CycleGANConfig()):
        assert (config.learning_rate, config.beta1, config.epochs_constant, config.epochs_decay) == (
            2e-4,
            0.5,
            100,
            100,
        )
        assert (config.generator, config.residual_blocks, config.filters, config.norm) == ("resnet", 9, 64, "instance")
        assert (config.dropout, config.discriminator_layers, config.discriminator_filters) == (False, 3, 64)
    assert Pix2PixConfig().lambda_l1 == 100
    cyclegan = CycleGANConfig()
    assert (cyclegan.lambda_cycle, cyclegan.lambda_identity, cyclegan.pool_size) == (10, 0.5, 50)
    drit = DRITConfig()
    assert (drit.epochs, drit.decay_start_epoch, drit.discriminator_norm, drit.discriminator_scales) == (
        1200,
        600,
        "none",
        3,
    )
    assert (drit.learning_rate, drit.content_discriminator_learning_rate, drit.weight_decay) == (1e-4, 4e-5, 1e-4)
    weights = (
        drit.lambda_adversarial,
        drit.lambda_content_adversarial,
        drit.lambda_cross_cycle,
        drit.lambda_self_reconstruction,
        drit.lambda_kl_attribute,
        drit.lambda_kl_content,
        drit.lambda_latent_regression,
        drit.lambda_mode_seeking,
    )
    assert weights == (1, 1, 10, 10, 0.01, 0.01, 10, 1)


@pytest.mark.parametrize("config_class", [Pix2PixConfig, CycleGANConfig, DRITConfig])
def test_from_dict_round_trip_and_unknown_keys(config_class):
    config = config_class()
    assert config_class.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown .* key\\(s\\) 'learning_rat'; known: "):
        config_class.from_dict({"learning_rat": 1e-3})


@pytest.mark.parametrize(
    "config_class, key, value",
    [
        (Pix2PixConfig, "learning_rate", 0.0),
        (Pix2PixConfig, "learning_rate", float("nan")),
        (Pix2PixConfig, "beta1", 1.0),
        (Pix2PixConfig, "norm", "group"),
        (Pix2PixConfig, "generator", "unet_256"),
        (Pix2PixConfig, "direction", "AtoB"),
        (Pix2PixConfig, "lambda_l1", -1),
        (Pix2PixConfig, "residual_blocks", 2.5),
        (Pix2PixConfig, "filters", True),
        (Pix2PixConfig, "unet_downsamplings", 4),
        (Pix2PixConfig, "dropout", "yes"),
        (Pix2PixConfig, "gan_mode", "wgan"),
        (CycleGANConfig, "pool_size", -1),
        (CycleGANConfig, "lambda_identity", -0.5),
        (CycleGANConfig, "epochs_decay", -1),
        (DRITConfig, "discriminator_scales", 0),
        (DRITConfig, "discriminator_norm", "batch"),
        (DRITConfig, "weight_decay", -1e-4),
        (DRITConfig, "mode_seeking", 1),
        (DRITConfig, "decay_start_epoch", 1300),
        (DRITConfig, "content_discriminator_iterations", 0),
    ],
)
def test_bad_hyper_parameters_are_rejected_naming_the_key(config_class, key, value):
    with pytest.raises(ValueError, match=key):
        config_class.from_dict({key: value})


def test_integers_are_accepted_for_floats():
    config = CycleGANConfig.from_dict({"lambda_cycle": 5, "learning_rate": 1})
    assert isinstance(config.lambda_cycle, float) and config.learning_rate == 1.0


def test_models_take_configs_as_mappings_or_dataclasses():
    assert tiny(Pix2Pix).config == Pix2PixConfig(**TINY[Pix2Pix])
    assert build_model("cyclegan", 3, 1, TINY[CycleGAN]).config == CycleGANConfig(**TINY[CycleGAN])
    with pytest.raises(ValueError, match="unknown translation method"):
        build_model("munit", 3, 1)
    with pytest.raises(ValueError, match="unknown Pix2PixConfig key"):
        Pix2Pix(3, 1, {"lambda_cycle": 10})
    with pytest.raises(ValueError, match="channels_b"):
        Pix2Pix(3, 0)


# --------------------------------------------------------------------------- (6) learning-rate schedule


def test_linear_decay_schedule_of_pix2pix_and_cyclegan():
    model = tiny(CycleGAN)
    expected = {0: 1.0, 50: 1.0, 99: 1.0, 100: 100 / 101, 150: 50 / 101, 199: 1 / 101, 200: 0.0}
    for epoch, factor in expected.items():
        assert linear_decay_factor(epoch, 100, 100) == pytest.approx(factor)
        model.set_epoch(epoch)
        for optimizer in model.optimizers.values():
            assert optimizer.param_groups[0]["lr"] == pytest.approx(2e-4 * factor)
    assert model.epoch == 200
    with pytest.raises(ValueError, match="epoch"):
        model.set_epoch(201)


def test_drit_schedule():
    model = tiny(DRIT)
    expected = {0: 1.0, 600: 1.0, 601: 600 / 601, 900: 301 / 601, 1199: 2 / 601}
    for epoch, factor in expected.items():
        assert drit_decay_factor(epoch, 1200, 600) == pytest.approx(factor)
        model.set_epoch(epoch)
        assert model.optimizers["generator"].param_groups[0]["lr"] == pytest.approx(1e-4 * factor)
        assert model.optimizers["content_discriminator"].param_groups[0]["lr"] == pytest.approx(4e-5 * factor)


def test_drit_content_discriminator_iterations_follow_the_published_loop():
    model = tiny(DRIT)
    full = [it for it in range(10) if model.updates_all_networks(it, iterations_per_epoch=10)]
    assert full == [2, 5, 8, 9]  # every third iteration and the last two of the epoch
    losses_ = model.content_discriminator_step(images(2, 3), images(2, 1))
    assert list(losses_) == ["content_discriminator"] and math.isfinite(losses_["content_discriminator"])


# --------------------------------------------------------------------------- (7) seeding


@pytest.mark.parametrize("cls", MODELS)
def test_same_seed_gives_identical_weights_and_translations(cls):
    first, second, other = tiny(cls, seed=5), tiny(cls, seed=5), tiny(cls, seed=6)
    for name, network in first.networks.items():
        for (key, value), other_value in zip(network.state_dict().items(), second.networks[name].state_dict().values()):
            assert torch.equal(value, other_value), (name, key)
    assert any(
        not torch.equal(p, q)
        for name in first.networks
        for p, q in zip(first.networks[name].parameters(), other.networks[name].parameters())
    )
    x = images(2, 3)
    assert torch.equal(translate(first, x), translate(second, x))
    state = torch.random.get_rng_state()
    tiny(cls, seed=7)
    assert torch.equal(torch.random.get_rng_state(), state)  # construction leaves the global generator alone


@pytest.mark.parametrize("cls", [CycleGAN, DRIT])
def test_same_seed_gives_identical_training(cls):
    # CycleGAN's pools and DRIT's noise, samples and random codes draw from seeded generators.
    batch_a, batch_b = images(2, 3), images(2, 1)
    runs = []
    for _ in range(2):
        torch.manual_seed(123)  # the global generator differs between runs: it must not matter
        model = tiny(cls, seed=5)
        runs.append([model.training_step(batch_a, batch_b) for _ in range(2)])
        torch.manual_seed(456)
    assert runs[0] == runs[1]


def test_image_pool_is_deterministic_for_a_seed():
    batches = [torch.full((3, 1, 2, 2), float(i)) for i in range(6)]
    outputs = []
    for _ in range(2):
        pool = ImagePool(size=4, seed=11)
        outputs.append([pool.query(batch)[:, 0, 0, 0].tolist() for batch in batches])
    assert outputs[0] == outputs[1]
    assert outputs[0][0] == [0.0, 0.0, 0.0]  # the pool fills up first
    assert any(value < i for i, values in enumerate(outputs[0]) for value in values)  # older images come back
    assert ImagePool(size=0, seed=0).query(batches[1]) is batches[1]


# --------------------------------------------------------------------------- (8) state


@pytest.mark.parametrize("cls", MODELS)
def test_state_dict_round_trip_resumes_exactly(cls):
    batch_a, batch_b = images(2, 3), images(2, 1)
    model = tiny(cls, seed=3)
    model.training_step(batch_a, batch_b)
    model.set_epoch(150 if cls is not DRIT else 700)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    restored = tiny(cls, seed=99)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert restored.epoch == model.epoch
    assert restored.optimizers.keys() == model.optimizers.keys()
    for name, optimizer in model.optimizers.items():
        assert restored.optimizers[name].param_groups[0]["lr"] == optimizer.param_groups[0]["lr"]
    assert torch.equal(translate(restored, batch_a), translate(model, batch_a))
    assert restored.training_step(batch_a, batch_b) == model.training_step(batch_a, batch_b)


def test_state_of_another_model_is_rejected():
    state = tiny(CycleGAN).state_dict()
    with pytest.raises(ValueError, match="config"):
        tiny(CycleGAN, pool_size=3).load_state_dict(state)
    with pytest.raises(ValueError, match="channels"):
        tiny(CycleGAN, channels_b=3).load_state_dict(state)
    with pytest.raises(ValueError, match="method"):
        tiny(Pix2Pix).load_state_dict(state)


# --------------------------------------------------------------------------- (9) mixed precision


@pytest.mark.parametrize("cls", MODELS)
def test_bfloat16_autocast_trains_on_cpu_with_finite_losses(cls):
    model = tiny(cls, mixed_precision=True)
    assert not model.scaler.is_enabled()  # bfloat16 needs no loss scaling
    generator_name = {Pix2Pix: "generator", CycleGAN: "generator_a2b", DRIT: "generator"}[cls]
    dtypes = []
    hook = model.networks[generator_name].register_forward_hook(lambda module, args, out: dtypes.append(out.dtype))
    try:
        step = model.training_step(images(2, 3), images(2, 1))
    finally:
        hook.remove()
    assert dtypes and set(dtypes) == {torch.bfloat16}  # the networks ran under autocast
    assert all(math.isfinite(value) for value in step.values())
    out = translate(model, images(1, 3))
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


# --------------------------------------------------------------------------- method specifics


def test_cyclegan_identity_loss_only_with_equal_channel_counts():
    batch_a = images(2, 3)
    different = tiny(CycleGAN, 3, 1)
    assert not different.identity_active
    assert "identity_a" not in different.training_step(batch_a, images(2, 1))
    same = tiny(CycleGAN, 3, 3)
    assert same.identity_active
    step = same.training_step(batch_a, images(2, 3))
    assert step["identity_a"] > 0 and step["identity_b"] > 0
    assert not tiny(CycleGAN, 3, 3, lambda_identity=0).identity_active


def test_pix2pix_is_conditional_and_one_directional():
    model = tiny(Pix2Pix, direction="b2a", generator="unet", unet_downsamplings=5, filters=4)
    assert model.networks["discriminator"].model[0].in_channels == 3 + 1  # source and target concatenated
    out = model.translate(images(1, 1, size=40), "b2a")
    assert out.shape == (1, 3, 40, 40)
    with pytest.raises(ValueError, match="b2a only"):
        model.translate(images(1, 3), "a2b")


def test_drit_translation_uses_the_partners_attribute_code():
    model = tiny(DRIT)
    x = images(2, 3)
    partner_1, partner_2 = images(1, 1, seed=4), images(1, 1, seed=5) * 0.2
    first, second = model.translate(x, "a2b", partner=partner_1), model.translate(x, "a2b", partner=partner_2)
    assert not torch.equal(first, second)
    assert torch.equal(first, model.translate(x, "a2b", partner=partner_1))  # the mean code: deterministic
    both = model.translate(x, "a2b", partner=torch.cat([partner_1, partner_2]))
    assert torch.allclose(both[0], first[0], atol=1e-6) and torch.allclose(both[1], second[1], atol=1e-6)
    with pytest.raises(ValueError, match="partner"):
        model.translate(x, "a2b")
    with pytest.raises(ValueError, match="even number"):
        model.training_step(images(3, 3), images(3, 1))


def test_inputs_are_clipped_to_the_unit_range():
    model = tiny(CycleGAN)
    beyond = images(1, 3) * 1.5 - 0.25
    assert torch.equal(model.translate(beyond, "a2b"), model.translate(beyond.clamp(0, 1), "a2b"))
    assert torch.equal(
        model.translate(torch.full((1, 3, 32, 32), 2.0), "a2b"), model.translate(torch.ones(1, 3, 32, 32), "a2b")
    )


def test_training_batches_are_checked():
    model = tiny(CycleGAN)
    with pytest.raises(ValueError, match="multiples of 4"):
        model.training_step(images(2, 3, size=30), images(2, 1, size=30))
    with pytest.raises(ValueError, match="domain B"):
        model.training_step(images(2, 3), images(2, 3))
    with pytest.raises(ValueError, match="as many images"):
        model.training_step(images(2, 3), images(1, 1))
    with pytest.raises(ValueError, match="direction"):
        model.translate(images(1, 3), "AtoB")
