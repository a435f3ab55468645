"""Where the networks run: the configured device, and the memory format of tensors there.

Shared by training, inference and the apply stage (docs/method.md, sections 5 and 6).
"""

from __future__ import annotations

import numpy as np
import torch


def resolve_device(name: str) -> torch.device:
    """The device of a configuration's ``device``: ``auto`` is CUDA when PyTorch sees a GPU, else the CPU.

    Parameters
    ----------
    name : str
        ``"auto"``, or a device name :class:`torch.device` accepts (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...).

    Returns
    -------
    torch.device
        The device to run on.

    Raises
    ------
    RuntimeError
        If ``name`` is ``"cuda"`` but PyTorch sees no CUDA device.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("training.device is 'cuda' but PyTorch sees no CUDA device")
    return torch.device(name)


def memory_format(device: torch.device) -> torch.memory_format:
    """Channels-last on CPU, PyTorch's default on CUDA.

    Channels-last is the faster layout for a training step on CPU (benchmarks/bench_network.py;
    timings: docs/results/speed.md).

    Parameters
    ----------
    device : torch.device
        The device the tensors live on.

    Returns
    -------
    torch.memory_format
        ``torch.channels_last`` on CPU, ``torch.contiguous_format`` elsewhere.
    """
    return torch.channels_last if device.type == "cpu" else torch.contiguous_format


def to_device(array: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    """A batch on ``device`` in its memory format (the copy overlaps computation from pinned memory).

    Parameters
    ----------
    array : numpy.ndarray or torch.Tensor
        The batch, ``(N, C, H, W)`` (the channels-last format used on CPU needs a rank-4 tensor).
    device : torch.device
        The target device; the copy is non-blocking.

    Returns
    -------
    torch.Tensor
        The batch on ``device``, contiguous in :func:`memory_format` of ``device``.
    """
    tensor = torch.as_tensor(array)
    return tensor.to(device, non_blocking=True).contiguous(memory_format=memory_format(device))
