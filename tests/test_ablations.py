"""Ablation switches and training options: each does what it says and is off by default.

The switches of richer CoMIRs, and the options for better CoMIRs on a CPU budget (stain
normalisation, learning-rate schedule).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from comir.config.schema import section_defaults
from comir.imaging.preprocess import prepare_modality_image
from comir.imaging.stain import HED_FROM_RGB, macenko_normalize, macenko_stains
from comir.inference.engines import inference_network
from comir.inference.tiling import compute_comir
from comir.network.model import InputFilters, Tiramisu, TiramisuConfig, required_margin
from comir.training.ablations import derived_view, network_inputs, share_blocks, third_network, unique_parameters
from comir.training.augment import elastic_pairs, stain_jitter
from comir.training.loop import build_models, train
from comir.training.loss import (
    activation_decay,
    highpass,
    info_nce,
    self_similarity,
    self_similarity_loss,
    structure_penalty,
)
from comir.training.objective import contrastive_loss
from comir.training.sampler import PatchSampler
from comir.training.settings import TrainingConfig, learning_rate_at
from helpers.registration_cases import he_shg_scene
from helpers.training import TINY, structured_pair

RAMP = torch.arange(16.0).repeat(16, 1)[None, None]  # x increases by 1 per pixel


def test_input_filters_compute_gradients_of_the_channel_mean():
    filters = InputFilters(("sobel", "grad_x", "grad_y", "laplacian"))
    out = filters(torch.cat([RAMP, 3 * RAMP], dim=1))  # channel mean = 2 x
    assert out.shape == (1, 6, 16, 16)
    interior = (slice(None), slice(None), slice(1, -1), slice(1, -1))
    torch.testing.assert_close(out[:, 2:3][interior], torch.full((1, 1, 14, 14), 2.0))  # |grad| of 2x
    torch.testing.assert_close(out[:, 3:4][interior], torch.full((1, 1, 14, 14), 2.0))  # d/dx
    torch.testing.assert_close(out[:, 4:5][interior], torch.zeros(1, 1, 14, 14))  # d/dy
    torch.testing.assert_close(out[:, 5:6][interior], torch.zeros(1, 1, 14, 14))  # a ramp has no curvature


def test_a_network_with_input_filters_tiles_exactly_and_exports_to_onnx():
    config = dataclasses.replace(TINY, input_filters=("sobel", "laplacian"))
    plain, filtered = Tiramisu(TINY), Tiramisu(config)
    assert plain.input_filters is None and filtered.first_conv.in_channels == 3
    assert required_margin(config) >= required_margin(TINY)
    assert set(plain.state_dict()) == set(filtered.state_dict())  # fixed filters are no parameters
    image = np.random.default_rng(0).random((1, 100, 90), dtype=np.float32)
    whole = compute_comir(filtered, image, tile=512)
    tiled = compute_comir(filtered, image, tile=32)
    np.testing.assert_allclose(tiled, whole, atol=1e-5)
    onnx = compute_comir(inference_network(filtered, "onnxruntime", "cpu"), image, tile=512)
    np.testing.assert_allclose(onnx, whole, atol=1e-4)
    with pytest.raises(ValueError, match="input_filters"):
        TiramisuConfig(in_channels=1, out_channels=1, input_filters=("edges",))


def outputs_pair(seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(6, 1, 24, 24, generator=generator) for _ in range(2)]


def test_the_highpass_critic_ignores_what_is_smooth():
    outputs = [torch.randn(2, 1, 64, 64, generator=torch.Generator().manual_seed(seed)) for seed in (0, 1)]
    shifted = [outputs[0] + 5.0 * torch.linspace(0, 1, 64).view(1, 1, 1, 64), outputs[1]]  # a smooth ramp added
    passed, passed_shifted = highpass(outputs, 4.0), highpass(shifted, 4.0)
    ramp_left = (passed_shifted[0] - passed[0])[..., 16:-16, 16:-16]  # away from the reflected border
    assert ramp_left.abs().max() < 1e-4  # a linear ramp is all low-pass
    assert info_nce(highpass(outputs, 2.0)) != pytest.approx(info_nce(outputs).item())
    constant = [torch.full((2, 1, 16, 16), 3.0)]
    torch.testing.assert_close(highpass(constant, 2.0)[0], torch.zeros(2, 1, 16, 16), atol=1e-5, rtol=0)


def test_structure_penalties_measure_roughness_and_edge_disagreement():
    flat = [torch.ones(2, 1, 8, 8), torch.ones(2, 1, 8, 8)]
    assert structure_penalty(flat, "tv").item() == 0.0
    assert structure_penalty([RAMP, RAMP], "tv").item() == pytest.approx(0.5)  # |dx| = 1, |dy| = 0
    assert structure_penalty([RAMP, RAMP], "gradient").item() == 0.0  # the same edges
    assert structure_penalty([RAMP, -RAMP], "gradient").item() == pytest.approx(2.0)  # (1 - (-1))^2 / 2
    with pytest.raises(ValueError, match="structure penalty"):
        structure_penalty(flat, "laplace")


def test_the_self_similarity_descriptor_ignores_intensity_and_the_loss_compares_structure():
    image = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(self_similarity(3.0 * image - 1.0, 2), self_similarity(image, 2), atol=1e-5, rtol=1e-4)
    assert self_similarity(image, 2).shape == (2, 8, 32, 32)
    assert self_similarity_loss([image], [7.0 * image + 2.0], 2).item() < 1e-4
    unrelated = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(2))
    assert self_similarity_loss([image], [unrelated], 2).item() > 0.05


def test_elastic_deformation_moves_both_modalities_alike_and_only_when_drawn():
    rng = np.random.default_rng(0)
    ramp = np.tile(np.arange(48, dtype=np.float32), (48, 1))[None, None].repeat(4, axis=0)
    a, b = elastic_pairs(ramp, 2 * ramp, {"probability": 1.0, "alpha": 3.0, "sigma": 6.0}, rng)
    np.testing.assert_allclose(b, 2 * a, atol=1e-4)  # one field for both
    moved = np.abs(a - ramp)[..., 4:-4, 4:-4]
    assert 0.5 < moved.max() <= 3.0 + 1e-3  # displacements up to alpha px of a slope-1 ramp
    same = elastic_pairs(ramp, ramp, {"probability": 0.0, "alpha": 3.0, "sigma": 6.0}, rng)
    np.testing.assert_array_equal(same[0], ramp)


def test_the_sampler_draws_the_same_patches_without_the_elastic_switch():
    image = np.random.default_rng(0).random((1, 100, 100), dtype=np.float32)
    plain = PatchSampler([(image, image)], 32, True, True).sample(np.random.default_rng(3), 4)
    off = PatchSampler([(image, image)], 32, True, True, elastic={}).sample(np.random.default_rng(3), 4)
    on = PatchSampler([(image, image)], 32, True, True, elastic={"probability": 1.0, "alpha": 2.0, "sigma": 4.0})
    deformed = on.sample(np.random.default_rng(3), 4)
    np.testing.assert_array_equal(off[0], plain[0])
    assert not np.allclose(deformed[0], plain[0])
    np.testing.assert_array_equal(deformed[0], deformed[1])  # the same image in both slots stays the same


def test_shared_blocks_are_one_set_of_parameters_that_both_modalities_train(tmp_path):
    models = build_models({"A": TINY, "B": TINY}, seed=0)
    total = len(unique_parameters(models))
    share_blocks(models, 1)
    a, b = models["A"], models["B"]
    assert b.down_blocks[0] is a.down_blocks[0] and b.transitions_down[0] is a.transitions_down[0]
    assert b.first_conv is not a.first_conv and b.down_blocks[1] is not a.down_blocks[1]
    shared = len(list(a.down_blocks[0].parameters())) + len(list(a.transitions_down[0].parameters()))
    assert len(unique_parameters(models)) == total - shared
    with pytest.raises(ValueError, match="shared_blocks is 3"):
        share_blocks(build_models({"A": TINY, "B": TINY}, seed=0), 3)
    pairs = [structured_pair(i, 64) for i in range(2)]
    cfg = TrainingConfig(epochs=1, steps_per_epoch=2, batch_size=4, patch_size=32, device="cpu", shared_blocks=1,
                         validation_batches=1, seed=0)  # fmt: skip
    models = build_models({"A": TINY, "B": TINY}, seed=0)
    train(models, pairs[:1], pairs[1:], cfg)
    states = [models[slot].state_dict() for slot in ("A", "B")]
    for key in (k for k in states[0] if k.startswith(("down_blocks.0.", "transitions_down.0."))):
        torch.testing.assert_close(states[0][key], states[1][key])
    assert not torch.equal(states[0]["first_conv.weight"], states[1]["first_conv.weight"])


def test_every_switch_is_off_by_default_and_changes_the_loss_when_on():
    defaults = section_defaults("training")
    switches = {"elastic", "structure_penalty", "self_similarity", "third_view", "critic_highpass_sigma"}
    switches.add("shared_blocks")
    assert not switches & set(defaults)  # absent unless configured: existing runs keep their parameters
    cfg = TrainingConfig()
    assert (cfg.elastic, cfg.critic_highpass_sigma, cfg.structure_penalty, cfg.self_similarity, cfg.shared_blocks) == (
        {}, None, {}, {}, 0)  # fmt: skip
    assert "input_filters" not in section_defaults("model")
    outputs = outputs_pair()
    inputs = [torch.rand(6, 1, 24, 24, generator=torch.Generator().manual_seed(5)) for _ in range(2)]
    base = contrastive_loss(outputs, cfg, inputs).item()
    expected = info_nce(outputs) + activation_decay(outputs, cfg.l1_activation, cfg.l2_activation)
    assert base == pytest.approx(expected.item())
    switches = [
        {"critic_highpass_sigma": 2.0},
        {"structure_penalty": {"kind": "tv", "weight": 0.5}},
        {"structure_penalty": {"kind": "gradient", "weight": 0.5}},
        {"self_similarity": {"weight": 1.0, "radius": 2}},
    ]
    for switch in switches:
        assert contrastive_loss(outputs, dataclasses.replace(cfg, **switch), inputs).item() != pytest.approx(base)
    with pytest.raises(ValueError, match="needs the networks' inputs"):
        contrastive_loss(outputs, dataclasses.replace(cfg, self_similarity={"weight": 1.0, "radius": 2}))


def test_a_third_view_adds_a_third_network_to_the_loss_but_not_to_the_model():
    rgb = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 0.8 + 0.1
    torch.testing.assert_close(derived_view(rgb, "grey"), rgb.mean(dim=1, keepdim=True))
    haematoxylin = derived_view(rgb, "haematoxylin")
    density = -torch.log(rgb)
    expected = torch.einsum("nchw,c->nhw", density, torch.as_tensor(HED_FROM_RGB[:, 0], dtype=torch.float32))
    torch.testing.assert_close(haematoxylin[:, 0], expected)
    assert derived_view(RAMP, "sobel").shape == (1, 1, 16, 16)
    with pytest.raises(ValueError, match="third view"):
        derived_view(rgb, "eosin")
    cfg = TrainingConfig(epochs=1, steps_per_epoch=2, batch_size=4, patch_size=32, device="cpu", validation_batches=1,
                         third_view={"from": "A", "view": "sobel"})  # fmt: skip
    models = build_models({"A": TINY, "B": TINY}, seed=0)
    networks = third_network(models, cfg)
    assert list(networks) == ["A", "B", "C"] and networks["C"].config.in_channels == 1
    assert len(network_inputs([rgb[:, :1], rgb[:, 1:2]], cfg)) == 3
    assert list(third_network(models, TrainingConfig())) == ["A", "B"]
    pairs = [structured_pair(i, 64) for i in range(2)]
    history = train(models, pairs[:1], pairs[1:], cfg)
    assert np.isfinite(history["val_loss"]).all() and list(models) == ["A", "B"]  # the caller's networks only


def test_stain_normalisation_undoes_a_change_of_stain_strength():
    rgb = np.asarray(he_shg_scene(256, 0)["rgb"])
    # Haematoxylin 1.5 times, eosin 0.6 times as strong: the same tissue, stained differently.
    restained = np.moveaxis(stain_jitter(np.moveaxis(rgb, -1, 0)[None], np.array([[1.5, 0.6, 1.0]]),
                                         np.zeros((1, 3))), 1, -1)[0]  # fmt: skip
    before = np.abs(rgb - restained).mean()
    after = np.abs(macenko_normalize(rgb) - macenko_normalize(restained)).mean()
    assert after < before / 5
    stains, _ = macenko_stains(rgb)
    assert stains[0, 0] > stains[0, 1]  # haematoxylin first: more red absorbed
    blank = np.ones((32, 32, 3), np.float32)
    np.testing.assert_array_equal(macenko_normalize(blank), blank)  # no tissue: left as it is
    plain = prepare_modality_image(rgb, {"channels": 3}, "rgb")
    normalized = prepare_modality_image(rgb, {"channels": 3, "stain_normalization": "macenko"}, "rgb")
    np.testing.assert_allclose(normalized, np.moveaxis(macenko_normalize(rgb), -1, 0))
    assert not np.allclose(plain, normalized)
    with pytest.raises(ValueError, match="RGB image"):
        macenko_normalize(rgb[..., 0])


def test_the_learning_rate_schedule_warms_up_and_decays_and_is_constant_by_default():
    constant = TrainingConfig(learning_rate=0.01, epochs=2, steps_per_epoch=10)
    assert [learning_rate_at(step, constant) for step in (0, 7, 19)] == [0.01, 0.01, 0.01]
    cosine = dataclasses.replace(constant, learning_rate_schedule="cosine", warmup_steps=4)
    rates = [learning_rate_at(step, cosine) for step in range(20)]
    assert rates[:4] == pytest.approx([0.002, 0.004, 0.006, 0.008])  # linear warm-up
    assert rates[4] == pytest.approx(0.01) and rates[-1] < 0.001  # then half a cosine towards 0
    assert all(a >= b for a, b in zip(rates[4:], rates[5:]))
    assert "learning_rate_schedule" not in section_defaults("training")
