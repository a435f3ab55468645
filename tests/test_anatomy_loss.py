"""Negative sampling strategies and the anatomy-aware term (docs/method.md, sections 3 and 5).

Each tensor-level function is compared with a direct loop over points on tiny tensors; the training
options are checked to change nothing when off (bit for bit) and to train when on.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np
import pytest
import torch

import comir.training.loop as training_loop
from comir.config.schema import load_schema, section_defaults
from comir.training.ablations import region_masks
from comir.training.loop import build_models, train, training_fingerprint
from comir.training.loss import (
    _autocast_off,
    _compute_dtype,
    anatomy_info_nce,
    block_labels,
    info_nce,
    near_pairs,
    negative_log_sum,
    region_labels,
    similarity_matrix,
)
from comir.training.objective import contrastive_loss
from comir.training.sampler import PatchSampler
from comir.training.settings import ANATOMY_DEFAULTS, NEGATIVES_DEFAULTS, TrainingConfig
from helpers.training import TINY, structured_pair

CRITICS = ("mse", "cosine", "cosine_columns")


def random_outputs(m: int, seed: int, shape=(4, 2, 4, 4)) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=g, dtype=torch.float64) for _ in range(m)]


def info_nce_before_the_options(outputs, critic="mse", tau=0.5):
    """comir.training.loss.info_nce as it was before negatives/anatomy existed (verbatim body)."""
    n_samples = outputs[0].shape[0]
    device = outputs[0].device
    dtype = _compute_dtype(outputs[0].dtype)
    for o in outputs[1:]:
        dtype = torch.promote_types(dtype, _compute_dtype(o.dtype))
    with _autocast_off(device):
        z = torch.cat([o.to(device=device, dtype=dtype) for o in outputs])
        sim = similarity_matrix(z, critic, tau)
        n_points = z.shape[0]
        index = torch.arange(n_points, device=device)
        sample = index % n_samples
        negative = sample[:, None] != sample[None, :]
        log_negatives = torch.logsumexp(sim.masked_fill(~negative, float("-inf")), dim=1)
        terms = []
        for shift in range(1, len(outputs)):
            partner = (index + shift * n_samples) % n_points
            positive = sim.gather(1, partner[:, None]).squeeze(1)
            terms.append(torch.logaddexp(positive, log_negatives) - positive)
        return torch.cat(terms).mean()


# --------------------------------------------------------------------------- off means unchanged


@pytest.mark.parametrize("critic", CRITICS)
@pytest.mark.parametrize("m", [2, 3])
def test_info_nce_without_options_is_the_old_function_bit_for_bit(critic, m):
    for dtype in (torch.float32, torch.float64):
        new = [o.to(dtype).requires_grad_() for o in random_outputs(m, seed=m)]
        old = [o.detach().clone().requires_grad_() for o in new]
        loss_new, loss_old = info_nce(new, critic, 0.3), info_nce_before_the_options(old, critic, 0.3)
        assert torch.equal(loss_new, loss_old)
        loss_new.backward()
        loss_old.backward()
        for a, b in zip(new, old):
            assert torch.equal(a.grad, b.grad)
        # An exclusion mask that excludes nothing is the same loss too.
        nothing = torch.zeros(4, 4, dtype=torch.bool)
        assert torch.equal(info_nce([o.detach() for o in new], critic, 0.3, excluded=nothing), loss_old)


def test_options_are_absent_by_default_and_defaults_match_the_schema():
    defaults = section_defaults("training")
    assert "negatives" not in defaults and "anatomy" not in defaults  # existing runs keep their parameters
    cfg = TrainingConfig()
    assert cfg.negatives == {} and cfg.anatomy == {}
    assert cfg.negative_settings["strategy"] == "all" and cfg.anatomy_settings is None
    assert not cfg.needs_patch_info
    node = load_schema()["definitions"]["dataset"]["properties"]["training"]["properties"]
    for name, expected in (("negatives", NEGATIVES_DEFAULTS), ("anatomy", ANATOMY_DEFAULTS)):
        schema_defaults = {k: v["default"] for k, v in node[name]["properties"].items() if "default" in v}
        assert schema_defaults == expected, name
    assert cfg.negative_settings["min_distance_px"] == cfg.patch_size


def _steps(cfg: TrainingConfig) -> tuple[list[torch.Tensor], dict]:
    """Per-step losses and final networks of a short run on the tiny network."""
    losses = []
    original = training_loop.training_step

    def recording(*args, **kwargs):
        loss = original(*args, **kwargs)
        losses.append(loss.detach().clone())
        return loss

    pairs = [structured_pair(i, size=80) for i in range(3)]
    models = build_models({"A": TINY, "B": TINY}, seed=cfg.seed)
    training_loop.training_step = recording
    try:
        history = train(models, pairs[:2], pairs[2:], cfg)
    finally:
        training_loop.training_step = original
    return losses, {"models": models, "history": history}


@functools.cache
def _default_losses(epochs: int, steps: int) -> tuple[torch.Tensor, ...]:
    return tuple(_steps(_tiny(epochs=epochs, steps_per_epoch=steps))[0])


def _tiny(**changes) -> TrainingConfig:
    base = TrainingConfig(epochs=2, steps_per_epoch=2, batch_size=4, patch_size=32, optimizer="adam",
                          learning_rate=3e-3, weight_decay=0, validation_batches=1, device="cpu", seed=4,
                          threads=1)  # fmt: skip
    return dataclasses.replace(base, **changes)


def test_training_with_the_options_off_is_bit_for_bit_the_default_run():
    torch.set_num_threads(1)
    default_losses, default = _steps(_tiny())
    off_losses, off = _steps(_tiny(negatives={"strategy": "all", "beta": 1.0}, anatomy={}))
    assert len(default_losses) == 4
    for a, b in zip(default_losses, off_losses, strict=True):
        assert torch.equal(a, b)
    np.testing.assert_array_equal(default["history"]["val_loss"], off["history"]["val_loss"])
    for slot in ("A", "B"):
        for name, tensor in default["models"][slot].state_dict().items():
            assert torch.equal(off["models"][slot].state_dict()[name], tensor), f"{slot}.{name}"


def test_the_fingerprint_of_a_run_without_the_options_does_not_name_them():
    pairs = [structured_pair(0, size=64)]
    models = build_models({"A": TINY, "B": TINY}, seed=0)
    cfg = _tiny()
    assert training_fingerprint(models, pairs, [], cfg) != training_fingerprint(
        models, pairs, [], dataclasses.replace(cfg, negatives={"strategy": "hard"})
    )
    # The settings that enter the digest are those of before the options existed.
    import hashlib
    import json

    settings = {
        k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("threads", "workers", "negatives", "anatomy")
    }
    digest = hashlib.blake2b(digest_size=16)
    architectures = {slot: model.config.to_dict() for slot, model in models.items()}
    digest.update(json.dumps([settings, architectures], sort_keys=True).encode())
    for split, split_pairs in (("train", pairs), ("val", [])):
        digest.update(split.encode())
        for array in (image for pair in split_pairs for image in pair):
            digest.update(repr((array.shape, array.dtype.str)).encode())
            digest.update(np.ascontiguousarray(array).data)
    assert training_fingerprint(models, pairs, [], cfg) == digest.hexdigest()


# --------------------------------------------------------------------------- negatives


def naive_negative_log_sum(sim: torch.Tensor, negative: torch.Tensor, beta: float | None) -> list[float]:
    out = []
    for i in range(sim.shape[0]):
        values = [sim[i, j].item() for j in range(sim.shape[1]) if negative[i, j]]
        if not values:
            out.append(-math.inf)
        elif beta is None:
            out.append(math.log(sum(math.exp(v) for v in values)))
        else:
            mean_weight = sum(math.exp(beta * v) for v in values) / len(values)
            out.append(math.log(sum(math.exp(v) * math.exp(beta * v) / mean_weight for v in values)))
    return out


@pytest.mark.parametrize("beta", [None, 0.0, 0.5, 2.0])
def test_negative_log_sum_matches_a_loop_and_handles_rows_without_negatives(beta):
    g = torch.Generator().manual_seed(1)
    sim = torch.randn(5, 5, generator=g, dtype=torch.float64).requires_grad_()
    negative = torch.rand(5, 5, generator=g) < 0.6
    negative[2] = False  # a row without negatives
    got = negative_log_sum(sim, negative, beta)
    expected = torch.tensor(naive_negative_log_sum(sim.detach(), negative, beta), dtype=torch.float64)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    assert got[2] == -math.inf
    # The InfoNCE term of the empty row is 0, with finite gradients everywhere.
    positive = sim.diagonal()
    (torch.logaddexp(positive, got) - positive).sum().backward()
    assert torch.isfinite(sim.grad).all()
    if beta == 0.0:
        torch.testing.assert_close(got, negative_log_sum(sim.detach(), negative, None), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError):
        negative_log_sum(sim, negative, -1.0)


def test_near_pairs_matches_a_loop():
    image = torch.tensor([0, 0, 1, 0, 1, 2])
    centre = torch.tensor([[10.0, 10.0], [40.0, 10.0], [10.0, 10.0], [10.0, 41.0], [20.0, 25.0], [10.0, 10.0]])
    got = near_pairs(image, centre, 31.0)
    for i in range(6):
        for j in range(6):
            distance = math.dist(centre[i].tolist(), centre[j].tolist())
            assert bool(got[i, j]) == (i != j and image[i] == image[j] and distance < 31.0), (i, j)
    assert got[0, 1] and got[1, 0] and not got[0, 3]  # 30 px apart: near; 31 px: not strictly closer
    assert not got[0, 2] and not got[0, 5]  # the same position in another image is another place


def naive_info_nce(outputs, critic, tau, excluded=None, beta=None) -> float:
    """Algorithm 1 with loops; excluded[s, s'] removes sample s' from anchor s's negatives; beta: Robinson et al."""
    m_count, n = len(outputs), outputs[0].shape[0]
    z = torch.cat(outputs)
    sim = similarity_matrix(z, critic, tau)
    terms = []
    for a in range(m_count * n):
        s_a = a % n
        negatives = [
            sim[a, j].item()
            for j in range(m_count * n)
            if j % n != s_a and not (excluded is not None and excluded[s_a, j % n])
        ]
        if beta is None:
            neg = sum(math.exp(v) for v in negatives)
        elif negatives:
            mean_weight = sum(math.exp(beta * v) for v in negatives) / len(negatives)
            neg = sum(math.exp(v) * math.exp(beta * v) / mean_weight for v in negatives)
        else:
            neg = 0.0
        for m_p in range(1, m_count):
            pos = sim[a, (a + m_p * n) % (m_count * n)].item()
            terms.append(-pos + math.log(math.exp(pos) + neg))
    return sum(terms) / len(terms)


@pytest.mark.parametrize("critic", CRITICS)
@pytest.mark.parametrize("m", [2, 3])
def test_info_nce_with_excluded_pairs_matches_a_loop(critic, m):
    outputs = random_outputs(m, seed=20 + m)
    excluded = torch.tensor([[0, 1, 0, 0], [1, 0, 0, 1], [0, 0, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)
    got = info_nce(outputs, critic, 0.4, excluded=excluded)
    assert got.item() == pytest.approx(naive_info_nce(outputs, critic, 0.4, excluded=excluded), rel=1e-10)
    assert got.item() < info_nce(outputs, critic, 0.4).item()  # fewer negatives, smaller denominators
    with pytest.raises(ValueError, match="bool tensor"):
        info_nce(outputs, critic, 0.4, excluded=excluded[:3])


@pytest.mark.parametrize("critic", CRITICS)
@pytest.mark.parametrize("m", [2, 3])
@pytest.mark.parametrize("beta", [0.5, 1.0])
def test_info_nce_with_hard_negative_weights_matches_a_loop(critic, m, beta):
    outputs = random_outputs(m, seed=30 + m)
    got = info_nce(outputs, critic, 0.5, hard_beta=beta)
    assert got.item() == pytest.approx(naive_info_nce(outputs, critic, 0.5, beta=beta), rel=1e-10)
    both = info_nce(outputs, critic, 0.5, excluded=torch.eye(4, dtype=torch.bool).roll(1, 0), hard_beta=beta)
    excluded = torch.eye(4, dtype=torch.bool).roll(1, 0)
    assert both.item() == pytest.approx(naive_info_nce(outputs, critic, 0.5, excluded, beta), rel=1e-10)
    # Weights of mean 1 rising with S raise the negatives' sum (Chebyshev's sum inequality).
    assert got.item() > info_nce(outputs, critic, 0.5).item()


# --------------------------------------------------------------------------- anatomy


def test_region_masks_on_tiny_arrays():
    bright = np.array([[[1.0, 0.5], [0.95, 0.0]], [[1.0, 0.5], [0.8, 0.0]], [[1.0, 0.5], [0.7, 0.0]]])
    signal = np.array([[[0.0, 0.1], [0.9, 0.3]]])
    masks = region_masks(bright, signal, optical_density=0.15, signal_percentile=50.0)
    assert masks.dtype == np.float32 and masks.shape == (2, 2, 2)
    # OD per pixel: 0, ln 2 = 0.69, mean(-ln .95, -ln .8, -ln .7) = 0.21, -ln 0.001 = 6.9.
    np.testing.assert_array_equal(masks[0], [[0, 1], [1, 1]])
    np.testing.assert_array_equal(masks[1], [[0, 0], [1, 1]])  # above the median 0.2
    np.testing.assert_array_equal(region_masks(None, 3.0 * signal, signal_percentile=50.0), masks[1:])
    assert region_masks(None, np.zeros((1, 4, 4))).sum() == 0  # a constant image has no signal
    assert region_masks(bright, None).shape == (1, 2, 2)


def test_region_and_block_labels_match_loops():
    g = torch.Generator().manual_seed(2)
    masks = torch.rand(2, 2, 4, 6, generator=g)
    labels = region_labels(masks)
    for n in range(2):
        for y in range(4):
            for x in range(6):
                expected = int(masks[n, 0, y, x] >= 0.5) + 2 * int(masks[n, 1, y, x] >= 0.5)
                assert labels[n, y, x] == expected
    blocks = block_labels(labels, 2, 4)
    assert blocks.shape == (2, 2, 3)
    for n in range(2):
        for by in range(2):
            for bx in range(3):
                values = labels[n, 2 * by : 2 * by + 2, 2 * bx : 2 * bx + 2].flatten().tolist()
                counts = [values.count(v) for v in range(4)]
                assert blocks[n, by, bx] == counts.index(max(counts))  # majority, ties to the smaller label


def naive_anatomy(outputs, labels, block, critic, tau) -> float:
    m_count, n = len(outputs), outputs[0].shape[0]
    rows, cols = labels.shape[1] // block, labels.shape[2] // block
    points, keys = [], []  # keys: (modality, sample, block row, block col, label)
    for m in range(m_count):
        for s in range(n):
            for r in range(rows):
                for c in range(cols):
                    points.append(outputs[m][s, :, r * block : (r + 1) * block, c * block : (c + 1) * block])
                    window = labels[s, r * block : (r + 1) * block, c * block : (c + 1) * block].flatten().tolist()
                    counts = [window.count(v) for v in range(int(labels.max()) + 1)]
                    keys.append((m, s, r, c, counts.index(max(counts))))
    sim = similarity_matrix(torch.stack(points), critic, tau)
    terms = []
    for a, (m, s, r, c, label) in enumerate(keys):
        if label == 0:
            continue
        negatives = [
            sim[a, j].item()
            for j, (_, s2, r2, c2, label2) in enumerate(keys)
            if (s2, r2, c2) != (s, r, c) and (s2 != s or label2 != label)
        ]
        for j, (m2, s2, r2, c2, _) in enumerate(keys):
            if m2 != m and (s2, r2, c2) == (s, r, c):
                pos = sim[a, j].item()
                terms.append(-pos + math.log(math.exp(pos) + sum(math.exp(v) for v in negatives)))
    return sum(terms) / len(terms) if terms else 0.0


@pytest.mark.parametrize("critic", CRITICS)
@pytest.mark.parametrize("m", [2, 3])
def test_anatomy_info_nce_matches_a_loop(critic, m):
    outputs = random_outputs(m, seed=40 + m, shape=(3, 2, 4, 6))
    labels = torch.randint(0, 4, (3, 4, 6), generator=torch.Generator().manual_seed(m))
    labels[0, :2, :2] = 0  # a background block
    got = anatomy_info_nce(outputs, labels, 2, critic, 0.5)
    assert got.item() == pytest.approx(naive_anatomy(outputs, labels, 2, critic, 0.5), rel=1e-10)
    assert anatomy_info_nce(outputs, labels, 2, critic, 0.5, n_labels=4).item() == pytest.approx(got.item(), rel=1e-12)


def test_anatomy_info_nce_without_regions_is_zero_and_rejects_bad_input():
    outputs = [o.requires_grad_() for o in random_outputs(2, seed=5, shape=(2, 1, 4, 4))]
    zero = anatomy_info_nce(outputs, torch.zeros(2, 4, 4, dtype=torch.long), 2)
    assert zero.item() == 0.0
    zero.backward()
    assert all(torch.isfinite(o.grad).all() for o in outputs)
    with pytest.raises(ValueError, match="must divide"):
        anatomy_info_nce(outputs, torch.zeros(2, 4, 4, dtype=torch.long), 3)
    with pytest.raises(ValueError, match="labels must be"):
        anatomy_info_nce(outputs, torch.zeros(2, 4, 5, dtype=torch.long), 2)


def test_anatomy_term_is_lower_for_aligned_outputs():
    g = torch.Generator().manual_seed(6)
    a = torch.randn(3, 1, 8, 8, generator=g)
    labels = torch.randint(0, 4, (3, 8, 8), generator=g)
    aligned = anatomy_info_nce([a, a + 0.01 * torch.randn(a.shape, generator=g)], labels, 4)
    unrelated = anatomy_info_nce([a, torch.randn(a.shape, generator=g)], labels, 4)
    assert aligned.item() < unrelated.item()


# --------------------------------------------------------------------------- the sampler's patch info


@pytest.mark.parametrize("rotation", [False, True])
@pytest.mark.parametrize("elastic", [{}, {"probability": 1.0, "alpha": 3.0, "sigma": 4.0}])
def test_sampler_info_and_regions_change_no_patch(elastic, rotation):
    pairs = [structured_pair(i, size=90) for i in range(2)]
    plain = PatchSampler(pairs, 32, rotation, True, elastic=elastic)
    masks = [region_masks(a, b, signal_percentile=60.0) for a, b in pairs]
    with_regions = PatchSampler(pairs, 32, rotation, True, elastic=elastic, regions=masks)
    a0, b0 = plain.sample(np.random.default_rng(3), 6)
    a1, b1, info = with_regions.sample_with_info(np.random.default_rng(3), 6)
    np.testing.assert_array_equal(a0, a1)
    np.testing.assert_array_equal(b0, b1)
    assert info["image"].shape == (6,) and info["centre"].shape == (6, 2)
    assert info["regions"].shape == (6, 2, 32, 32)
    # The masks travel with the patch: thresholding the B patch gives its warped signal mask, exactly
    # when only flips move pixels, up to interpolation at the mask's edges otherwise.
    thresholds = np.array([np.percentile(b, 60.0) for _, b in pairs])[info["image"]]
    signal = b1[:, 0] > thresholds[:, None, None]
    agreement = np.mean(signal == (info["regions"][:, 1] >= 0.5))
    assert agreement == 1.0 if not (rotation or elastic) else agreement > 0.9
    assert np.mean(signal == (np.roll(info["regions"], 1, axis=0)[:, 1] >= 0.5)) < 0.75  # another patch's masks


def test_sampler_centres_are_the_patch_centres():
    image = np.arange(100 * 100, dtype=np.float32).reshape(1, 100, 100)
    sampler = PatchSampler([(image, image)], 16, False, False)
    a, _, info = sampler.sample_with_info(np.random.default_rng(0), 5)
    for patch, (x, y) in zip(a, info["centre"]):
        top, left = int(y - 7.5), int(x - 7.5)
        np.testing.assert_array_equal(patch[0], image[0, top : top + 16, left : left + 16])
    assert (info["image"] == 0).all()


# --------------------------------------------------------------------------- the options in training


def test_contrastive_loss_with_each_option_and_its_errors():
    g = torch.Generator().manual_seed(7)
    outputs = [torch.randn(4, 1, 16, 16, generator=g) for _ in range(2)]
    info = {
        "image": torch.tensor([0, 0, 1, 0]),
        "centre": torch.tensor([[10.0, 10.0], [12.0, 10.0], [10.0, 10.0], [60.0, 60.0]]),
        "regions": (torch.rand(4, 2, 16, 16, generator=g) > 0.5).float(),
    }
    cfg = TrainingConfig(patch_size=16)
    base = contrastive_loss(outputs, cfg)
    near = contrastive_loss(outputs, dataclasses.replace(cfg, negatives={"strategy": "exclude_near"}), info=info)
    expected = info_nce(outputs, excluded=near_pairs(info["image"], info["centre"], 16.0))
    torch.testing.assert_close(near - base, expected - info_nce(outputs))
    hard = contrastive_loss(outputs, dataclasses.replace(cfg, negatives={"strategy": "hard", "beta": 0.5}))
    torch.testing.assert_close(hard - base, info_nce(outputs, hard_beta=0.5) - info_nce(outputs))
    anatomy = contrastive_loss(outputs, dataclasses.replace(cfg, anatomy={"weight": 0.3, "block_size": 4}), info=info)
    term = anatomy_info_nce(outputs, region_labels(info["regions"]), 4, n_labels=4)
    torch.testing.assert_close(anatomy - base, 0.3 * term)
    with pytest.raises(ValueError, match="images and centres"):
        contrastive_loss(outputs, dataclasses.replace(cfg, negatives={"strategy": "exclude_near"}))
    with pytest.raises(ValueError, match="region masks"):
        contrastive_loss(outputs, dataclasses.replace(cfg, anatomy={"weight": 0.3}))
    with pytest.raises(ValueError, match="strategy"):
        contrastive_loss(outputs, dataclasses.replace(cfg, negatives={"strategy": "random"}))


def test_training_refuses_unusable_settings():
    pairs = [structured_pair(0, size=64)]
    models = build_models({"A": TINY, "B": TINY}, seed=0)
    with pytest.raises(ValueError, match="must divide the patch size"):
        train(models, pairs, [], _tiny(anatomy={"weight": 1.0, "block_size": 6}))
    with pytest.raises(ValueError, match="tissue_from or signal_from"):
        train(models, pairs, [], _tiny(anatomy={"weight": 1.0, "tissue_from": None, "signal_from": None}))
    with pytest.raises(ValueError, match="strategy"):
        train(models, pairs, [], _tiny(negatives={"strategy": "random"}))


@pytest.mark.parametrize(
    "option",
    [
        {"negatives": {"strategy": "exclude_near", "min_distance_px": 20.0}},
        {"negatives": {"strategy": "hard", "beta": 1.0}},
        {"anatomy": {"weight": 0.5, "block_size": 8}},
    ],
    ids=["exclude_near", "hard", "anatomy"],
)
def test_the_tiny_network_trains_with_each_option(option):
    torch.set_num_threads(1)
    cfg = _tiny(epochs=3, steps_per_epoch=3, **option)
    losses, run = _steps(cfg)
    assert len(losses) == 9 and all(torch.isfinite(loss) for loss in losses)
    history = run["history"]
    assert np.isfinite(history["val_loss"]).all()
    assert history["val_loss"].iloc[-1] < history["val_loss"].iloc[0]
    # The option changes the loss (exclude_near only where a batch has near pairs).
    assert any(not torch.equal(a, b) for a, b in zip(losses, _default_losses(3, 3), strict=True))
