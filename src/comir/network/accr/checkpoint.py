"""An ACCR model in the CoMIR model file format (:mod:`comir.network.checkpoint`): its encoders are a CoMIR model."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from comir.network.accr.model import ACCRConfig, ACCRNet
from comir.network.checkpoint import load_checkpoint, save_checkpoint


def save_accr(path: Path, model: ACCRNet, meta: Mapping[str, Any] | None = None) -> None:
    """Write ``model`` as a CoMIR model file (:func:`comir.network.checkpoint.save_checkpoint`) with an ``accr`` entry.

    The encoders are the file's networks (a CoMIR model: inference reads it as it reads any);
    ``accr`` holds the :class:`ACCRConfig` and the state of everything else. ``meta`` is written
    beside, as the checkpoint's.

    Parameters
    ----------
    path : pathlib.Path
        The model file to write.
    model : ACCRNet
        The model; its encoders become the file's networks.
    meta : Mapping[str, Any] or None, optional
        Further top-level keys of the payload, as :func:`comir.network.checkpoint.save_checkpoint`'s
        ``meta`` (a key ``accr`` is replaced). Default None: none.
    """
    head = {key: value.cpu() for key, value in model.state_dict().items() if not key.startswith("encoders.")}
    accr = {"config": dataclasses.asdict(model.config), "state_dict": head}
    save_checkpoint(Path(path), dict(model.encoders.items()), {**dict(meta or {}), "accr": accr})


def load_accr(path: Path, device: torch.device | str = "cpu") -> tuple[ACCRNet, dict[str, Any]]:
    """The :class:`ACCRNet` of a file written by :func:`save_accr` (eval mode, on ``device``) and its payload.

    Blocks that were shared when saved are loaded as two equal copies: the same computation.

    Parameters
    ----------
    path : pathlib.Path
        A model file written by :func:`save_accr`.
    device : torch.device or str, optional
        Where the model is loaded. Default ``"cpu"``.

    Returns
    -------
    model : ACCRNet
        The model, in eval mode, on ``device``.
    payload : dict[str, Any]
        The file's whole payload (:func:`comir.network.checkpoint.load_checkpoint`).

    Raises
    ------
    ValueError
        For a CoMIR model file without an ACCR head, one whose head state does not fit its
        configuration, or one of a newer format.
    """
    encoders, payload = load_checkpoint(Path(path), device)
    if "accr" not in payload:
        raise ValueError(f"{path} is a CoMIR model file without an ACCR head (no 'accr' entry)")
    model = ACCRNet(ACCRConfig(**payload["accr"]["config"]), encoders).to(device)
    missing, unexpected = model.load_state_dict(payload["accr"]["state_dict"], strict=False)
    if unexpected or any(not key.startswith("encoders.") for key in missing):
        raise ValueError(f"{path}: the ACCR head's state does not fit its configuration ({unexpected or missing})")
    return model.eval(), payload


__all__ = ["load_accr", "save_accr"]
