import logging

import numpy as np
import pytest
import torch

import comir.network.precision
from comir.inference.stage import check_model_settings
from comir.inference.tiling import compute_comir
from comir.io import comir_preview
from comir.network.model import Tiramisu, TiramisuConfig, required_margin


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    config = TiramisuConfig(
        in_channels=3, out_channels=2, init_filters=8, down_blocks=(1, 1), bottleneck=1, dropout=0.0
    )
    return Tiramisu(config).eval()


@pytest.fixture(scope="module")
def deep_model():
    """The paper's depth (6 poolings: receptive field 576 px, required margin 256 px), small and fast."""
    torch.manual_seed(1)
    config = TiramisuConfig(
        in_channels=3, out_channels=2, init_filters=4, down_blocks=(1,) * 6, bottleneck=1, growth_rate=4, dropout=0.0
    )
    return Tiramisu(config).eval()


def _spy_input_sizes(monkeypatch, model) -> list[tuple[int, int]]:
    """Record the (H, W) of every input the network is called on."""
    sizes = []
    original = type(model).forward

    def spy(self, x):
        sizes.append(tuple(x.shape[-2:]))
        return original(self, x)

    monkeypatch.setattr(type(model), "forward", spy)
    return sizes


def _assert_same_comir(got: np.ndarray, expected: np.ndarray) -> None:
    """Equal to float32 rounding: tiles and the one pass run the same operations on other tensor sizes."""
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())


def test_size_is_preserved_for_sizes_not_divisible_by_the_multiple(model, deep_model):
    image = np.random.default_rng(0).random((3, 37, 50), dtype=np.float32)
    out = compute_comir(model, image, tile=64)
    assert out.shape == (2, 37, 50) and out.dtype == np.float32
    image = np.random.default_rng(0).random((3, 300, 260), dtype=np.float32)
    out = compute_comir(deep_model, image, tile=64, margin=0)  # tiled (448 x 448 padded > 64 px)
    assert out.shape == (2, 300, 260) and out.dtype == np.float32


def test_the_comir_is_one_pass_over_the_reflect_padded_image(model, monkeypatch):
    """Padding 10 px; 37 x 50 + 20 -> 60 x 72 after the bottom/right extra (multiples of 2**depth = 4)."""
    image = np.random.default_rng(2).random((3, 37, 50), dtype=np.float32)
    padded = np.pad(image, ((0, 0), (10, 13), (10, 12)), mode="reflect")
    with torch.no_grad():
        expected = model(torch.from_numpy(padded)[None])[0, :, 10 : 10 + 37, 10 : 10 + 50].numpy()
    sizes = _spy_input_sizes(monkeypatch, model)
    got = compute_comir(model, image, tile=512, pad=10)
    assert sizes == [(60, 72)]
    _assert_same_comir(got, expected)


def test_tiles_agree_with_a_single_pass(model):
    """With the derived margin, tiling reproduces the one-pass result."""
    image = np.random.default_rng(1).random((3, 96, 80), dtype=np.float32)
    whole = compute_comir(model, image, tile=512)
    tiled = compute_comir(model, image, tile=32)
    _assert_same_comir(tiled, whole)


def test_tiles_of_a_deep_network_agree_with_a_single_pass(deep_model, monkeypatch, caplog):
    """Receptive field far beyond the old fixed 64 px margin.

    The image is larger than tile + 2 * margin, so some tiles are read with their full margin on both
    sides (not clipped to the padded image).
    """
    image = np.random.default_rng(3).random((3, 600, 540), dtype=np.float32)
    whole = compute_comir(deep_model, image, tile=2048, pad=64)  # padded to 768 x 704 px
    sizes = _spy_input_sizes(monkeypatch, deep_model)
    with caplog.at_level(logging.WARNING, logger="comir.inference.tiling"):
        tiled = compute_comir(deep_model, image, tile=128, pad=64)
    margin = required_margin(deep_model.config)
    assert margin == 256 and not caplog.records
    # Tiles on the 128 px grid of the padded image that hold image pixels: 6 rows x 5 columns.
    assert len(sizes) == 30 and (128 + 2 * margin) in {h for h, _ in sizes}
    _assert_same_comir(tiled, whole)


def test_a_margin_below_the_required_one_leaves_seams_and_warns(deep_model, caplog):
    image = np.random.default_rng(4).random((3, 300, 260), dtype=np.float32)
    whole = compute_comir(deep_model, image, tile=2048)
    with caplog.at_level(logging.WARNING, logger="comir.inference.tiling"):
        tiled = compute_comir(deep_model, image, tile=64, margin=0)
    assert np.abs(tiled - whole).max() > 0.05 * np.abs(whole).max()
    message = " ".join(r.getMessage() for r in caplog.records)
    assert "256 px" in message and "seams" in message


def test_tiles_bound_the_network_input(model, monkeypatch):
    sizes = _spy_input_sizes(monkeypatch, model)
    compute_comir(model, np.zeros((3, 200, 200), np.float32), tile=64)
    margin = required_margin(model.config)
    assert margin == 16
    # 200 px + 2 * 64 px padding = 328 px > 64 + 2 * 16: four kept rows x four kept columns.
    assert len(sizes) == 16 and max(max(s) for s in sizes) == 64 + 2 * margin


def test_mixed_precision_inference_through_the_shared_helper(model, monkeypatch):
    """The CUDA code path (autocast through comir.network.precision) forced on CPU, where it is bf16."""
    image = np.random.default_rng(5).random((3, 96, 80), dtype=np.float32)
    reference = compute_comir(model, image, tile=32)
    # The configuration's rule keeps CPU in float32 even when mixed precision is requested.
    np.testing.assert_array_equal(compute_comir(model, image, tile=32, mixed_precision=True), reference)

    seen = []
    original = type(model).forward

    def spy(self, x):
        seen.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))
        return original(self, x)

    monkeypatch.setattr(comir.network.precision, "MIXED_PRECISION_DEVICE_TYPES", ("cuda", "cpu"))
    monkeypatch.setattr(type(model), "forward", spy)
    reduced = compute_comir(model, image, tile=32, mixed_precision=True)
    assert seen and all(s == (True, torch.bfloat16) for s in seen)
    assert reduced.dtype == np.float32 and not np.array_equal(reduced, reference)
    # bf16 keeps 8 significant bits: a few 2**-8 of the output scale after a dozen layers.
    scale = np.abs(reference).max()
    assert np.abs(reduced - reference).max() < 0.05 * scale
    assert np.abs(reduced - reference).mean() < 0.005 * scale
    seen.clear()
    np.testing.assert_array_equal(compute_comir(model, image, tile=32, mixed_precision=False), reference)
    assert seen and all(not enabled for enabled, _ in seen)


def test_preview_is_8_bit():
    comir = np.random.default_rng(0).normal(size=(1, 20, 30)).astype(np.float32)
    assert comir_preview(comir).shape == (20, 30) and comir_preview(comir).dtype == np.uint8
    assert comir_preview(np.concatenate([comir, comir])).shape == (20, 30, 3)


def test_onnx_runtime_gives_the_pytorch_comir(model, deep_model):
    """The CPU engine: the exported network, one pass and tiled, equals the eager module to float32 rounding."""
    from comir.inference.engines import OnnxRuntimeNetwork, inference_network

    torch.set_num_threads(1)
    image = np.random.default_rng(5).random((3, 70, 90), dtype=np.float32)
    network = inference_network(model, "onnxruntime", "cpu")
    assert isinstance(network, OnnxRuntimeNetwork) and inference_network(model, "torch", "cpu") is model
    _assert_same_comir(compute_comir(network, image, tile=512), compute_comir(model, image, tile=512))
    big = np.random.default_rng(6).random((3, 330, 300), dtype=np.float32)
    deep = inference_network(deep_model, "onnxruntime", "cpu")
    _assert_same_comir(compute_comir(deep, big, tile=64, pad=64), compute_comir(deep_model, big, tile=2048, pad=64))
    with pytest.raises(ValueError, match="3 input channel"):
        network(torch.zeros(1, 1, 32, 32))
    with pytest.raises(ValueError, match="unknown inference engine 'tvm'"):
        inference_network(model, "tvm", "cpu")


def test_the_buffered_dense_blocks_of_inference_equal_the_training_graph(deep_model):
    """Inference writes each layer's features into one buffer instead of concatenating: same numbers."""
    x = torch.from_numpy(np.random.default_rng(7).random((2, 3, 128, 128), dtype=np.float32))
    with torch.no_grad():
        buffered = deep_model(x)
    with torch.enable_grad():
        concatenated = deep_model(x).detach()
    torch.testing.assert_close(buffered, concatenated, rtol=1e-5, atol=1e-6)


def test_c4_averaging_rotates_exactly_with_the_image(model):
    """The averaged CoMIR of a rot90 image is the rot90 of the averaged CoMIR; the plain one is not."""
    image = np.random.default_rng(4).random((3, 70, 52), dtype=np.float32)
    for k in (1, 2, 3):
        rotated = np.rot90(image, k, axes=(1, 2)).copy()
        averaged = compute_comir(model, rotated, tile=32, c4_average=True)  # tiled, non-square
        expected = np.rot90(compute_comir(model, image, tile=32, c4_average=True), k, axes=(1, 2))
        # The same four CoMIRs in another order: equal to float32 rounding.
        np.testing.assert_allclose(averaged, expected, rtol=0, atol=1e-5 * np.abs(expected).max())
    plain = compute_comir(model, np.rot90(image, 1, axes=(1, 2)).copy())
    rotated_plain = np.rot90(compute_comir(model, image), 1, axes=(1, 2))
    assert np.abs(plain - rotated_plain).max() > 1e-3 * np.abs(rotated_plain).max()  # the network alone is not
    # The average is the mean of the four back-rotated CoMIRs.
    parts = [np.rot90(compute_comir(model, np.rot90(image, k, axes=(1, 2)).copy()), -k, axes=(1, 2)) for k in range(4)]
    mean = np.mean(parts, axis=0)
    np.testing.assert_allclose(compute_comir(model, image, c4_average=True), mean, atol=1e-5 * np.abs(mean).max())


def test_a_model_file_trained_on_other_image_settings_is_refused():
    recorded = {"modalities": {"A": {"name": "BF", "channels": 3, "log1p": False},
                               "B": {"name": "SHG", "channels": 1, "log1p": True}}}  # fmt: skip
    same = {"A": {"name": "BF", "channels": 3, "log1p": False}, "B": {"name": "SHG", "channels": 1, "log1p": True}}
    check_model_settings(recorded, same, "m.pt")
    other = {**same, "B": {**same["B"], "log1p": False}}
    with pytest.raises(ValueError, match=r"m.pt was trained on other image settings: B.log1p is True there"):
        check_model_settings(recorded, other, "m.pt")
    with pytest.raises(ValueError, match="it has no modality B"):
        check_model_settings({"modalities": {"A": recorded["modalities"]["A"]}}, same, "m.pt")
