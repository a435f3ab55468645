"""Options of the training beyond the paper that change the networks or what they see (docs/method.md, section 5).

Each is off by default: shared down blocks (``training.shared_blocks``), a third
network on a view derived from one modality (``training.third_view``), and the
region masks of the anatomy-aware loss term (``training.anatomy``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from comir.imaging.preprocess import SLOTS
from comir.network.model import Tiramisu
from comir.training.settings import TrainingConfig


def region_masks(
    bright_field: np.ndarray | None,
    signal: np.ndarray | None,
    optical_density: float = 0.15,
    signal_percentile: float = 75.0,
) -> np.ndarray:
    """Binary region masks ``(K, H, W)`` float32 of one aligned training pair (``training.anatomy``, ``masks: auto``).

    Parameters
    ----------
    bright_field : numpy.ndarray or None
        ``(C, H, W)`` transmitted-light image in [0, 1] (network
        input) or ``None``. Tissue: the mean over channels of the optical
        density ``-ln(max(I, 1e-3))`` above ``optical_density`` (glass
        transmits all light, OD ~ 0; Macenko's tissue threshold, 0.15).
    signal : numpy.ndarray or None
        ``(C, H, W)`` image whose bright pixels are the structure of
        interest (SHG: collagen), or ``None``. Signal: the channel mean
        strictly above its ``signal_percentile``-th percentile over this
        image (per image, so a dim or bright acquisition marks the same
        share; a constant image marks nothing).
    optical_density : float, optional
        Tissue threshold on the optical density. Default 0.15.
    signal_percentile : float, optional
        Percentile (0 to 100) of the signal threshold. Default 75.

    Returns
    -------
    numpy.ndarray
        The tissue mask (when ``bright_field`` is given), then the signal mask
        (when ``signal`` is given), 1.0 inside, 0.0 outside: ``K`` is 0, 1 or 2
        (with neither image, an empty ``(0, 0, 0)`` array).

    Raises
    ------
    ValueError
        If both images are given and their sizes differ.
    """
    masks = []
    if bright_field is not None:
        density = -np.log(np.clip(np.asarray(bright_field, dtype=np.float64), 1e-3, None)).mean(axis=0)
        masks.append(density > optical_density)
    if signal is not None:
        intensity = np.asarray(signal, dtype=np.float64).mean(axis=0)
        masks.append(intensity > np.percentile(intensity, signal_percentile))
    if bright_field is not None and signal is not None and masks[0].shape != masks[1].shape:
        raise ValueError(f"region masks of images of different sizes: {masks[0].shape} and {masks[1].shape}")
    if not masks:
        return np.zeros((0, 0, 0), dtype=np.float32)
    return np.stack(masks).astype(np.float32)


def pair_region_masks(pairs: Sequence[tuple[np.ndarray, np.ndarray]], cfg: TrainingConfig) -> list[np.ndarray] | None:
    """Per training pair its :func:`region_masks` as ``training.anatomy`` configures them; ``None`` when it is off.

    Parameters
    ----------
    pairs : Sequence[tuple[numpy.ndarray, numpy.ndarray]]
        The aligned training pairs, ``(C, H, W)`` images of the slots ``A`` and ``B`` in [0, 1].
    cfg : TrainingConfig
        The run's settings; ``anatomy_settings`` names which slot gives the tissue (``tissue_from``)
        and which the signal (``signal_from``), and the thresholds.

    Returns
    -------
    list of numpy.ndarray or None
        One ``(K, H, W)`` float32 mask stack per pair, or ``None`` when ``training.anatomy`` is off.

    Raises
    ------
    ValueError
        If ``anatomy.masks`` is not ``"auto"``, or neither ``tissue_from`` nor ``signal_from`` is set.
    """
    settings = cfg.anatomy_settings
    if settings is None:
        return None
    if settings["masks"] != "auto":
        raise ValueError(
            f"training.anatomy.masks must be 'auto' (masks from files are not supported), got {settings['masks']!r}"
        )
    tissue, signal = settings["tissue_from"], settings["signal_from"]
    if tissue is None and signal is None:
        raise ValueError("training.anatomy needs tissue_from or signal_from: no region would be defined")
    return [
        region_masks(
            pair[SLOTS.index(tissue)] if tissue is not None else None,
            pair[SLOTS.index(signal)] if signal is not None else None,
            settings["optical_density"],
            settings["signal_percentile"],
        )
        for pair in pairs
    ]


THIRD_VIEWS = ("grey", "sobel", "haematoxylin")
# The third network's slot and its seed offset (A and B use 0 and 1, build_models).
THIRD_SLOT = "C"


def derived_view(patches: torch.Tensor, view: str) -> torch.Tensor:
    """A single-channel view of a modality's patches ``(N, C, H, W)`` in [0, 1], for the third network.

    ``grey``: the channel mean; ``sobel``: the gradient magnitude of the grey
    image (:class:`comir.network.model.InputFilters`); ``haematoxylin``: the
    haematoxylin optical density of an RGB bright-field patch (Ruifrok and
    Johnston's colour deconvolution, :data:`comir.imaging.stain.HED_FROM_RGB`).

    Parameters
    ----------
    patches : torch.Tensor
        ``(N, C, H, W)`` patches in [0, 1]; ``C = 3`` (RGB) for ``haematoxylin``.
    view : {"grey", "sobel", "haematoxylin"}
        Which view (:data:`THIRD_VIEWS`).

    Returns
    -------
    torch.Tensor
        ``(N, 1, H, W)`` view, in the dtype of ``patches``.

    Raises
    ------
    ValueError
        If ``view`` is not one of :data:`THIRD_VIEWS`.
    """
    from comir.imaging.stain import HED_FROM_RGB
    from comir.network.model import InputFilters

    if view == "grey":
        return patches.mean(dim=1, keepdim=True)
    if view == "sobel":
        return InputFilters(("sobel",)).to(patches.device)(patches)[:, -1:]
    if view == "haematoxylin":
        density = -torch.log(patches.float().clamp(1e-3, 1.0))
        unmix = torch.as_tensor(HED_FROM_RGB[:, 0], dtype=density.dtype, device=density.device)
        return torch.einsum("nchw,c->nhw", density, unmix)[:, None].to(patches.dtype)
    raise ValueError(f"third view must be one of {THIRD_VIEWS}, got {view!r}")


def network_inputs(batch: Sequence[torch.Tensor], cfg: TrainingConfig) -> list[torch.Tensor]:
    """The networks' inputs of a batch: A, B and, with ``third_view``, the view derived from one of them.

    Parameters
    ----------
    batch : Sequence[torch.Tensor]
        The ``(N, C, H, W)`` patches of the slots ``A`` and ``B``, in that order.
    cfg : TrainingConfig
        The run's settings; ``third_view`` (``{from, view}``) names the slot and the :func:`derived_view`.

    Returns
    -------
    list of torch.Tensor
        ``batch``'s tensors, followed by the derived view when ``third_view`` is set.
    """
    if not cfg.third_view:
        return list(batch)
    return [*batch, derived_view(batch[SLOTS.index(cfg.third_view["from"])], cfg.third_view["view"])]


def third_network(models: Mapping[str, Tiramisu], cfg: TrainingConfig) -> dict[str, Tiramisu]:
    """The networks trained: A and B and, with ``third_view``, a third one of A's architecture on one channel.

    The third network adds a third view to the InfoNCE (M = 3 points per place,
    docs/method.md, section 3); it is not part of the model file, whose CoMIRs
    are A's and B's.

    Parameters
    ----------
    models : Mapping[str, Tiramisu]
        The networks of the slots ``A`` and ``B``.
    cfg : TrainingConfig
        The run's settings. With ``third_view``, torch's global generator is seeded with
        ``cfg.seed * 1000 + 2`` before the third network is built.

    Returns
    -------
    dict[str, Tiramisu]
        ``models``, plus the new network in the slot :data:`THIRD_SLOT` when ``third_view`` is set.
    """
    if not cfg.third_view:
        return dict(models)
    torch.manual_seed(cfg.seed * 1000 + 2)
    config = dataclasses.replace(models["A"].config, in_channels=1)
    return {**models, THIRD_SLOT: Tiramisu(config)}


def share_blocks(models: Mapping[str, Tiramisu], count: int) -> None:
    """Make the first ``count`` down blocks and their transitions of network B those of network A.

    Each network keeps its own first convolution (the stem: the modalities'
    channel counts differ) and everything after the shared blocks; the shared
    modules are one set of parameters, trained by both modalities' batches
    (the ablation ``training.shared_blocks``).  The state_dicts still hold
    every parameter, so saved networks load and run independently.

    Parameters
    ----------
    models : Mapping[str, Tiramisu]
        The networks of the slots ``A`` and ``B``; B is modified in place.
    count : int
        Number of leading down blocks (with their transitions down) to share; 0 shares none.

    Raises
    ------
    ValueError
        If ``count`` exceeds the number of down blocks, or the networks' ``init_filters`` differ.
    """
    a, b = models["A"], models["B"]
    if count > len(a.down_blocks):
        raise ValueError(f"shared_blocks is {count} but the networks have {len(a.down_blocks)} down blocks")
    if a.first_conv.out_channels != b.first_conv.out_channels:
        raise ValueError("shared blocks need the same init_filters in both networks")
    for index in range(count):
        b.down_blocks[index] = a.down_blocks[index]
        b.transitions_down[index] = a.transitions_down[index]


def unique_parameters(models: Mapping[str, Tiramisu]) -> list[torch.nn.Parameter]:
    """Every parameter of the networks once (shared blocks would otherwise be stepped twice).

    Parameters
    ----------
    models : Mapping[str, Tiramisu]
        The networks.

    Returns
    -------
    list of torch.nn.Parameter
        Each distinct parameter once, in the order first met.
    """
    return list({id(p): p for model in models.values() for p in model.parameters()}.values())
