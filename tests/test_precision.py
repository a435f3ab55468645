"""Tests of comir.network.precision, the mixed precision shared by training and inference."""

from __future__ import annotations

import contextlib

import pytest
import torch

from comir.network import precision


def test_cpu_choices():
    cpu = torch.device("cpu")
    assert precision.autocast_dtype(cpu) == torch.bfloat16
    assert not precision.needs_grad_scaler(cpu, True)
    # The configuration enables mixed precision on CUDA only.
    assert not precision.mixed_precision_enabled(cpu, True)
    assert not precision.mixed_precision_enabled("cuda", False)
    assert precision.mixed_precision_enabled("cuda:0", True)


@pytest.mark.parametrize("bf16", [True, False])
def test_cuda_choices(monkeypatch, bf16):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: bf16)
    cuda = torch.device("cuda")
    assert precision.autocast_dtype(cuda) == (torch.bfloat16 if bf16 else torch.float16)
    # Only float16 (5 exponent bits) needs loss scaling; never when disabled.
    assert precision.needs_grad_scaler(cuda, True) == (not bf16)
    assert not precision.needs_grad_scaler(cuda, False)


def test_autocast_context():
    assert isinstance(precision.autocast("cpu", False), contextlib.nullcontext)
    with precision.autocast(torch.device("cpu"), True):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    assert not torch.is_autocast_enabled("cpu")
    with precision.autocast("cpu", False):
        assert not torch.is_autocast_enabled("cpu")
    with pytest.raises(ValueError, match="no mixed precision rule"):
        precision.autocast_dtype("meta")


def test_training_uses_the_helper():
    """The training loop's autocast is the shared one (so a forward pass is in the dtype inference uses)."""
    from comir.training.loop import _autocast

    with _autocast(torch.device("cpu"), True):
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16 and torch.is_autocast_enabled("cpu")
    assert isinstance(_autocast(torch.device("cuda"), False), contextlib.nullcontext)
