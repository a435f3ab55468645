"""Mixed precision shared by training and inference (docs/method.md, sections 5 and 6).

One place decides, for a device, whether the networks run under
:func:`torch.autocast`, in which dtype, and whether gradients need a
:class:`torch.amp.GradScaler`, so that a CoMIR is computed in the precision
its network was trained in:

* CUDA: bfloat16 where the GPU supports it, else float16 (which needs a
  GradScaler: its 5 exponent bits underflow small gradients);
* CPU: bfloat16 (same exponent range as float32, no scaler).

The configuration enables mixed precision only on CUDA
(:data:`MIXED_PRECISION_DEVICE_TYPES`): CPUs without native bfloat16 units run
it slower than float32. The helpers themselves work on any of these device
types, so the autocast code path is tested on CPU. The loss always runs in
float32 with autocast disabled (:mod:`comir.training.loss`).
"""

from __future__ import annotations

import contextlib

import torch

# Device types on which ``mixed_precision: true`` of the configuration takes effect.
MIXED_PRECISION_DEVICE_TYPES: tuple[str, ...] = ("cuda",)


def mixed_precision_enabled(device: torch.device | str, requested: bool) -> bool:
    """Whether the configuration's ``mixed_precision`` flag applies on ``device``.

    The rule of ``training.mixed_precision`` and ``inference.mixed_precision``:
    requested, and the device type is in :data:`MIXED_PRECISION_DEVICE_TYPES`.

    Parameters
    ----------
    device : torch.device or str
        The device the networks run on.
    requested : bool
        The configuration's ``mixed_precision`` flag.

    Returns
    -------
    bool
        Whether to run under :func:`autocast`.
    """
    return bool(requested) and torch.device(device).type in MIXED_PRECISION_DEVICE_TYPES


def autocast_dtype(device: torch.device | str) -> torch.dtype:
    """The reduced precision of ``device``: bf16 on CPU and on CUDA GPUs with bf16, else fp16.

    Parameters
    ----------
    device : torch.device or str
        A CPU or CUDA device.

    Returns
    -------
    torch.dtype
        ``torch.bfloat16`` or ``torch.float16``.

    Raises
    ------
    ValueError
        If the device type is neither ``cpu`` nor ``cuda``.
    """
    device_type = torch.device(device).type
    if device_type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device_type == "cpu":
        return torch.bfloat16
    raise ValueError(f"no mixed precision rule for device type {device_type!r}; use 'cpu' or 'cuda'")


def autocast(device: torch.device | str, enabled: bool) -> contextlib.AbstractContextManager:
    """``torch.autocast`` to :func:`autocast_dtype` of ``device`` when ``enabled``, else a no-op context.

    ``enabled`` is used as given: pass :func:`mixed_precision_enabled` to apply
    the configuration's CUDA-only rule.

    Parameters
    ----------
    device : torch.device or str
        The device the networks run on (``cpu`` or ``cuda``).
    enabled : bool
        Whether to run under autocast at all.

    Returns
    -------
    contextlib.AbstractContextManager
        The autocast context, or :func:`contextlib.nullcontext` when not ``enabled``.

    Raises
    ------
    ValueError
        If ``enabled`` and the device type has no rule in :func:`autocast_dtype`.
    """
    if not enabled:
        return contextlib.nullcontext()
    device = torch.device(device)
    return torch.autocast(device_type=device.type, dtype=autocast_dtype(device))


def needs_grad_scaler(device: torch.device | str, enabled: bool) -> bool:
    """Whether training under :func:`autocast` needs loss scaling: only for float16.

    Parameters
    ----------
    device : torch.device or str
        The device the networks train on.
    enabled : bool
        Whether training runs under :func:`autocast`.

    Returns
    -------
    bool
        True when ``enabled`` and :func:`autocast_dtype` of ``device`` is float16.
    """
    return bool(enabled) and autocast_dtype(device) == torch.float16
