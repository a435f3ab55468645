import numpy as np
import pytest
import torch

from comir.infer import compute_comir, preview
from comir.model import Tiramisu, TiramisuConfig


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    config = TiramisuConfig(in_channels=3, out_channels=2, init_filters=8, down_blocks=(1, 1), bottleneck=1, dropout=0.0)
    return Tiramisu(config).eval()


def test_size_is_preserved_for_sizes_not_divisible_by_the_multiple(model):
    image = np.random.default_rng(0).random((3, 37, 50), dtype=np.float32)
    out = compute_comir(model, image, tile=64, margin=8)
    assert out.shape == (2, 37, 50) and out.dtype == np.float32


def test_tiles_agree_with_a_single_pass(model):
    """With a margin beyond the receptive field, tiling reproduces the whole-image result."""
    image = np.random.default_rng(1).random((3, 96, 80), dtype=np.float32)
    whole = compute_comir(model, image, tile=128, margin=48)
    tiled = compute_comir(model, image, tile=32, margin=48)
    np.testing.assert_allclose(tiled, whole, atol=1e-5)


def test_tiles_bound_the_network_input(model, monkeypatch):
    sizes = []
    original = type(model).forward

    def spy(self, x):
        sizes.append(tuple(x.shape[-2:]))
        return original(self, x)

    monkeypatch.setattr(type(model), "forward", spy)
    compute_comir(model, np.zeros((3, 200, 200), np.float32), tile=64, margin=16)
    assert len(sizes) == 16 and max(max(s) for s in sizes) == 64 + 2 * 16


def test_preview_is_8_bit():
    comir = np.random.default_rng(0).normal(size=(1, 20, 30)).astype(np.float32)
    assert preview(comir).shape == (20, 30) and preview(comir).dtype == np.uint8
    assert preview(np.concatenate([comir, comir])).shape == (20, 30, 3)
