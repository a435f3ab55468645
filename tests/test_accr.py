"""ACCR (docs/explanation/accr.md): the model, its training, the registration method and the attention figure.

The model's shapes and parameters, its attention's symmetry, its geometry against the project's conventions,
stage-2 training (it learns, reproducibly), the method's results and failures. Tiny networks and 32-64 px
textures on the CPU, seconds each.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import math
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import tifffile
import torch
from scipy import ndimage

import comir.register.accr as accr_method
from comir import geometry as g
from comir.__main__ import main
from comir.apply.folder import register_batch
from comir.deformation.affine import affine_to_field
from comir.deformation.fields import sample_field
from comir.deformation.sitk import read_field
from comir.deformation.warp import inside_mask, warp_image
from comir.evaluate.attention import plot_attention
from comir.network import precision
from comir.network.accr.attention import INITIAL_SCALE, CosineMatching, CrossAttention
from comir.network.accr.checkpoint import load_accr, save_accr
from comir.network.accr.geometry import (
    consensus_start,
    fit_matrix,
    local_soft_argmax,
    matrix_params,
    pixel_grid,
    robust_fit,
    sample_at,
    token_centres,
    transform_points,
)
from comir.network.accr.model import ACCRConfig, ACCRNet
from comir.network.checkpoint import save_checkpoint
from comir.network.model import Tiramisu, count_parameters
from comir.register import make_method, with_model
from comir.register.accr import ACCRRegistration
from comir.register.base import RegistrationResult
from comir.training.accr import (
    HeadTrainingConfig,
    assignment_entropy,
    build_accr,
    check_head_settings,
    corner_distance,
    head_losses,
    moved_pairs,
    random_deformations,
    random_transforms,
    train_registration_head,
    transform_margin,
)
from comir.training.sampler import PatchSampler
from helpers.registration_cases import pair_error, texture
from helpers.training import TINY

# The tiny problem: 32 px patches of 4 px tokens (8 x 8), floating tokens every 2 px; shifts up to 4 px and
# rotations up to 4 degrees (the identity's corner error is about 2.8 px).
SMALL = ACCRConfig(patch=4, key_stride=2, embed_dim=16, heads=2)
TRAINING = HeadTrainingConfig(
    steps=100, batch_size=8, patch_size=32, max_angle_deg=4.0, max_shift_px=4.0, rotation=False, flips=False,
    learning_rate=1e-2, seed=0,
)  # fmt: skip


def source_image() -> np.ndarray:
    """A 96 px texture, lightly smoothed: structure at the scale of a 4 px token."""
    return ndimage.gaussian_filter(texture(96, seed=3), 1.0).astype(np.float32)


def one_encoder_model(config: ACCRConfig = SMALL, seed: int = 0) -> ACCRNet:
    """A frozen random encoder for both slots: the CoMIRs of an ideal stage 1 (equal for equal content)."""
    torch.manual_seed(seed)
    encoder = Tiramisu(TINY)
    return ACCRNet(config, {"A": encoder, "B": encoder})


def evaluation_error(model: ACCRNet, pairs, cfg: HeadTrainingConfig) -> float:
    """Mean corner error (px) on 16 fixed crops of the training pairs moved by 16 fixed random transforms."""
    margin = transform_margin(cfg)
    sampler = PatchSampler(pairs, cfg.patch_size + 2 * margin, False, False)
    arrays = sampler.sample(np.random.default_rng(123), 16, augment=False)
    truth = random_transforms(np.random.default_rng(99), 16, cfg.patch_size, cfg, model.config.transform)
    reference, floating = moved_pairs(arrays, "A", truth, margin, torch.device("cpu"))
    with torch.no_grad():
        output = model.eval()(reference, floating, "A")
    size = cfg.patch_size
    return float(corner_distance(output.matrix, torch.as_tensor(truth, dtype=torch.float32), size, size).mean())


@pytest.fixture(scope="module")
def trained():
    """The tiny problem's model before and after stage 2 (errors), and the trained model."""
    image = source_image()[None]
    pairs = [(image, image.copy())]
    model = one_encoder_model()
    before = evaluation_error(model, pairs, TRAINING)
    history = train_registration_head(model, pairs, TRAINING)
    return {"model": model, "before": before, "after": evaluation_error(model, pairs, TRAINING), "history": history}


def moved_texture(matrix: np.ndarray, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """(reference, floating): the source's centre ``size`` px and the floating image ``matrix`` sends onto it."""
    source = source_image()
    offset = (source.shape[0] - size) // 2
    reference = source[offset : offset + size, offset : offset + size].copy()
    # Floating pixel p shows reference pixel M p, which is source pixel M p + offset.
    to_source = g.compose(g.rigid_matrix(0.0, offset, offset), matrix)
    floating = cv2.warpAffine(source, to_source, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    return reference, floating


# A known transform of a 32 px pair (the training's size), and of a 64 px pair twice as large.
ROOT = Path(__file__).resolve().parents[1]
TRUTH = g.rigid_matrix(math.radians(3.0), 3.0, -2.5, center=(15.5, 15.5))
TRUTH_64 = g.rigid_matrix(math.radians(3.0), 6.0, -5.0, center=(31.5, 31.5))


# --------------------------------------------------------------------------- the model


def test_shapes_and_parameter_counts():
    rgb = dataclasses.replace(TINY, in_channels=3)
    config = dataclasses.replace(SMALL, field=True)
    model = build_accr(config, {"A": TINY, "B": rgb}, seed=0)
    assert model.multiple == 4
    encoders = count_parameters(model.encoders["A"]) + count_parameters(model.encoders["B"])
    assert count_parameters(model) == encoders + config.parameter_count(channels=1) == encoders + 2_515
    assert sum(p.numel() for p in model.head_parameters()) == config.parameter_count(channels=1)
    # Shared blocks are one set of parameters: the first down block and transition counted once.
    shared = build_accr(config, {"A": TINY, "B": rgb}, seed=0, shared_blocks=1)
    encoder = shared.encoders["A"]
    block = count_parameters(encoder.down_blocks[0]) + count_parameters(encoder.transitions_down[0])
    assert count_parameters(shared) == count_parameters(model) - block

    reference, floating = torch.rand(2, 1, 32, 32), torch.rand(2, 3, 48, 32)
    with torch.no_grad():
        output = model(reference, floating, "A")
    keys = ((48 - 4) // 2 + 1) * ((32 - 4) // 2 + 1)  # floating tokens every 2 px
    assert output.reference_grid == (8, 8) and output.floating_grid == (23, 15)
    assert output.matrix.shape == (2, 2, 3) and output.params.shape == (2, 3)
    assert output.attention.shape == (2, 2, 64, keys)
    torch.testing.assert_close(output.attention.sum(-1), torch.ones(2, 2, 64))
    assert output.correspondences.shape == (2, 64, 2) and output.confidence.shape == (2, 64)
    assert output.coarse_field.shape == (2, 8, 8, 2) and output.field.shape == (2, 32, 32, 2)
    assert [c.shape for c in output.representations] == [(2, 1, 32, 32), (2, 1, 48, 32)]
    # The parameters are those of the matrix: (angle, tx, ty) of a rotation about the origin.
    for matrix, (angle, tx, ty) in zip(output.matrix.double().numpy(), output.params.double().numpy()):
        np.testing.assert_allclose(matrix, g.rigid_matrix(angle, tx, ty), atol=1e-5)
    affine = build_accr(dataclasses.replace(SMALL, transform="affine"), {"A": TINY, "B": TINY}, seed=0)
    with torch.no_grad():
        assert affine(reference, reference, "B").params.shape == (2, 6)
    with pytest.raises(ValueError, match="divisible by 4"):
        model(torch.rand(1, 1, 30, 32), torch.rand(1, 3, 32, 32))
    with pytest.raises(ValueError, match="key_stride 3 must divide patch 4"):
        ACCRConfig(patch=4, key_stride=3)


def test_cross_attention_is_permutation_equivariant():
    torch.manual_seed(0)
    attention = CrossAttention(16, 4)
    with torch.no_grad():  # away from the identity initialisation: any weights must do
        for parameter in attention.parameters():
            parameter.normal_(0.0, 0.5)
    queries, keys = torch.randn(2, 7, 16), torch.randn(2, 11, 16)
    ignored = torch.zeros(2, 11, dtype=torch.bool)
    ignored[:, 3] = True
    output, weights = attention(queries, keys, ignored)
    assert weights.shape == (2, 4, 7, 11) and torch.all(weights[..., 3] == 0)
    keys_order, query_order = torch.randperm(11), torch.randperm(7)
    permuted, permuted_weights = attention(queries, keys[:, keys_order], ignored[:, keys_order])
    torch.testing.assert_close(permuted, output)
    torch.testing.assert_close(permuted_weights, weights[..., keys_order])
    permuted, permuted_weights = attention(queries[:, query_order], keys, ignored)
    torch.testing.assert_close(permuted, output[:, query_order])
    torch.testing.assert_close(permuted_weights, weights[:, :, query_order])


def test_without_attention_the_weights_are_the_softmax_of_the_plain_cosines(tmp_path):
    torch.manual_seed(1)
    queries, keys = torch.randn(2, 5, 8), torch.randn(2, 9, 8)
    ignored = torch.zeros(2, 9, dtype=torch.bool)
    ignored[1, 4] = True
    output, weights = CosineMatching()(queries, keys, ignored)
    assert output is queries and weights.shape == (2, 1, 5, 9)
    # The direct formula, in float64: softmax over the (kept) keys of 10 x cos(query, key).
    q, k = queries.double().numpy(), keys.double().numpy()
    q, k = q / np.linalg.norm(q, axis=-1, keepdims=True), k / np.linalg.norm(k, axis=-1, keepdims=True)
    cosines = np.einsum("nqd,nkd->nqk", q, k)
    logits = np.where(ignored.numpy()[:, None, :], -np.inf, INITIAL_SCALE * cosines)
    expected = np.exp(logits - logits.max(-1, keepdims=True))
    expected /= expected.sum(-1, keepdims=True)
    np.testing.assert_allclose(weights[:, 0].double().numpy(), expected, atol=1e-6)
    # No parameters: stage 2 trains the embedding and the confidence only; heads then need not divide embed_dim.
    config = dataclasses.replace(SMALL, attention=False, heads=3)
    model = build_accr(config, {"A": TINY, "B": TINY}, seed=0)
    assert not list(model.attention.parameters())
    assert sum(p.numel() for p in model.head_parameters()) == config.parameter_count(channels=1) == 2_515 - 1_154
    with torch.no_grad():
        assert model(torch.rand(1, 1, 32, 32), torch.rand(1, 1, 32, 32)).attention.shape == (1, 1, 64, 225)
    save_accr(tmp_path / "accr.pt", model)
    assert isinstance(load_accr(tmp_path / "accr.pt")[0].attention, CosineMatching)


def test_fit_is_the_geometry_fit_and_the_identity_for_coincident_points():
    rng = np.random.default_rng(0)
    source = rng.uniform(0, 60, (2, 25, 2))
    truth = {"rigid": g.rigid_matrix(0.3, 4.0, -2.0), "affine": np.array([[1.1, 0.2, 3.0], [-0.1, 0.9, -5.0]])}
    for kind, matrix in truth.items():
        target = g.apply(matrix, source) + rng.normal(0, 0.5, source.shape)
        fitted = fit_matrix(*(torch.as_tensor(a) for a in (source, target, np.ones((2, 25)))), kind).numpy()
        for k in range(2):
            np.testing.assert_allclose(fitted[k], g.fit_transform(kind, source[k], target[k]), atol=1e-4)
        # Integer weights count a point that many times.
        weights = rng.integers(1, 4, (2, 25))
        fitted = fit_matrix(*(torch.as_tensor(a) for a in (source, target, weights.astype(float))), kind).numpy()
        repeated = [np.repeat(points[0], weights[0], axis=0) for points in (source, target)]
        np.testing.assert_allclose(fitted[0], g.fit_transform(kind, *repeated), atol=1e-4)
        # All correspondences at one point: a translation, no rotation, and gradients that exist.
        collapsed = torch.full((1, 25, 2), 10.0, requires_grad=True)
        fitted = fit_matrix(collapsed, torch.as_tensor(source[:1]), torch.ones(1, 25), kind)
        np.testing.assert_allclose(fitted[0, :, :2].detach().numpy(), np.eye(2), atol=1e-6)
        fitted.sum().backward()
        assert torch.isfinite(collapsed.grad).all()
    # A fifth of the correspondences 20-40 px off: the reweighted fit stays within half a pixel, the plain one does not.
    target = g.apply(truth["rigid"], source[:1])
    target[0, :5] += rng.uniform(20, 40, (5, 2))
    points = (torch.as_tensor(source[:1]), torch.as_tensor(target), torch.ones(1, 25, dtype=torch.float64))
    plain, robust = fit_matrix(*points, "rigid")[0].numpy(), robust_fit(*points, "rigid", scale=4.0)[0].numpy()
    assert g.corner_error(plain, truth["rigid"], 64, 64) > 5.0
    assert g.corner_error(robust, truth["rigid"], 64, 64) < 0.5
    # The head's parameters of a matrix: (angle, tx, ty) or the six entries; no third kind.
    matrices = torch.as_tensor(np.stack([truth["rigid"], truth["affine"]]))
    np.testing.assert_allclose(matrix_params(matrices[:1], "rigid").numpy(), [[0.3, 4.0, -2.0]], atol=1e-12)
    np.testing.assert_allclose(matrix_params(matrices, "affine").numpy(), matrices.reshape(2, 6).numpy())
    with pytest.raises(ValueError, match="transform must be one of"):
        matrix_params(matrices, "similarity")


def test_the_consensus_start_finds_the_transform_most_points_agree_with():
    rng = np.random.default_rng(4)
    truth = {"rigid": g.rigid_matrix(0.4, 6.0, -3.0), "affine": np.array([[1.1, 0.15, 3.0], [-0.1, 0.95, -5.0]])}
    # Four points in five (a rigid fit's two points per sample), one in two (an affine fit's three) anywhere
    # in the image: no other transform gathers as much weight.
    for (kind, matrix), share in zip(truth.items(), (0.8, 0.5)):
        source = rng.uniform(0, 64, (8, 40, 2))
        target = g.apply(matrix, source.reshape(-1, 2)).reshape(source.shape) + rng.normal(0, 0.2, source.shape)
        wrong = rng.random((8, 40)) < share
        target[wrong] = rng.uniform(0, 64, (int(wrong.sum()), 2))
        weights = torch.as_tensor(rng.uniform(0.5, 1.0, (8, 40)))
        points = torch.as_tensor(source), torch.as_tensor(target)
        start = consensus_start(*points, weights, kind, scale=2.0)
        assert torch.equal(start, consensus_start(*points, weights, kind, scale=2.0))  # one fixed stream
        refined = robust_fit(*points, weights, kind, 2.0, start).numpy()
        for k in range(8):
            # Direct: the start gathers at least the weight that the true transform gathers (its inliers).
            agreeing = [
                np.sum(weights[k].numpy() * (np.linalg.norm(g.apply(m, source[k]) - target[k], axis=1) <= 2.0))
                for m in (start[k].double().numpy(), matrix)
            ]
            assert agreeing[0] >= agreeing[1] - 1e-9
            assert g.corner_error(refined[k], matrix, 64, 64) < 0.6
        if kind == "rigid":  # the reweighted fit of all points, without the start, is pulled away
            plain = robust_fit(*points, weights, kind, 2.0).numpy()
            assert np.median([g.corner_error(m, matrix, 64, 64) for m in plain]) > 5.0
    with pytest.raises(ValueError, match="transform must be one of"):
        consensus_start(*points, weights, "projective", scale=2.0)


def test_the_correspondence_is_the_weighted_mean_near_the_most_attended_key():
    rng = np.random.default_rng(5)
    grid = (3, 4)
    positions = token_centres(grid, 2, 4)
    weights = torch.as_tensor(rng.random((2, 5, 12)), dtype=torch.float32).softmax(-1)
    np.testing.assert_allclose(local_soft_argmax(weights, positions, grid, None), weights @ positions, atol=1e-6)
    for radius in (0, 1):
        got = local_soft_argmax(weights, positions, grid, radius).numpy()
        for n in range(2):
            for q in range(5):
                w = weights[n, q].double().numpy()
                peak_row, peak_column = divmod(int(w.argmax()), grid[1])
                near = [k for k in range(12) if abs(k // 4 - peak_row) <= radius and abs(k % 4 - peak_column) <= radius]
                expected = (w[near, None] * positions.double().numpy()[near]).sum(0) / w[near].sum()
                np.testing.assert_allclose(got[n, q], expected, atol=1e-5)
    with pytest.raises(ValueError, match="match_radius must be >= 0"):
        ACCRConfig(match_radius=-1)


def test_each_stage_2_loss_is_its_direct_formula():
    model = one_encoder_model()
    image = source_image()[None]
    margin = transform_margin(TRAINING)
    arrays = PatchSampler([(image, image.copy())], 32 + 2 * margin, False, False).sample(
        np.random.default_rng(0), 2, augment=False
    )
    truth = random_transforms(np.random.default_rng(1), 2, 32, TRAINING, "rigid")
    reference, floating = moved_pairs(arrays, "A", truth, margin, torch.device("cpu"))
    with torch.no_grad():
        output = model(reference, floating, "A")
    losses = head_losses(output, torch.as_tensor(truth, dtype=torch.float32), TRAINING)
    # Where the truth puts each reference token's centre in the floating patch (4 px tokens, keys every 2 px).
    centres = token_centres(output.reference_grid, 4, 4).double().numpy()
    matches = np.stack([g.apply(g.invert(m), centres) for m in truth])
    inside = np.all((matches >= 0) & (matches <= 31), axis=-1)
    correspondences = output.correspondences.double().numpy()
    distances = np.linalg.norm(correspondences - matches, axis=-1)
    np.testing.assert_allclose(losses["match_px"].item(), distances[inside].mean(), rtol=1e-5)
    right = distances <= 4
    confidence = output.confidence.double().numpy()
    entropy = -(right * np.log(confidence) + (1 - right) * np.log(1 - confidence))
    np.testing.assert_allclose(losses["confidence"].item(), entropy[inside].mean(), rtol=1e-5)
    # The assignment: -sum_k t_k log p_k, t the bilinear weights of the true match on the key grid.
    probabilities = output.attention.double().mean(dim=1).numpy()
    rows, columns = output.floating_grid
    keys = token_centres(output.floating_grid, 2, 4).double().numpy()
    terms = []
    for n in range(2):
        for r in range(len(centres)):
            u, v = (matches[n, r] - 1.5) / 2
            if not (0 <= u <= columns - 1 and 0 <= v <= rows - 1):
                continue
            target = np.maximum(0, 1 - np.abs(keys[:, 0] - matches[n, r, 0]) / 2) * np.maximum(
                0, 1 - np.abs(keys[:, 1] - matches[n, r, 1]) / 2
            )
            terms.append(-np.sum(target * np.log(probabilities[n, r])))
    np.testing.assert_allclose(losses["assignment"].item(), np.mean(terms), rtol=1e-4)
    assert assignment_entropy(output, torch.as_tensor(matches, dtype=torch.float32), 4).item() == pytest.approx(
        np.mean(terms), rel=1e-4
    )
    # The support: the summed confidence of the tokens the matrix sends within a token of their correspondence.
    residuals = np.linalg.norm(
        transform_points(output.matrix, output.correspondences).double().numpy() - centres, axis=-1
    )
    np.testing.assert_allclose(output.support.numpy(), (confidence * (residuals <= 4)).sum(1), rtol=1e-5)


def test_a_deformed_reference_moves_the_true_matches_and_off_changes_nothing():
    cfg = dataclasses.replace(TRAINING, max_deformation_px=2.0, deformation_smoothness_px=16.0)
    margin = transform_margin(cfg)
    assert margin == transform_margin(TRAINING) + 2  # the deformed reference samples up to 2 px beyond its crop
    assert random_deformations(np.random.default_rng(0), 2, TRAINING) is None  # off: no draw at all
    fields = random_deformations(np.random.default_rng(0), 2, cfg)
    np.testing.assert_array_equal(fields, random_deformations(np.random.default_rng(0), 2, cfg))
    assert fields.shape == (2, 32, 32, 2) and 0 < np.abs(fields).max() <= 2.0
    image = source_image()[None]
    arrays = PatchSampler([(image, image.copy())], 32 + 2 * margin, False, False).sample(
        np.random.default_rng(0), 2, augment=False
    )
    truth = random_transforms(np.random.default_rng(1), 2, 32, cfg, "rigid")
    reference, floating = moved_pairs(arrays, "A", truth, margin, torch.device("cpu"), fields)
    # Reference pixel q shows the patch at q + d(q) (bilinear), the floating patch is moved as before.
    for n in range(2):
        rows, columns = np.indices((32, 32), dtype=np.float64)
        where = [rows + fields[n, ..., 1] + margin, columns + fields[n, ..., 0] + margin]
        expected = ndimage.map_coordinates(arrays[0][n, 0].astype(np.float64), where, order=1)
        np.testing.assert_allclose(reference[n, 0].numpy(), expected, atol=1e-5)
    plain_reference, plain_floating = moved_pairs(arrays, "A", truth, margin, torch.device("cpu"))
    assert torch.equal(floating, plain_floating) and not torch.allclose(reference, plain_reference)
    model = one_encoder_model(dataclasses.replace(SMALL, field=True))
    with torch.no_grad():
        output = model(reference, floating, "A")
    deformation = torch.as_tensor(fields)
    losses = head_losses(output, torch.as_tensor(truth, dtype=torch.float32), cfg, deformation)
    # Each token centre's true match: truth^-1 (q + d(q)), d bilinear at q; the field's truth likewise per pixel.
    centres = token_centres(output.reference_grid, 4, 4).double().numpy()
    matches, true_positions = [], []
    x, y = np.meshgrid(np.arange(32.0), np.arange(32.0))
    for n in range(2):
        moved = centres + sample_field(fields[n], centres[:, 0], centres[:, 1])
        matches.append(g.apply(g.invert(truth[n]), moved))
        pixels = np.stack([x, y], -1).reshape(-1, 2) + fields[n].reshape(-1, 2)
        true_positions.append(g.apply(g.invert(truth[n]), pixels).reshape(32, 32, 2))
    matches = np.stack(matches)
    inside = np.all((matches >= 0) & (matches <= 31), axis=-1)
    distances = np.linalg.norm(output.correspondences.double().numpy() - matches, axis=-1)
    np.testing.assert_allclose(losses["match_px"].item(), distances[inside].mean(), rtol=1e-5)
    estimated = np.stack([x, y], -1) + output.field.double().numpy()
    endpoint = np.linalg.norm(estimated - np.stack(true_positions), axis=-1).mean()
    np.testing.assert_allclose(losses["field_px"].item(), endpoint, rtol=1e-5)
    # A zero deformation gives exactly the losses without one: off leaves the training as it was.
    without = head_losses(output, torch.as_tensor(truth, dtype=torch.float32), cfg)
    zero = head_losses(output, torch.as_tensor(truth, dtype=torch.float32), cfg, torch.zeros_like(deformation))
    assert all(torch.equal(without[key], zero[key]) for key in without)
    # Stage 2 trains with it.
    history = train_registration_head(
        one_encoder_model(dataclasses.replace(SMALL, field=True)), [(image, image.copy())],
        dataclasses.replace(cfg, steps=2, batch_size=2),
    )  # fmt: skip
    assert np.isfinite(history["field_px"]).all()
    with pytest.raises(ValueError, match="max_deformation_px must be finite and >= 0"):
        check_head_settings(SMALL, 4, dataclasses.replace(cfg, max_deformation_px=-1.0))


def test_sampling_tokens_and_field_follow_the_project_conventions():
    rng = np.random.default_rng(1)
    image = rng.random((20, 24)).astype(np.float32)
    matrix = g.rigid_matrix(0.2, 1.5, -2.0, center=(11.5, 9.5))
    field = affine_to_field(matrix, (16, 18))
    positions = torch.as_tensor(pixel_grid(16, 18).numpy() + field)[None]
    sampled = sample_at(torch.as_tensor(image)[None, None], positions)[0, 0].numpy()
    inside = inside_mask(field, image.shape)
    assert 0 < inside.sum() < inside.size
    np.testing.assert_allclose(sampled[inside], warp_image(image, field)[inside], atol=1e-5)
    far = (positions[0] < -1).any(-1) | (positions[0, ..., 0] > 24) | (positions[0, ..., 1] > 20)
    assert far.any() and np.all(sampled[far.numpy()] == 0)
    # Token centres are where bilinear upsampling by the token side puts the tokens' values.
    values = torch.arange(12.0).reshape(1, 1, 3, 4)
    upsampled = torch.nn.functional.interpolate(values, scale_factor=4, mode="bilinear", align_corners=False)
    centres = token_centres((3, 4), 4, 4).reshape(3, 4, 2)
    np.testing.assert_array_equal(centres[1, 2].numpy(), [9.5, 5.5])
    assert upsampled[0, 0, 5:7, 9:11].mean() == values[0, 0, 1, 2]  # linear values: the mean at the centre


def test_mixed_precision_keeps_the_geometry_in_float32():
    model = one_encoder_model()
    reference = torch.rand(1, 1, 32, 32)
    with torch.no_grad(), precision.autocast("cpu", True):
        output = model(reference, reference)
    assert output.matrix.dtype == output.correspondences.dtype == torch.float32
    assert output.representations[0].dtype == torch.bfloat16


# --------------------------------------------------------------------------- stage 2


def test_the_head_recovers_a_known_transform_after_a_few_steps(trained):
    before, after = trained["before"], trained["after"]
    # Untrained: 1.9 px (the identity 2.8 px; the untrained attention already matches identical tokens).
    assert before > 1.5
    assert after < 0.8 and after < 0.5 * before, (before, after)  # 0.56 px
    history = trained["history"]
    assert list(history.columns[:7]) == [
        "step",
        "reference",
        "corner_px",
        "match_px",
        "assignment",
        "confidence",
        "total",
    ]
    assert history["corner_px"].tail(10).mean() < history["corner_px"].head(10).mean()


def test_without_attention_the_head_still_learns():
    image = source_image()[None]
    pairs = [(image, image.copy())]
    model = one_encoder_model(dataclasses.replace(SMALL, attention=False))
    before = evaluation_error(model, pairs, TRAINING)
    train_registration_head(model, pairs, TRAINING)
    after = evaluation_error(model, pairs, TRAINING)
    # The learned embedding and confidence alone: 1.9 -> 0.76 px; with the attention 1.9 -> 0.56 px (`trained`).
    assert after < 0.8 * before, (before, after)


def test_training_is_reproducible_and_freezes_the_encoders_unless_fine_tuned(caplog):
    caplog.set_level(logging.INFO, logger="comir.training.accr")
    image = source_image()[None]
    pairs = [(image, (1.0 - image**2).astype(np.float32))]
    cfg = dataclasses.replace(TRAINING, steps=3, batch_size=2, similarity_weight=0.5)
    runs = []
    for finetune in (False, False, True):
        model = build_accr(SMALL, {"A": TINY, "B": TINY}, seed=2)
        encoders = {k: v.clone() for k, v in model.encoders.state_dict().items()}
        history = train_registration_head(model, pairs, dataclasses.replace(cfg, finetune_encoders=finetune))
        changed = any(not torch.equal(v, encoders[k]) for k, v in model.encoders.state_dict().items())
        runs.append((history, model.state_dict(), changed))
    (first, weights, changed), (second, again, _), (_, _, tuned) = runs
    assert first.drop(columns="seconds").equals(second.drop(columns="seconds"))
    assert all(torch.equal(weights[key], again[key]) for key in weights)
    assert list(first["reference"]) == ["A", "B", "A"] and "similarity" in first
    assert not changed and tuned
    # Progress lines: every step of a 3-step training, three trainings.
    progress = [r.getMessage() for r in caplog.records if r.name == "comir.training.accr"]
    assert len(progress) == 9 and progress[2].startswith("step 3 of 3: loss ")
    with pytest.raises(ValueError, match="needs an affine head"):
        train_registration_head(model, pairs, dataclasses.replace(cfg, max_linear=0.1))
    with pytest.raises(ValueError, match="needs a model with a displacement field"):
        train_registration_head(model, pairs, dataclasses.replace(cfg, smoothness_weight=1.0))


def test_the_field_and_the_affine_head_train():
    image = source_image()[None]
    cfg = dataclasses.replace(TRAINING, steps=2, batch_size=2, max_linear=0.05, smoothness_weight=0.1)
    model = one_encoder_model(dataclasses.replace(SMALL, transform="affine", field=True))
    history = train_registration_head(model, [(image, image.copy())], cfg)
    assert {"corner_px", "field_px", "smoothness"} <= set(history.columns)
    assert np.isfinite(history["total"]).all()


# --------------------------------------------------------------------------- the registration method


def test_the_method_registers_a_pair_and_fails_a_degenerate_one(trained, monkeypatch):
    reference, floating = moved_texture(TRUTH)
    method = ACCRRegistration(trained["model"])
    result = method.register(reference, floating)
    assert isinstance(result, RegistrationResult) and result.ok, result.message
    identity = pair_error(g.IDENTITY, TRUTH, floating)  # 4.0 px
    assert pair_error(result.matrix, TRUTH, floating) < min(2.0, identity / 2), (identity, result.message)
    assert np.isfinite(result.metric) and result.seconds > 0 and "support" in result.message
    assert float(result.message.split("support ")[1].split()[0]) >= 32  # of 64 tokens
    # The cascade's ECC runs from the model's estimate on the model's CoMIRs; where it fails, the estimate is kept.
    with torch.no_grad():
        comirs = trained["model"](torch.as_tensor(reference)[None, None], torch.as_tensor(floating)[None, None])
    comirs = [c[0, 0].numpy() for c in comirs.representations]
    calls = []

    def polish(*args):
        calls.append(args)
        return g.compose(g.rigid_matrix(0.0, 0.25, 0.0), args[2])

    monkeypatch.setattr(accr_method, "ecc_refine", polish)
    refined = ACCRRegistration(trained["model"], refine="ecc", iterations=7).register(reference, floating)
    assert refined.ok and "refined by ECC" in refined.message
    np.testing.assert_allclose(refined.matrix, g.compose(g.rigid_matrix(0.0, 0.25, 0.0), result.matrix), atol=1e-9)
    ((ref_comir, flo_comir, start, iterations, transform, masks),) = calls
    np.testing.assert_array_equal(ref_comir, comirs[0])
    np.testing.assert_array_equal(flo_comir, comirs[1])
    assert (iterations, transform, masks) == (7, "rigid", (None, None))
    np.testing.assert_allclose(start, result.matrix, atol=1e-12)
    monkeypatch.setattr(accr_method, "ecc_refine", lambda *args: None)
    kept = ACCRRegistration(trained["model"], refine="ecc").register(reference, floating)
    monkeypatch.undo()
    assert kept.ok and "ECC failed, the model's estimate kept" in kept.message
    np.testing.assert_array_equal(kept.matrix, result.matrix)
    # A pair twice as large at a working level of half its size: the transform in the original pixels.
    reference_64, floating_64 = moved_texture(TRUTH_64, 64)
    coarse = ACCRRegistration(trained["model"], max_px=32).register(reference_64, floating_64)
    assert coarse.ok and "at 1/2.00" in coarse.message
    assert pair_error(coarse.matrix, TRUTH_64, floating_64) < pair_error(g.IDENTITY, TRUTH_64, floating_64) / 2
    # Masks: a quarter of the floating image is not image; an odd size is padded.
    mask = np.ones(floating.shape, bool)
    mask[:, 24:] = False
    masked = method.register(reference[:31, :30], floating, floating_mask=mask)
    assert masked.ok and pair_error(masked.matrix, TRUTH, floating) < 3.0, masked.message

    # A quarter turn, beyond the training's 4 degrees: from the start at 90 deg (the floating image rotated
    # by it, its lost corners invalid) the answer has the largest support, and the matrix includes the start.
    turned = g.rigid_matrix(math.radians(90.0), 2.0, -1.5, center=(15.5, 15.5))
    reference_turned, floating_turned = moved_texture(turned)
    alone = method.register(reference_turned, floating_turned)
    starts = ACCRRegistration(trained["model"], start_angles_deg=[-90, 0, 90, 180])
    calls = []
    hook = trained["model"].encoders["A"].register_forward_hook(lambda *args: calls.append(1))
    searched = starts.register(reference_turned, floating_turned)
    hook.remove()
    assert len(calls) == 5  # the encoder (both slots') on the reference once, on each start's floating image
    only = ACCRRegistration(trained["model"], start_angles_deg=[90]).register(reference_turned, floating_turned)
    np.testing.assert_array_equal(only.matrix, searched.matrix)
    assert pair_error(alone.matrix, turned, floating_turned) > 10.0
    assert pair_error(searched.matrix, turned, floating_turned) < 1.0, searched.message
    assert searched.ok and "from the start at 90 deg" in searched.message
    with pytest.raises(ValueError, match="start_angles_deg must be finite angles"):
        ACCRRegistration(trained["model"], start_angles_deg=[])
    unsupported = ACCRRegistration(trained["model"], min_support=64.0).register(reference, floating)
    assert unsupported.status == "failed" and "below min_support 64" in unsupported.message
    with pytest.raises(ValueError, match="min_support must be >= 0"):
        ACCRRegistration(trained["model"], min_support=-1.0)

    failed = method.register(reference, np.full_like(floating, 0.5))
    assert failed.status == "failed" and "floating image has no intensity variation" in failed.message
    assert np.array_equal(failed.matrix, g.IDENTITY)
    empty = np.zeros(floating.shape, bool)
    empty[:2, :2] = True
    assert "no token (4 px) that is half valid" in method.register(reference, floating, floating_mask=empty).message
    with pytest.raises(ValueError, match="3 channel"):
        method.register(reference, np.dstack([floating] * 3))
    with pytest.raises(ValueError, match="reference image must have shape"):
        method.register(reference[None, None], floating)
    with pytest.raises(ValueError, match="refine must be one of"):
        ACCRRegistration(trained["model"], refine="mi")


def test_the_method_gives_the_models_field_on_the_original_grids(trained, monkeypatch):
    model = trained["model"]
    reference, floating = moved_texture(TRUTH)
    assert ACCRRegistration(model).register(reference, floating).field is None  # the model's setting: no field
    result = ACCRRegistration(model, field=True).register(reference, floating)
    assert result.ok and result.field.shape == (32, 32, 2) and result.field.dtype == np.float32
    truth = affine_to_field(TRUTH, reference.shape)
    endpoint = np.hypot(*np.moveaxis(result.field - truth, -1, 0)).mean()
    assert endpoint < 0.5 * np.hypot(*np.moveaxis(truth, -1, 0)).mean(), endpoint  # the identity's: 3.9 px
    with pytest.raises(ValueError, match="field must be true or false"):
        ACCRRegistration(model, field="yes")

    # The carriage to the original grids, on a field whose values are known: the model's field replaced by
    # that of its own matrix, on a pair twice the working size, from a start at 90 deg, refined by a
    # stand-in ECC. The result's field is then the field of the result's matrix (start, resampling and
    # ECC's correction all included).
    match = model.match

    def matrix_field(*args, **kwargs):
        output = match(*args, **kwargs)
        shape = tuple(output.field.shape[1:3])
        exact = affine_to_field(output.matrix[0].double().numpy(), shape)
        return dataclasses.replace(output, field=torch.as_tensor(exact)[None])

    monkeypatch.setattr(model, "match", matrix_field)
    monkeypatch.setattr(accr_method, "ecc_refine", lambda *args: g.compose(g.rigid_matrix(0.01, 0.5, -0.25), args[2]))
    turned = g.rigid_matrix(math.radians(90.0), 4.0, -3.0, center=(31.5, 31.5))
    reference_64, floating_64 = moved_texture(turned, 64)
    method = ACCRRegistration(model, max_px=32, refine="ecc", start_angles_deg=[0, 90], min_support=0, field=True)
    carried = method.register(reference_64, floating_64)
    assert carried.ok and "from the start at 90 deg" in carried.message and "refined by ECC" in carried.message
    expected = affine_to_field(carried.matrix, reference_64.shape)
    interior = (slice(2, -2), slice(2, -2))  # beyond its grid the working field repeats its edge values
    np.testing.assert_allclose(carried.field[interior], expected[interior], atol=1e-3)


def test_the_support_benchmark_reads_the_methods_message(trained, tmp_path):
    """benchmarks/accr_support.py: the support of real results, and the kept counts against a direct count."""
    spec = importlib.util.spec_from_file_location("accr_support", ROOT / "benchmarks" / "accr_support.py")
    accr_support = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(accr_support)
    result = ACCRRegistration(trained["model"]).register(*moved_texture(TRUTH))
    folder = tmp_path / "results" / "texture" / "default" / "registration" / "main"
    folder.mkdir(parents=True)
    messages = [result.message, "rigid fit at 1/1.00, support 12.5 of 64 tokens", "support 30.0 of 64 tokens",
                "case_0003: the floating image has no intensity variation"]  # fmt: skip
    frame = pd.DataFrame({"status": ["ok", "ok", "ok", "failed"], "error_px": [0.5, 9.0, 1.0, math.nan],
                          "width": 64, "message": messages})  # fmt: skip
    frame.to_csv(folder / "accr_A_to_B.csv", index=False)
    table = accr_support.supports([folder / "accr_A_to_B.csv"], 0.05)  # right: within 3.2 px
    assert list(table["dataset"]) == ["texture"] * 3 and list(table["right"]) == [True, False, True]
    assert 0 < table.loc[0, "support"] <= 8 * 8  # the method's own message: at most its 8 x 8 reference tokens
    counts = accr_support.threshold_table(table, [12.5, 13.0]).set_index("min_support")
    assert counts.loc[12.5, "wrong_kept"] == 1 and counts.loc[13.0, "wrong_kept"] == 0
    assert counts.loc[13.0, "right_kept"] == 1 + int(table.loc[0, "support"] >= 13.0)
    assert accr_support.largest_wrong_support(table) == {"texture": 12.5}


def test_the_attention_figure_shows_where_a_location_attends(trained):
    reference, floating = moved_texture(TRUTH)
    attention = ACCRRegistration(trained["model"]).attention(reference, floating)
    assert attention.weights.shape == (64, 15 * 15) and attention.floating_grid == (15, 15)
    np.testing.assert_allclose(attention.weights.sum(1), 1.0, rtol=1e-5)
    queries = np.array([[10.0, 10.0], [20.0, 14.0]])
    # The model's correspondences, in the floating image's pixels: most within a token of the truth.
    matches = g.apply(g.invert(TRUTH), attention.reference_points)
    assert np.median(np.linalg.norm(attention.correspondences - matches, axis=1)) < 2.0
    figure = plot_attention(
        reference, floating, attention.weights, attention.reference_points, attention.floating_points,
        attention.floating_grid, queries, truth=TRUTH, correspondences=attention.correspondences,
    )  # fmt: skip
    assert len(figure.axes) == 3 and all(ax.images for ax in figure.axes)
    assert len(figure.axes[1].images) == 2  # the floating image and the heatmap
    token = int(np.argmin(np.linalg.norm(attention.reference_points - queries[0], axis=1)))
    np.testing.assert_allclose(figure.axes[1].lines[0].get_xydata()[0], attention.correspondences[token])
    assert "the model's correspondence" in figure._suptitle.get_text()
    with pytest.raises(ValueError, match="must hold the floating tokens"):
        plot_attention(reference, floating, attention.weights, attention.reference_points,
                       attention.floating_points, (14, 16), queries)  # fmt: skip


def test_save_and_load_give_the_same_model(trained, tmp_path):
    path = tmp_path / "accr.pt"
    save_accr(path, trained["model"], {"note": "stage 2"})
    loaded, payload = load_accr(path)
    reference, floating = (torch.as_tensor(image)[None, None] for image in moved_texture(TRUTH))
    with torch.no_grad():
        expected = trained["model"](reference, floating).matrix
        torch.testing.assert_close(loaded(reference, floating).matrix, expected)
    assert payload["note"] == "stage 2" and payload["accr"]["config"]["key_stride"] == 2
    save_checkpoint(tmp_path / "comir.pt", dict(trained["model"].encoders.items()), {})
    with pytest.raises(ValueError, match="without an ACCR head"):
        load_accr(tmp_path / "comir.pt")


def test_the_registry_the_command_and_the_apply_stage_register_with_an_accr_model_file(trained, tmp_path, capsys):
    """The file rule train_accr writes (an ACCR model that is also a CoMIR model) as method accr."""
    path = tmp_path / "accr.pt"
    modalities = {"A": {"name": "texture", "channels": 1}, "B": {"name": "copy", "channels": 1}}
    save_accr(path, trained["model"], {"modalities": modalities})
    reference, floating = moved_texture(TRUTH)
    method = make_method("accr", with_model({"max_px": 64}, path, "B"), seed=5)
    assert method.reference_slot == "B" and method.model is not trained["model"]
    expected = ACCRRegistration(trained["model"], reference_slot="B").register(reference, floating)
    np.testing.assert_allclose(method.register(reference, floating).matrix, expected.matrix, atol=1e-5)
    for name, image in {"reference.tif": reference, "floating.tif": floating}.items():
        tifffile.imwrite(tmp_path / name, image)
    args = ["register", "--model", str(path), "--reference", str(tmp_path / "reference.tif"),
            "--floating", str(tmp_path / "floating.tif"), "--reference-modality", "texture", "--masks", "none",
            "--method", "accr", "--params", "{max_px: 64}", "--threads", "1"]  # fmt: skip
    assert main([*args, "--out", str(tmp_path / "out")]) == 0, capsys.readouterr()
    row = pd.read_csv(tmp_path / "out" / "transform.csv").iloc[0]
    matrix = np.array([row[key] for key in g.MATRIX_KEYS]).reshape(2, 3)
    assert pair_error(matrix, TRUTH, floating) < 2.0, row["message"]
    assert (tmp_path / "out" / "comir_reference.tif").exists()  # the file's encoders give the CoMIRs
    assert not (tmp_path / "out" / "deformable_field.h5").exists() and "deformable_method" not in row
    # With field: true the model's field is the pair's deformed result, written as a deformable stage's.
    with_field = ACCRRegistration(trained["model"], reference_slot="B", max_px=64, field=True)
    fielded = with_field.register(reference, floating)
    args_field = [*args[: args.index("--params")], "--params", "{max_px: 64, field: true}", "--threads", "1"]
    assert main([*args_field, "--out", str(tmp_path / "field")]) == 0
    assert "deformable accr: ok in 0.0 s, Jacobian determinant" in capsys.readouterr().out
    row = pd.read_csv(tmp_path / "field" / "transform.csv").iloc[0]
    assert row["deformable_method"] == "accr" and row["deformable_status"] == "ok" and row["deformable_seconds"] == 0
    # The images as given: the original grids are the working grids, the field the method's.
    np.testing.assert_allclose(read_field(tmp_path / "field" / "deformable_field.h5"), fielded.field, atol=1e-4)
    assert tifffile.imread(tmp_path / "field" / "deformable_warped.tif").shape == reference.shape
    tifffile.imwrite(tmp_path / "flat.tif", np.full_like(floating, 0.5))  # ACCR fails: no field, "skipped"
    args_flat = [*args_field[: args_field.index("--floating") + 1], str(tmp_path / "flat.tif"),
                 *args_field[args_field.index("--floating") + 2 :]]  # fmt: skip
    assert main([*args_flat, "--out", str(tmp_path / "flat")]) == 1
    assert "deformable accr: not run, the rigid registration failed" in capsys.readouterr().out
    row = pd.read_csv(tmp_path / "flat" / "transform.csv").iloc[0]
    assert row["status"] == "failed" and row["deformable_status"] == "skipped"
    assert not (tmp_path / "flat" / "deformable_field.h5").exists()
    # The apply stage on a folder of pairs (rule register_pairs): the same transform.
    for folder, image in {"texture": reference, "copy": floating}.items():
        (tmp_path / "pairs" / folder).mkdir(parents=True)
        tifffile.imwrite(tmp_path / "pairs" / folder / "p0.tif", image)
    settings = {"method": "accr", "params": {"max_px": 64}, "reference": "texture", "masks": "none"}
    rows = register_batch(path, tmp_path / "pairs", tmp_path / "folder", settings)
    np.testing.assert_allclose(rows.loc[0, [f"est_{key}" for key in g.MATRIX_KEYS]].to_numpy(float), matrix.ravel())
    save_checkpoint(tmp_path / "comir.pt", dict(trained["model"].encoders.items()), {"modalities": modalities})
    args[args.index(str(path))] = str(tmp_path / "comir.pt")
    assert main([*args, "--out", str(tmp_path / "plain")]) == 2  # a CoMIR model without an ACCR head
    assert "without an ACCR head" in capsys.readouterr().err
