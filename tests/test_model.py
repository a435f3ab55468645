"""Tests of comir.network.model (FC-DenseNet / Tiramisu)."""

from __future__ import annotations

import io
import json

import pytest
import torch

import comir.network.model as model_module
from comir.network.model import Tiramisu, TiramisuConfig, count_parameters

BIOMEDICAL_PARAMS = 1.05e6
ZURICH_PARAMS = 0.165e6


def zurich_config(**overrides) -> TiramisuConfig:
    kwargs = dict(
        in_channels=3,
        out_channels=3,
        init_filters=16,
        down_blocks=(2, 2, 2),
        bottleneck=3,
        compression=1.0,
        dropout=0.0,
    )
    kwargs.update(overrides)
    return TiramisuConfig(**kwargs)


def tiny_config(**overrides) -> TiramisuConfig:
    kwargs = dict(
        in_channels=2,
        out_channels=3,
        init_filters=8,
        down_blocks=(2, 3),
        bottleneck=2,
        growth_rate=4,
        compression=0.75,
        dropout=0.0,
    )
    kwargs.update(overrides)
    return TiramisuConfig(**kwargs)


def test_config_defaults_and_derived_values():
    cfg = TiramisuConfig(in_channels=1, out_channels=1)
    assert cfg.up_blocks == (4, 4, 4, 4, 4, 4)
    assert cfg.depth == 6 and cfg.multiple == 64
    asym = TiramisuConfig(1, 1, down_blocks=(2, 3, 4))
    assert asym.up_blocks == (4, 3, 2)
    assert asym.depth == 3 and asym.multiple == 8


def test_config_round_trip_is_json_safe():
    for cfg in (TiramisuConfig(3, 1), zurich_config(checkpoint=True), tiny_config(up_blocks=(1, 2))):
        d = cfg.to_dict()
        assert isinstance(d["down_blocks"], list) and isinstance(d["up_blocks"], list)
        restored = TiramisuConfig.from_dict(json.loads(json.dumps(d)))
        assert restored == cfg
        assert isinstance(restored.down_blocks, tuple)


def test_config_validation():
    with pytest.raises(ValueError):
        TiramisuConfig.from_dict({"in_channels": 1, "out_channels": 1, "growth": 12})
    with pytest.raises(ValueError):
        TiramisuConfig(1, 1, down_blocks=(4, 4), up_blocks=(4,))
    with pytest.raises(ValueError):
        TiramisuConfig(1, 1, compression=0.0)
    with pytest.raises(ValueError):
        TiramisuConfig(1, 1, dropout=1.0)
    with pytest.raises(ValueError):
        TiramisuConfig(1, 1, down_blocks=())


@pytest.mark.parametrize("in_channels", [1, 3])
def test_biomedical_parameter_count(in_channels):
    n = count_parameters(Tiramisu(TiramisuConfig(in_channels=in_channels, out_channels=1)))
    assert abs(n - BIOMEDICAL_PARAMS) / BIOMEDICAL_PARAMS < 0.05, n


def test_zurich_parameter_count():
    n = count_parameters(Tiramisu(zurich_config()))
    assert abs(n - ZURICH_PARAMS) / ZURICH_PARAMS < 0.05, n


def test_channel_arithmetic_of_biomedical_config():
    net = Tiramisu(TiramisuConfig(in_channels=1, out_channels=1))
    # down blocks: 32 + 4*12 = 80 -> int(80*0.75) = 60 -> 108 -> 81 -> 129 -> 96 -> 144 -> 108
    # -> 156 -> 117 -> 165 -> 123
    assert [t[2].out_channels for t in net.transitions_down] == [60, 81, 96, 108, 117, 123]
    # bottleneck and up blocks: only the 4*12 = 48 new features are upsampled
    assert [t.up[1].out_channels for t in net.transitions_up] == [48] * 6
    assert [b.layers[0].norm.num_features for b in net.up_blocks] == [213, 204, 192, 177, 156, 128]
    # the last up block keeps its input: 48 + 80 (skip) + 48 new
    assert net.head.in_channels == 176


def test_head_has_no_bias_and_no_activation():
    net = Tiramisu(tiny_config())
    assert net.head.bias is None
    net.eval()
    with torch.no_grad():
        y = net(torch.randn(2, 2, 8, 8))
    assert (y < 0).any() and (y > 0).any()  # no ReLU/sigmoid at the end


@pytest.mark.parametrize("size", [(8, 8), (16, 24), (32, 8)])
def test_output_shape_zurich(size):
    net = Tiramisu(zurich_config()).eval()
    with torch.no_grad():
        y = net(torch.randn(2, 3, *size))
    assert y.shape == (2, 3, *size)


def test_output_shape_biomedical():
    net = Tiramisu(TiramisuConfig(in_channels=3, out_channels=1)).eval()
    with torch.no_grad():
        y = net(torch.randn(1, 3, 64, 128))
    assert y.shape == (1, 1, 64, 128)


def test_invalid_input_raises():
    net = Tiramisu(zurich_config())
    with pytest.raises(ValueError, match="divisible"):
        net(torch.randn(1, 3, 12, 16))
    with pytest.raises(ValueError, match="divisible"):
        net(torch.randn(1, 3, 16, 20))
    with pytest.raises(ValueError, match="channel"):
        net(torch.randn(1, 1, 16, 16))
    with pytest.raises(ValueError):
        net(torch.randn(3, 16, 16))


def test_state_dict_round_trip_reproduces_output():
    cfg = tiny_config(dropout=0.2)
    torch.manual_seed(0)
    net = Tiramisu(cfg)
    x = torch.randn(3, 2, 8, 8)
    net.train()
    net(x)  # move the BN running statistics away from their initial values
    net.eval()
    with torch.no_grad():
        expected = net(x)
    buffer = io.BytesIO()
    torch.save({"config": cfg.to_dict(), "state_dict": net.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    torch.manual_seed(1)
    restored = Tiramisu(TiramisuConfig.from_dict(saved["config"]))
    with torch.no_grad():
        assert not torch.allclose(restored.eval()(x), expected)  # different init before loading
    restored.load_state_dict(saved["state_dict"])
    restored.eval()
    with torch.no_grad():
        assert torch.equal(restored(x), expected)


def _output_and_grads(net: Tiramisu, x: torch.Tensor):
    x = x.clone().requires_grad_()
    y = net(x)
    (y * torch.linspace(-1, 1, y.numel()).reshape(y.shape)).sum().backward()
    return y.detach(), x.grad, {name: p.grad.clone() for name, p in net.named_parameters()}


@pytest.mark.parametrize("train_mode", [False, True])
def test_checkpoint_gives_same_output_and_gradients(train_mode, monkeypatch):
    calls = []
    real_checkpoint = model_module.checkpoint

    def counting_checkpoint(*args, **kwargs):
        calls.append(1)
        return real_checkpoint(*args, **kwargs)

    monkeypatch.setattr(model_module, "checkpoint", counting_checkpoint)
    dropout = 0.2 if train_mode else 0.0
    torch.manual_seed(0)
    plain = Tiramisu(tiny_config(dropout=dropout))
    ckpt = Tiramisu(tiny_config(dropout=dropout, checkpoint=True))
    ckpt.load_state_dict(plain.state_dict())
    plain.train(train_mode)
    ckpt.train(train_mode)
    x = torch.randn(2, 2, 8, 8)

    torch.manual_seed(123)  # same dropout masks in both runs
    y_plain, gx_plain, g_plain = _output_and_grads(plain, x)
    assert not calls
    torch.manual_seed(123)
    y_ckpt, gx_ckpt, g_ckpt = _output_and_grads(ckpt, x)
    n_layers = sum(ckpt.config.down_blocks) + ckpt.config.bottleneck + sum(ckpt.config.up_blocks)
    assert len(calls) == n_layers  # every dense layer went through checkpointing

    torch.testing.assert_close(y_ckpt, y_plain, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(gx_ckpt, gx_plain, rtol=1e-5, atol=1e-6)
    assert g_ckpt.keys() == g_plain.keys()
    for name in g_plain:
        torch.testing.assert_close(g_ckpt[name], g_plain[name], rtol=1e-5, atol=1e-6, msg=name)


def test_checkpoint_skipped_without_gradients(monkeypatch):
    calls = []
    monkeypatch.setattr(model_module, "checkpoint", lambda *a, **k: calls.append(1))
    net = Tiramisu(tiny_config(checkpoint=True)).eval()
    with torch.no_grad():
        net(torch.randn(1, 2, 8, 8))
    assert not calls


# Receptive field: analytic walk against a measurement on networks of several depths.
FIELD_CONFIGS = [
    dict(down_blocks=(1,), bottleneck=1),
    dict(down_blocks=(2, 1), bottleneck=2, up_blocks=(1, 2)),
    dict(down_blocks=(1, 1, 1), bottleneck=1),
    dict(down_blocks=(1, 2, 1, 1), bottleneck=1),
    dict(down_blocks=(1,) * 6, bottleneck=1),
]


def _positive_network(config: TiramisuConfig) -> Tiramisu:
    """A float64 copy of the architecture whose input gradient is positive exactly on its receptive field.

    Weights and biases are made positive (no cancellation; every ReLU stays active on positive inputs)
    and each convolution averages its inputs (no overflow through the layers). Max-pooling routes the
    gradient to the argmax of each window only, so it is replaced by average pooling, which reads the
    same 2x2 windows at stride 2 and passes gradient to all four.
    """
    torch.manual_seed(0)
    model = Tiramisu(config).double().eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d):
                module.weight.abs_().add_(1e-3)
                module.weight.div_(module.weight.sum(dim=(1, 2, 3), keepdim=True))
                if module.bias is not None:
                    module.bias.abs_().add_(1e-3)
            elif isinstance(module, torch.nn.BatchNorm2d):
                module.bias.abs_().add_(1e-3)
    for transition in model.transitions_down:
        assert isinstance(transition[-1], torch.nn.MaxPool2d)
        transition[-1] = torch.nn.AvgPool2d(2)
    return model


def _measured_offsets(model: Tiramisu, axis: int, residues: list[int]) -> list[tuple[int, int]]:
    """The (first, last) input offsets where one output pixel's gradient is non-zero, per residue.

    For output positions with the given residues mod 2**depth, along ``axis`` (0: rows, 1: columns).
    The image is long along ``axis`` (the field fits with room to spare, so it is not clipped) and
    2**depth px across: the field is a rectangle, so clipping it across does not change its extent
    along ``axis``. One batch item per residue (eval mode: items are independent).
    """
    from comir.network.model import receptive_field

    config = model.config
    period = config.multiple
    field = receptive_field(config)  # only to size the image generously
    start = -(-(field.before + period) // period) * period
    length = -(-(start + period + field.after + period) // period) * period
    r = torch.tensor(residues)
    shape = (len(r), config.in_channels, length, period) if axis == 0 else (len(r), config.in_channels, period, length)
    x = (1.0 + torch.rand(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))).requires_grad_()
    out = model(x)
    q = start + r  # output positions with residues r
    item = torch.arange(len(r))
    picked = out[item, :, q, period // 2] if axis == 0 else out[item, :, period // 2, q]
    picked.sum().backward()
    reach = x.grad.abs().sum(dim=(1, 3) if axis == 0 else (1, 2)) > 0  # (len(r), length)
    offsets = []
    for i in range(len(r)):
        idx = reach[i].nonzero().squeeze(1)
        first, last = int(idx.min()), int(idx.max())
        assert len(idx) == last - first + 1, "the receptive field has holes"
        assert first > 0 and last < length - 1, "the measurement image clipped the field"
        offsets.append((first - int(q[i]), last - int(q[i])))
    return offsets


@pytest.mark.parametrize("blocks", FIELD_CONFIGS, ids=lambda b: f"depth{len(b['down_blocks'])}")
def test_receptive_field_matches_gradient_support(blocks):
    from comir.network.model import receptive_field

    # One or two channels per layer: the field does not depend on channel counts, and it keeps this fast.
    config = TiramisuConfig(in_channels=1, out_channels=1, init_filters=1, growth_rate=1, dropout=0.0, **blocks)
    analytic = receptive_field(config)
    assert analytic.period == config.multiple
    model = _positive_network(config)
    period = config.multiple
    # Every residue of the pooling grid; for the deepest network (time) its first and last eight,
    # where the field changes shape, along rows only.
    residues = list(range(period)) if config.depth < 6 else list(range(8)) + list(range(period - 8, period))
    for axis in (0, 1) if config.depth < 6 else (0,):
        assert _measured_offsets(model, axis, residues) == [analytic.offsets[r] for r in residues]


def test_required_margin_covers_the_field_of_every_residue():
    from comir.network.model import receptive_field, required_margin

    for blocks in FIELD_CONFIGS + [dict(down_blocks=(4,) * 6, bottleneck=4), dict(down_blocks=(2, 2, 2), bottleneck=2)]:
        config = TiramisuConfig(in_channels=1, out_channels=1, **blocks)
        field, margin, period = receptive_field(config), required_margin(config), config.multiple
        assert margin % period == 0
        # A kept tile [t0, t1) (multiples of the period) with `margin` px of context reads [t0 - margin, t1 + margin).
        first_needed = min(r + first for r, (first, _) in enumerate(field.offsets))
        last_needed = max(r + last for r, (_, last) in enumerate(field.offsets))
        assert first_needed >= -margin and last_needed <= period - 1 + margin
        # ... and one period less would not do.
        assert first_needed < -(margin - period) or last_needed > period - 1 + margin - period
    # The networks of this project (config/README.md, "Defaults"): demo, test and paper configurations.
    assert required_margin(TiramisuConfig(3, 1, init_filters=16, down_blocks=(2, 2, 2), bottleneck=2)) == 56
    assert required_margin(TiramisuConfig(3, 1, init_filters=8, down_blocks=(1, 1), bottleneck=1)) == 16
    assert required_margin(TiramisuConfig(3, 1)) == 832
