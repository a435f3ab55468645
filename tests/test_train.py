import numpy as np
import pytest
import torch

from comir.network.checkpoint import load_checkpoint, save_checkpoint
from comir.training.loop import build_models, train
from comir.training.sampler import PatchSampler
from comir.training.settings import TrainingConfig
from helpers.training import TINY, structured_pair


def test_sampler_rotation_adds_no_padding_and_moves_both_modalities_alike():
    ones = np.ones((1, 120, 120), np.float32)
    ramp = np.tile(np.linspace(0, 1, 120, dtype=np.float32), (120, 1))[None]
    sampler = PatchSampler([(ones, ramp), (ramp, ramp)], patch_size=64, rotation=True, flips=True)
    a, b = sampler.sample(np.random.default_rng(0), 32)
    assert a.shape == b.shape == (32, 1, 64, 64)
    # A constant image stays constant under any rotation: no padded (zero) corners.
    first = np.array([np.allclose(x, 1.0, atol=1e-5) for x in a])
    assert first.sum() > 0 and np.all(a[first] > 0.99)
    # Where both modalities are the same image, the patches must be identical.
    np.testing.assert_array_equal(a[~first], b[~first])


def test_sampler_is_seeded_and_rejects_small_images():
    image = np.random.default_rng(0).random((1, 100, 100), dtype=np.float32)
    sampler = PatchSampler([(image, image)], 64, True, True)
    x1, _ = sampler.sample(np.random.default_rng(5), 4)
    x2, _ = sampler.sample(np.random.default_rng(5), 4)
    np.testing.assert_array_equal(x1, x2)
    with pytest.raises(ValueError, match="smaller than the 93 px crop"):
        PatchSampler([(image[:, :80, :80], image[:, :80, :80])], 64, True, True)


def test_training_lowers_validation_loss_and_is_reproducible(tmp_path):
    torch.set_num_threads(1)
    pairs = [structured_pair(i) for i in range(3)]
    cfg = TrainingConfig(epochs=3, steps_per_epoch=8, batch_size=8, patch_size=32, optimizer="adam", learning_rate=3e-3,
                         weight_decay=0, validation_batches=2, device="cpu", seed=1, threads=1)
    runs = []
    for _ in range(2):
        models = build_models({"A": TINY, "B": TINY}, seed=1)
        history = train(models, pairs[:2], pairs[2:], cfg)
        runs.append((history, models))
    history, models = runs[0]
    assert list(history.columns[:4]) == ["epoch", "step", "train_loss", "val_loss"]
    assert history["val_loss"].iloc[-1] < history["val_loss"].iloc[0]
    np.testing.assert_allclose(runs[0][0]["val_loss"], runs[1][0]["val_loss"], rtol=1e-5)
    # Save / load reproduces the networks exactly (state_dict plus config, no pickled module).
    path = tmp_path / "model.pt"
    save_checkpoint(path, models, {"note": "test"})
    loaded, payload = load_checkpoint(path)
    x = torch.from_numpy(pairs[0][0][None, :, :32, :32].copy())
    with torch.no_grad():
        expected = models["A"].eval()(x).numpy()
        # Same weights, possibly another memory layout (the trained net is channels-last on CPU):
        # equal to float32 rounding, relative to the output's scale, not bit for bit.
        np.testing.assert_allclose(loaded["A"](x).numpy(), expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
    assert payload["note"] == "test" and payload["model_configs"]["A"]["init_filters"] == 8


def test_different_seeds_initialise_differently():
    a = build_models({"A": TINY, "B": TINY}, seed=0)
    b = build_models({"A": TINY, "B": TINY}, seed=1)
    first = next(iter(a["A"].parameters()))
    assert not torch.equal(first, next(iter(b["A"].parameters())))
    assert not torch.equal(first, next(iter(a["B"].parameters())))


def _tiny_training(seed=2):
    return TrainingConfig(epochs=3, steps_per_epoch=3, batch_size=4, patch_size=32, optimizer="sgd", learning_rate=1e-2,
                          validation_batches=1, device="cpu", seed=seed, threads=1)  # fmt: skip


def test_an_interrupted_training_resumes_to_the_same_networks(tmp_path, monkeypatch):
    import comir.training.loop as training_loop

    torch.set_num_threads(1)
    pairs = [structured_pair(i) for i in range(3)]
    cfg = _tiny_training()
    reference = build_models({"A": TINY, "B": TINY}, seed=2)
    history = train(reference, pairs[:2], pairs[2:], cfg)

    state = tmp_path / "training_state.pt"
    original = training_loop.evaluate_loss
    calls = []

    def killed_in_epoch_two(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl-C or a scheduler's time limit, mid-run
        return original(*args, **kwargs)

    monkeypatch.setattr(training_loop, "evaluate_loss", killed_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        train(build_models({"A": TINY, "B": TINY}, seed=2), pairs[:2], pairs[2:], cfg, state)
    monkeypatch.setattr(training_loop, "evaluate_loss", original)
    assert torch.load(state, weights_only=True)["epoch"] == 1

    resumed = build_models({"A": TINY, "B": TINY}, seed=2)  # a new process starts from scratch
    again = train(resumed, pairs[:2], pairs[2:], cfg, state)
    np.testing.assert_array_equal(again["epoch"], [1, 2, 3])
    np.testing.assert_array_equal(again["val_loss"], history["val_loss"])  # same process, same kernels
    for slot in ("A", "B"):
        for name, tensor in reference[slot].state_dict().items():
            assert torch.equal(resumed[slot].state_dict()[name], tensor), f"{slot}.{name} differs after resuming"


def test_a_training_state_of_other_settings_is_ignored(tmp_path, caplog):
    torch.set_num_threads(1)
    pairs = [structured_pair(i) for i in range(3)]
    state = tmp_path / "training_state.pt"
    cfg = _tiny_training()
    train(build_models({"A": TINY, "B": TINY}, seed=2), pairs[:2], pairs[2:], cfg, state)
    assert torch.load(state, weights_only=True)["epoch"] == 3
    other = TrainingConfig(**{**cfg.__dict__, "learning_rate": 2e-2})
    with caplog.at_level("WARNING", logger="comir.training.loop"):
        history = train(build_models({"A": TINY, "B": TINY}, seed=2), pairs[:2], pairs[2:], other, state)
    assert "belongs to other settings or data" in caplog.text and list(history["epoch"]) == [1, 2, 3]
    state.write_bytes(b"not a checkpoint")
    with caplog.at_level("WARNING", logger="comir.training.loop"):
        train(build_models({"A": TINY, "B": TINY}, seed=2), pairs[:2], pairs[2:], cfg, state)
    assert "cannot be read" in caplog.text


def test_batches_are_the_same_from_loader_workers_and_in_process():
    from comir.training.sampler import TrainingBatches, batch_loader

    pairs = [structured_pair(i, size=120) for i in range(2)]
    batches = TrainingBatches(PatchSampler(pairs, 32, True, True), 4, seed=3, stream=2)
    in_process = list(batch_loader(batches, range(5, 9), 0, torch.device("cpu")))
    workers = list(batch_loader(batches, range(5, 9), 2, torch.device("cpu")))
    assert len(in_process) == len(workers) == 4
    for (a0, b0), (a1, b1), step in zip(in_process, workers, range(5, 9)):
        # One generator per step: the same patches whichever process draws them, in whatever order.
        np.testing.assert_array_equal(a0.numpy(), a1.numpy())
        np.testing.assert_array_equal(b0.numpy(), b1.numpy())
        np.testing.assert_array_equal(batches[step][0], a0.numpy())
    assert not np.array_equal(in_process[0][0].numpy(), in_process[1][0].numpy())


def test_training_with_loader_workers_equals_training_without(tmp_path):
    torch.set_num_threads(1)
    pairs = [structured_pair(i) for i in range(3)]
    results = []
    for workers in (0, 2):
        cfg = TrainingConfig(**{**_tiny_training().__dict__, "workers": workers})
        models = build_models({"A": TINY, "B": TINY}, seed=2)
        results.append((train(models, pairs[:2], pairs[2:], cfg), models))
    np.testing.assert_array_equal(results[0][0]["val_loss"], results[1][0]["val_loss"])
    for name, tensor in results[0][1]["A"].state_dict().items():
        assert torch.equal(results[1][1]["A"].state_dict()[name], tensor), name


def test_the_patch_is_resampled_from_the_image_as_the_map_says():
    """A pure flip and a quarter turn move pixels exactly: the patch-to-image map's convention."""
    image = np.arange(100 * 100, dtype=np.float32).reshape(1, 100, 100) / 1e4
    sampler = PatchSampler([(image, image * 2)], 16, True, True)
    x = y = 30
    crop = sampler.crop
    top = y + (crop - 16) // 2
    left = x + (crop - 16) // 2
    reference = image[0, top : top + 16, left : left + 16]
    import cv2

    flipped = cv2.warpAffine(image[0], sampler._patch_to_image(x, y, crop, 0.0, True, False), (16, 16),
                             flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP)  # fmt: skip
    np.testing.assert_array_equal(flipped, reference[:, ::-1])
    turned = cv2.warpAffine(image[0], sampler._patch_to_image(x, y, crop, 90.0, False, False), (16, 16),
                            flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP)  # fmt: skip
    np.testing.assert_array_equal(turned, np.rot90(reference, 1))
