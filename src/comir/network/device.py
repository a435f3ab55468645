"""Where the networks run: the configured device, and the memory format of tensors there.

Shared by training, inference and the apply stage (docs/method.md, sections 5 and 6).
"""

from __future__ import annotations

import numpy as np
import torch


def resolve_device(name: str) -> torch.device:
    """The device of a configuration's ``device``: ``auto`` is CUDA when PyTorch sees a GPU, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("training.device is 'cuda' but PyTorch sees no CUDA device")
    return torch.device(name)


def memory_format(device: torch.device) -> torch.memory_format:
    """Channels-last on CPU, PyTorch's default on CUDA.

    Channels-last is the faster layout for a training step on CPU (benchmarks/bench_network.py;
    timings: docs/results/speed.md).
    """
    return torch.channels_last if device.type == "cpu" else torch.contiguous_format


def to_device(array: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    """A batch on ``device`` in its memory format (the copy overlaps computation from pinned memory)."""
    tensor = torch.as_tensor(array)
    return tensor.to(device, non_blocking=True).contiguous(memory_format=memory_format(device))
