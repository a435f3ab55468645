"""The translation baselines in the pipeline: trained on a dataset's pairs, applied to its test set.

docs/translation.md, section 7.

A ``translation`` entry of a dataset names a method and its hyper-parameters.
CycleGAN and DRIT translate both ways with one model; pix2pix learns one
direction per model, so an entry trains two (``a2b`` and ``b2a``, seeded apart).

Training patches come from the CoMIR training sampler (:class:`comir.training.sampler.PatchSampler`:
padding-free rotations, flips, both modalities moved alike), seeded from the
configuration; an epoch is ``steps_per_epoch`` steps of ``batch_size`` pairs,
and the learning rate follows each method's schedule over its epochs.

The test set is translated into a folder that the ``register`` rule reads like
a variant's CoMIRs: for every case ``<case>_A_ref.tif`` and ``<case>_B_ref.tif``
are the pre-processed real reference patches, ``<case>_B_flo.tif`` is the B
floating patch translated into modality A and ``<case>_A_flo.tif`` the A
floating patch translated into B.  Direction ``B_to_A`` thus registers a fake A
image to the real A reference, ``A_to_B`` a fake B to the real B (the paper's
"fake-BF vs BF, fake-SHG vs SHG").  DRIT styles a translation with the
attribute code of the image's own pair partner: the other modality's floating
patch of the same case (the CoMIR paper's adjustment for registration).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from comir.imaging.preprocess import prepare_modality_image
from comir.io import atomic_path, read_image, write_tiff
from comir.training.sampler import PatchSampler
from comir.translation import METHODS, build_model

log = logging.getLogger(__name__)

# Keys of an entry's ``params`` that the pipeline sets itself.
_PIPELINE_OWNED = {"pix2pix": ("direction",)}


@dataclass(frozen=True)
class TranslationTraining:
    """How an entry's models are fed: patches per step, steps per epoch, augmentation, device."""

    steps_per_epoch: int = 100
    batch_size: int = 1
    patch_size: int = 256
    rotation: bool = True
    flips: bool = True
    device: str = "auto"
    mixed_precision: bool = True


def check_entry(method: str, params: Mapping[str, Any]) -> None:
    """A :class:`ValueError` naming the key when ``params`` are not valid for ``method`` (parse-time check).

    Parameters
    ----------
    method : str
        A key of :data:`comir.translation.METHODS`.
    params : Mapping[str, Any]
        The entry's hyper-parameters, for the method's config class; pix2pix's ``direction`` is the
        pipeline's to set.

    Raises
    ------
    ValueError
        If ``method`` is unknown, ``params`` set a key the pipeline owns, or a key is unknown or invalid.
    """
    if method not in METHODS:
        raise ValueError(f"unknown translation method {method!r}; expected one of {', '.join(METHODS)}")
    owned = sorted(set(params) & set(_PIPELINE_OWNED.get(method, ())))
    if owned:
        raise ValueError(
            f"{method} parameter(s) {', '.join(owned)} are set by the pipeline (both directions are trained)"
        )
    METHODS[method].config_class.from_dict(dict(params))


def build_translators(
    method: str,
    params: Mapping[str, Any],
    channels: Mapping[str, int],
    seed: int,
    device: torch.device | str = "cpu",
    mixed_precision: bool = False,
) -> dict[str, Any]:
    """The models of one entry by direction: ``{"a2b": ..., "b2a": ...}`` for pix2pix, ``{"both": ...}`` else.

    Parameters
    ----------
    method : str
        A key of :data:`comir.translation.METHODS`.
    params : Mapping[str, Any]
        The entry's hyper-parameters (checked with :func:`check_entry`).
    channels : Mapping[str, int]
        Channel counts by slot, ``{"A": ..., "B": ...}``.
    seed : int
        Seed of the model; pix2pix's ``b2a`` model gets ``seed + 1``.
    device : torch.device or str, optional
        Where the networks live and run. Default ``"cpu"``.
    mixed_precision : bool, optional
        Run the networks under autocast. Default False.

    Returns
    -------
    dict[str, Any]
        The untrained models by direction (``"a2b"``, ``"b2a"``) or ``"both"``.

    Raises
    ------
    ValueError
        If the entry is invalid (:func:`check_entry`).
    """
    check_entry(method, params)
    options = dict(device=device, mixed_precision=mixed_precision)
    if method == "pix2pix":
        return {
            direction: build_model(method, channels["A"], channels["B"], {**params, "direction": direction},
                                   seed=seed + offset, **options)
            for offset, direction in enumerate(("a2b", "b2a"))
        }  # fmt: skip
    return {"both": build_model(method, channels["A"], channels["B"], dict(params), seed=seed, **options)}


def _model_for(translators: Mapping[str, Any], direction: str) -> Any:
    return translators.get(direction, translators.get("both"))


def train_translators(
    translators: Mapping[str, Any],
    train_pairs: Sequence[tuple[np.ndarray, np.ndarray]],
    training: TranslationTraining,
    seed: int,
) -> pd.DataFrame:
    """Train every model of an entry on patches of ``train_pairs`` ((A, B) pre-processed arrays); the loss history.

    One row per epoch and model: the mean of each loss term over the epoch's steps.

    Parameters
    ----------
    translators : Mapping[str, Any]
        The entry's models by name (:func:`build_translators`); trained in place.
    train_pairs : Sequence[tuple[numpy.ndarray, numpy.ndarray]]
        Pre-processed ``(A, B)`` training arrays, ``(C, H, W)`` each.
    training : TranslationTraining
        Steps per epoch, batch size, patch size and augmentation.
    seed : int
        Seeds the patch stream ``[seed, 11]``, apart from the models' own seeds.

    Returns
    -------
    pandas.DataFrame
        Columns ``epoch`` (1-based), ``model`` and one per loss term. Training runs the longest
        model's epochs; a model with fewer stays at the rate its schedule reaches at its end.

    Raises
    ------
    FloatingPointError
        If an epoch's mean loss term is not finite.
    """
    sampler = PatchSampler(train_pairs, training.patch_size, training.rotation, training.flips)
    rng = np.random.default_rng([seed, 11])  # the patch stream, apart from the networks' seeds
    epochs = max(model.epochs for model in translators.values())
    rows = []
    for epoch in range(epochs):
        sums: dict[str, dict[str, float]] = {name: {} for name in translators}
        for model in translators.values():
            model.set_epoch(min(epoch, model.epochs))
        for _ in range(training.steps_per_epoch):
            batch_a, batch_b = sampler.sample(rng, training.batch_size)
            for name, model in translators.items():
                for term, value in model.training_step(batch_a, batch_b).items():
                    sums[name][term] = sums[name].get(term, 0.0) + value
        for name, terms in sums.items():
            means = {term: total / training.steps_per_epoch for term, total in terms.items()}
            rows.append({"epoch": epoch + 1, "model": name, **means})
            if not all(math.isfinite(v) for v in means.values()):
                raise FloatingPointError(f"{name} epoch {epoch + 1}: a loss term is not finite: {means}")
        log.info("epoch %d/%d: %s", epoch + 1, epochs, "; ".join(
            f"{name} " + ", ".join(f"{t} {v / training.steps_per_epoch:.4f}" for t, v in terms.items())
            for name, terms in sums.items()))  # fmt: skip
    return pd.DataFrame(rows)


def checkpoint(method: str, params: Mapping[str, Any], modalities: Mapping[str, Any], translators: Mapping[str, Any],
               meta: Mapping[str, Any]) -> dict[str, Any]:  # fmt: skip
    """Everything to rebuild an entry's models (loadable with ``weights_only=True``).

    Parameters
    ----------
    method : str
        The entry's method.
    params : Mapping[str, Any]
        The entry's hyper-parameters.
    modalities : Mapping[str, Any]
        The modality sections by slot (``channels`` is read back by :func:`load_translators`).
    translators : Mapping[str, Any]
        The trained models by name.
    meta : Mapping[str, Any]
        Further entries of the payload.

    Returns
    -------
    dict[str, Any]
        ``method``, ``params``, ``modalities``, ``state_dicts`` (by model name) and the keys of ``meta``.
    """
    return {
        "method": method,
        "params": dict(params),
        "modalities": {slot: dict(spec) for slot, spec in modalities.items()},
        "state_dicts": {name: model.state_dict() for name, model in translators.items()},
        **meta,
    }


def load_translators(path: str | Path, device: torch.device | str = "cpu") -> tuple[dict[str, Any], dict[str, Any]]:
    """The models of a ``train_translation`` checkpoint and its payload.

    Parameters
    ----------
    path : str or pathlib.Path
        The checkpoint (:func:`checkpoint`, saved with ``torch.save``).
    device : torch.device or str, optional
        Where the models live and run. Default ``"cpu"``.

    Returns
    -------
    translators : dict[str, Any]
        The models by name, their states restored; built without mixed precision.
    payload : dict[str, Any]
        The checkpoint as loaded.
    """
    payload = torch.load(path, map_location="cpu", weights_only=True)
    channels = {slot: int(spec["channels"]) for slot, spec in payload["modalities"].items()}
    translators = build_translators(payload["method"], payload["params"], channels, 0, device)
    for name, model in translators.items():
        model.load_state_dict(payload["state_dicts"][name])
    return translators, payload


def translate_testset(
    translators: Mapping[str, Any],
    cases: pd.DataFrame,
    image_dir: str | Path,
    modalities: Mapping[str, Mapping[str, Any]],
    out_dir: str | Path,
) -> None:
    """Write the translated test set into ``out_dir`` (file names: see the module doc).

    Parameters
    ----------
    translators : Mapping[str, Any]
        The entry's models (:func:`build_translators`, :func:`load_translators`).
    cases : pandas.DataFrame
        The test set's cases table; its ``case`` column names the files.
    image_dir : str or pathlib.Path
        Folder of the test set's ``<case>_<slot>_<ref|flo>.tif`` patches.
    modalities : Mapping[str, Mapping[str, Any]]
        The modality sections by slot, to pre-process the patches.
    out_dir : str or pathlib.Path
        Folder of the output TIFFs (float32; channel-last for several channels).

    Raises
    ------
    comir.io.InputError
        If a patch cannot be read or does not fit its modality.
    """
    image_dir, out_dir = Path(image_dir), Path(out_dir)

    def prepared(case: str, slot: str, role: str) -> np.ndarray:
        name = f"{case}_{slot}_{role}"
        return prepare_modality_image(read_image(image_dir / f"{name}.tif"), modalities[slot], name)

    def write(name: str, image: np.ndarray) -> None:
        write_tiff(out_dir / f"{name}.tif", image[0] if image.shape[0] == 1 else np.moveaxis(image, 0, -1))

    for case in cases["case"]:
        floating = {slot: prepared(case, slot, "flo") for slot in ("A", "B")}
        for slot in ("A", "B"):
            write(f"{case}_{slot}_ref", prepared(case, slot, "ref"))
        # B's floating patch as A (registered to A's reference), A's as B; DRIT styled by the pair partner.
        fake_a = _model_for(translators, "b2a").translate(floating["B"], "b2a", partner=floating["A"])
        fake_b = _model_for(translators, "a2b").translate(floating["A"], "a2b", partner=floating["B"])
        write(f"{case}_B_flo", fake_a.astype(np.float32))
        write(f"{case}_A_flo", fake_b.astype(np.float32))


def plot_history(history: pd.DataFrame, title: str, path: str | Path) -> None:
    """The loss terms per epoch of an entry's models (``history`` of :func:`train_translators`), saved atomically.

    Parameters
    ----------
    history : pandas.DataFrame
        The table :func:`train_translators` returns.
    title : str
        Title of the plot.
    path : str or pathlib.Path
        Where to write the figure (its suffix picks the format).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7.0, 4.0), dpi=110, layout="constrained")
    FigureCanvasAgg(figure)
    ax = figure.subplots()
    terms = [c for c in history.columns if c not in ("epoch", "model")]
    long = history.melt(["epoch", "model"], terms).dropna()
    for (model, term), group in long.groupby(["model", "variable"]):
        ax.plot(group["epoch"], group["value"], label=term if model == "both" else f"{model} {term}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean loss over the epoch's steps")
    ax.set_title(title)
    ax.legend(fontsize=6, ncol=2)
    with atomic_path(path) as tmp:
        figure.savefig(tmp)


__all__ = [
    "TranslationTraining",
    "build_translators",
    "check_entry",
    "checkpoint",
    "load_translators",
    "plot_history",
    "train_translators",
    "translate_testset",
]
