"""The model file (``comir.pt``): the networks' state_dicts and configurations, versioned.

Written by the ``train`` rule (:func:`save_checkpoint`), read by inference, the
representation stages and the apply stage (:func:`load_checkpoint`, ``weights_only``);
what else the file records (modalities, training settings, provenance, input
statistics, calibrations) is the writer's ``meta``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from comir.io import atomic_path
from comir.network.model import Tiramisu, TiramisuConfig

# Version of the model file's layout: a reader refuses files of a newer layout instead of misreading
# them. Files without the key (written before it existed) are version 1. Keys added since (e.g.
# ``input_statistics``) are optional: readers skip what they need when it is absent.
CHECKPOINT_FORMAT = 1


def save_checkpoint(path: Path, models: Mapping[str, Tiramisu], meta: Mapping[str, Any]) -> None:
    """state_dicts plus everything needed to rebuild the networks (never a pickled module), versioned.

    Parameters
    ----------
    path : pathlib.Path
        The model file to write (atomically: an interrupted write leaves no partial file).
    models : Mapping[str, Tiramisu]
        The networks by slot; each one's state_dict (moved to the CPU) and configuration are saved.
    meta : Mapping[str, Any]
        Further top-level keys of the payload (modalities, training settings, provenance, ...).
    """
    payload = {
        "format": CHECKPOINT_FORMAT,
        "state_dicts": {slot: {k: v.cpu() for k, v in m.state_dict().items()} for slot, m in models.items()},
        "model_configs": {slot: m.config.to_dict() for slot, m in models.items()},
        **meta,
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> tuple[dict[str, Tiramisu], dict[str, Any]]:
    """The networks of a checkpoint (eval mode, on ``device``) and its whole payload (``weights_only``).

    Parameters
    ----------
    path : pathlib.Path
        The model file written by :func:`save_checkpoint`.
    device : torch.device or str, optional
        Where the tensors are loaded and the networks placed. Default ``"cpu"``.

    Returns
    -------
    models : dict[str, Tiramisu]
        The networks by slot, in eval mode, on ``device``.
    payload : dict[str, Any]
        The whole payload: ``format``, ``state_dicts``, ``model_configs`` and the writer's ``meta``.

    Raises
    ------
    ValueError
        If the file is of a newer layout than :data:`CHECKPOINT_FORMAT` (or its ``format`` is not an int).
    """
    payload = torch.load(path, map_location=device, weights_only=True)
    version = payload.get("format", 1)
    if not isinstance(version, int) or version > CHECKPOINT_FORMAT:
        raise ValueError(
            f"{path} is a model file of format {version!r}; this version of comir reads format "
            f"{CHECKPOINT_FORMAT} and older: update comir"
        )
    models = {}
    for slot, config in payload["model_configs"].items():
        model = Tiramisu(TiramisuConfig.from_dict(config))
        model.load_state_dict(payload["state_dicts"][slot])
        models[slot] = model.to(device).eval()
    return models, payload
