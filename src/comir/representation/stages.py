"""The pipeline stages of paper section 4.1: equivariance and reproducibility of the CoMIRs.

The statistics themselves are :mod:`comir.evaluate.representation` (docs/representation.md);
this module feeds them trained networks and test images as the workflow's rules do.

* :func:`equivariance_tables` (rule ``equivariance``, per variant): rotation equivariance
  (paper Fig. 2) and translation equivariance of a variant's networks on central crops of the
  first test images, with :func:`equivariance_summaries` and :func:`rotation_curves` for the
  tables and the polar plot.
* :func:`reproducibility_table` (rule ``reproducibility``, per dataset; paper Table 1): N short
  training runs per cell of {fixed, random seed} x {fixed, varying training image}, the
  channel-matched pairwise correlations of their CoMIRs of the same test patches, the mean with a
  bootstrap interval over models; :func:`plot_reproducibility` draws it.

``settings`` are the validated ``representation.equivariance`` and
``representation.reproducibility`` sections of a dataset (every key present);
:mod:`comir.representation.settings` checks them beyond the schema.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from comir.evaluate.representation import (
    bootstrap_mean_pairwise,
    pairwise_correlations,
    rotation_equivariance,
    translation_equivariance,
)
from comir.imaging.preprocess import SLOTS, check_image_sizes, load_split, rotation_crop
from comir.inference.engines import OnnxRuntimeNetwork, inference_network
from comir.inference.tiling import compute_comir
from comir.io import InputError, atomic_path
from comir.network.device import resolve_device
from comir.network.model import Tiramisu
from comir.representation.settings import CELLS, cell_name, check_settings, models_per_cell
from comir.training.loop import build_models, train
from comir.training.settings import TrainingConfig, model_configs

if TYPE_CHECKING:
    import torch

__all__ = [
    "equivariance_extent",
    "equivariance_summaries",
    "equivariance_tables",
    "load_test_images",
    "plot_reproducibility",
    "random_seed",
    "reproducibility_table",
    "rotation_curves",
    "sample_test_patches",
    "short_training",
]

log = logging.getLogger(__name__)

# Streams of the generators seeded here with the configured seed (comir.training.loop's are 2, 5 and 6).
_RANDOM_SEED_STREAM, _PATCH_STREAM = 11, 12
# The inference section's keys that compute_comir takes.
_COMIR_OPTIONS = ("tile", "margin", "pad", "mixed_precision", "c4_average")


# ---------------------------------------------------------------------------------------------------------------------
# Test images


def equivariance_extent(settings: Mapping[str, Any]) -> int:
    """Side of the central square of a test image that both measurements read.

    The rotation crop, or the patch moved by the largest shift in every direction, whichever is larger.

    Parameters
    ----------
    settings : Mapping[str, Any]
        The ``representation.equivariance`` section; reads ``crop``, ``patch`` and ``shifts`` (px).

    Returns
    -------
    int
        ``max(crop, patch + 2 * largest |shift|)`` in px.
    """
    largest_shift = max(abs(int(s)) for shift in settings["shifts"] for s in shift)
    return max(int(settings["crop"]), int(settings["patch"]) + 2 * largest_shift)


def _central_square(image: np.ndarray, size: int) -> np.ndarray:
    top, left = (image.shape[-2] - size) // 2, (image.shape[-1] - size) // 2
    return np.ascontiguousarray(image[:, top : top + size, left : left + size])


def _test_rows(pairs: pd.DataFrame, count: int) -> pd.DataFrame:
    """The first ``count`` test pairs in the table's order (all of them when there are fewer)."""
    rows = pairs[pairs["split"] == "test"]
    if rows.empty:
        raise InputError("the pairs table has no test pairs")
    if len(rows) < count:
        log.warning("%d test image(s) asked for, the test split has %d: using them all", count, len(rows))
    return rows.head(count)


def load_test_images(
    pairs: pd.DataFrame, modalities: Mapping[str, Mapping[str, Any]], count: int, size: int
) -> dict[str, tuple[np.ndarray, ...]]:
    """The central ``size`` px square of the first ``count`` test pairs, network-ready: id -> (A, B).

    Parameters
    ----------
    pairs : pandas.DataFrame
        The pipeline's pairs table (``id``, ``split``, ``path_A``, ``path_B``, ``height``, ``width``).
    modalities : Mapping[str, Mapping[str, Any]]
        The dataset's modality sections by slot (``A``, ``B``), for :func:`comir.imaging.preprocess.load_split`.
    count : int
        How many test pairs, the first in the table's order; all of them (with a warning) when there are fewer.
    size : int
        Side of the central square in px.

    Returns
    -------
    dict[str, tuple[numpy.ndarray, ...]]
        Pair id -> its ``(A, B)`` prepared ``(C, size, size)`` float32 crops.

    Raises
    ------
    comir.io.InputError
        If the table has no test pairs, or an image is smaller than ``size`` px (named).
    """
    rows = _test_rows(pairs, count)
    check_image_sizes(rows, ["test"], size, f"the equivariance measurements ({size} px central crops)")
    images = load_split(rows, "test", modalities)
    return {str(pair_id): tuple(_central_square(x, size) for x in pair) for pair_id, pair in zip(rows["id"], images)}


def sample_test_patches(
    pairs: pd.DataFrame, modalities: Mapping[str, Mapping[str, Any]], count: int, size: int, seed: int
) -> tuple[pd.DataFrame, list[tuple[np.ndarray, ...]]]:
    """``count`` aligned ``size`` px patches of the test split at fixed positions, and where they lie.

    Patch ``k`` is cut from test pair ``k mod n`` (the first ``n = min(count, test pairs)``
    pairs) at a position drawn uniformly from the stream ``[seed, 12]``, so every model of
    :func:`reproducibility_table` sees the same patches.

    Parameters
    ----------
    pairs : pandas.DataFrame
        The pipeline's pairs table (``id``, ``split``, ``path_A``, ``path_B``, ``height``, ``width``).
    modalities : Mapping[str, Mapping[str, Any]]
        The dataset's modality sections by slot (``A``, ``B``).
    count : int
        Number of patches.
    size : int
        Side of a patch in px.
    seed : int
        The configured seed; positions are drawn from the stream ``[seed, 12]``.

    Returns
    -------
    positions : pandas.DataFrame
        One row per patch: ``patch``, ``image_id``, ``y``, ``x`` (top-left corner, px).
    patches : list[tuple[numpy.ndarray, ...]]
        The ``(A, B)`` patches, ``(C, size, size)`` each, in the order of ``positions``.

    Raises
    ------
    comir.io.InputError
        If the table has no test pairs, or a test image is smaller than ``size`` px.
    """
    rows = _test_rows(pairs, count)
    check_image_sizes(rows, ["test"], size, f"the reproducibility patches ({size} px)")
    images = load_split(rows, "test", modalities)
    rng = np.random.default_rng([seed, _PATCH_STREAM])
    positions, patches = [], []
    for k in range(count):
        index = k % len(images)
        height, width = images[index][0].shape[-2:]
        y, x = int(rng.integers(0, height - size + 1)), int(rng.integers(0, width - size + 1))
        positions.append((k, str(rows["id"].iloc[index]), y, x))
        patches.append(tuple(np.ascontiguousarray(image[:, y : y + size, x : x + size]) for image in images[index]))
    return pd.DataFrame(positions, columns=["patch", "image_id", "y", "x"]), patches


# ---------------------------------------------------------------------------------------------------------------------
# Equivariance


def equivariance_tables(
    networks: Mapping[str, Tiramisu],
    modalities: Mapping[str, Mapping[str, Any]],
    images: Mapping[str, Sequence[np.ndarray]],
    settings: Mapping[str, Any],
    inference: Mapping[str, Any],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rotation and translation equivariance of each modality's network on each test image.

    ``networks`` and ``modalities`` are by slot (A, B), as :func:`comir.network.checkpoint.load_checkpoint`
    returns them; ``images`` maps an image id to its pre-processed ``(A, B)`` arrays
    (:func:`load_test_images`). A CoMIR is :func:`comir.inference.tiling.compute_comir` with the
    ``inference`` section (engine, device, tile, margin, pad, mixed precision, C4 averaging), so
    the measurement is of the CoMIRs that the variant registers.

    Rotation (docs/representation.md, section 2): :func:`rotation_equivariance` at the angles
    ``0, step, 2 step, ... < 360`` deg with ``patch`` and ``crop``. Translation (section 3):
    :func:`translation_equivariance` over ``shifts`` with ``margin``; shifts that are multiples
    of the network's stride ``2 ** len(down_blocks)`` are measured too, with a warning that they
    test little.

    Parameters
    ----------
    networks : Mapping[str, comir.network.model.Tiramisu]
        The variant's network of each slot (``A``, ``B``).
    modalities : Mapping[str, Mapping[str, Any]]
        The modality sections by slot; ``name`` labels the rows.
    images : Mapping[str, Sequence[numpy.ndarray]]
        Image id -> its pre-processed ``(A, B)`` arrays (:func:`load_test_images`).
    settings : Mapping[str, Any]
        The ``representation.equivariance`` section (checked with
        :func:`comir.representation.settings.check_settings`).
    inference : Mapping[str, Any]
        The ``inference`` section: ``engine``, ``device``, ``tile``, ``margin``, ``pad``,
        ``mixed_precision``, ``c4_average``.

    Returns
    -------
    rotation : pandas.DataFrame
        Columns ``modality`` (its name), ``image_id``, ``angle_deg``, ``correlation``.
    translation : pandas.DataFrame
        Columns ``modality``, ``image_id``, ``dy``, ``dx``, ``correlation``.

    Raises
    ------
    ValueError
        If ``settings`` has a problem, or ``images`` is empty.
    """
    check_settings("equivariance", settings)
    if not images:
        raise ValueError("equivariance_tables: no images")
    device = resolve_device(inference["device"])
    options = {key: inference[key] for key in _COMIR_OPTIONS}
    angles = np.arange(0.0, 360.0, float(settings["angle_step_deg"]))
    shifts = [(int(dy), int(dx)) for dy, dx in settings["shifts"]]
    rotation, translation = [], []
    for index, slot in enumerate(SLOTS):
        name = modalities[slot]["name"]
        stride = networks[slot].config.multiple
        uninformative = [shift for shift in shifts if shift[0] % stride == 0 and shift[1] % stride == 0]
        if uninformative:
            log.warning("%s: shifts %s are multiples of the network's stride %d px", name, uninformative, stride)
        network = inference_network(networks[slot], inference["engine"], device)

        def comir_fn(image: np.ndarray, network: Tiramisu | OnnxRuntimeNetwork = network) -> np.ndarray:
            return compute_comir(network, image, device=device, **options)

        for image_id, pair in images.items():
            start = time.perf_counter()
            image = pair[index]
            angle_table = rotation_equivariance(comir_fn, image, angles, patch=settings["patch"], crop=settings["crop"])
            shift_table = translation_equivariance(comir_fn, image, shifts, settings["patch"], settings["margin"])
            rotation.append(angle_table.assign(modality=name, image_id=image_id))
            translation.append(shift_table.assign(modality=name, image_id=image_id))
            log.info(
                "%s, %s: %d angles (mean correlation %.4f), %d shifts in %.1f s",
                name, image_id, len(angles), angle_table["correlation"].mean(), len(shifts),
                time.perf_counter() - start,
            )  # fmt: skip
    rotation_table = pd.concat(rotation, ignore_index=True)[["modality", "image_id", "angle_deg", "correlation"]]
    translation_table = pd.concat(translation, ignore_index=True)[["modality", "image_id", "dy", "dx", "correlation"]]
    return rotation_table, translation_table


def rotation_curves(rotation: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Per modality, the correlation at each angle averaged over the images (``angle_deg``, ``correlation``).

    Parameters
    ----------
    rotation : pandas.DataFrame
        The rotation table of :func:`equivariance_tables` (``modality``, ``angle_deg``, ``correlation``).

    Returns
    -------
    dict[str, pandas.DataFrame]
        Modality name -> its curve, columns ``angle_deg`` (ascending) and ``correlation``.
    """
    means = rotation.groupby(["modality", "angle_deg"], sort=True)["correlation"].mean().reset_index()
    return {
        str(modality): curve[["angle_deg", "correlation"]].reset_index(drop=True)
        for modality, curve in means.groupby("modality", sort=False)
    }


def equivariance_summaries(rotation: pd.DataFrame, translation: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Short tables of :func:`equivariance_tables`' results, for the report.

    Rotation, per modality, from the curve averaged over the images (:func:`rotation_curves`):
    its mean over all angles, its minimum and where it lies, and its mean at the multiples of
    90 deg other than 0 (where C4 constraints act; NaN when the step leaves none) and at the
    other angles (0 excluded from both). Translation, per modality and shift: the mean and the
    minimum over the images.

    Parameters
    ----------
    rotation : pandas.DataFrame
        The rotation table of :func:`equivariance_tables`.
    translation : pandas.DataFrame
        The translation table of :func:`equivariance_tables`.

    Returns
    -------
    rotation_summary : pandas.DataFrame
        Per modality: ``modality``, ``images``, ``angles``, ``mean_correlation``, ``min_correlation``,
        ``min_angle_deg``, ``mean_at_90_180_270``, ``mean_at_other_angles``.
    translation_summary : pandas.DataFrame
        Per modality and shift: ``modality``, ``dy``, ``dx``, ``images``, ``mean_correlation``, ``min_correlation``.
    """
    rows = []
    for modality, curve in rotation_curves(rotation).items():
        angles = curve["angle_deg"].to_numpy()
        values = curve["correlation"].to_numpy()
        quarter = (angles % 90 == 0) & (angles != 0)
        other = angles % 90 != 0
        rows.append(
            {
                "modality": modality,
                "images": rotation.loc[rotation["modality"] == modality, "image_id"].nunique(),
                "angles": len(angles),
                "mean_correlation": values.mean(),
                "min_correlation": values.min(),
                "min_angle_deg": angles[np.argmin(values)],
                "mean_at_90_180_270": values[quarter].mean() if quarter.any() else math.nan,
                "mean_at_other_angles": values[other].mean() if other.any() else math.nan,
            }
        )
    grouped = translation.groupby(["modality", "dy", "dx"], sort=False)["correlation"]
    shifts = grouped.agg(images="size", mean_correlation="mean", min_correlation="min").reset_index()
    return pd.DataFrame(rows), shifts


# ---------------------------------------------------------------------------------------------------------------------
# Reproducibility


def random_seed(seed: int, model: int) -> int:
    """The seed of model ``model`` in a "random seed" cell: reproducibly derived from the configured ``seed``.

    A 32-bit word of ``numpy.random.SeedSequence([seed, 11, model])``: different for every
    model, the same in every run of the workflow.

    Parameters
    ----------
    seed : int
        The configured seed.
    model : int
        Index of the model in its cell.

    Returns
    -------
    int
        A seed in ``[0, 2 ** 32)``.
    """
    return int(np.random.SeedSequence([seed, _RANDOM_SEED_STREAM, model]).generate_state(1)[0])


def short_training(
    training: Mapping[str, Any], steps: int | None, seed: int, threads: int, workers: int | None = None
) -> TrainingConfig:
    """The dataset's training settings, shortened to ``steps`` optimisation steps in one epoch.

    ``steps=None`` keeps the configured schedule (``epochs x steps_per_epoch``). One epoch of
    ``steps`` steps trains on the same batches as the first ``steps`` steps of a full run (each
    batch is seeded by its step) and re-estimates BatchNorm statistics once, at its end, for
    the final weights.

    Parameters
    ----------
    training : Mapping[str, Any]
        The dataset's ``training`` section.
    steps : int or None
        Optimisation steps of the single epoch; None keeps the configured schedule.
    seed : int
        Seed of the run.
    threads : int
        CPU threads of the run.
    workers : int or None, optional
        Data-loading workers, passed to :meth:`comir.training.settings.TrainingConfig.from_config`. Default None.

    Returns
    -------
    comir.training.settings.TrainingConfig
        The run's settings.
    """
    cfg = TrainingConfig.from_config(training, seed, threads, workers)
    return cfg if steps is None else dataclasses.replace(cfg, epochs=1, steps_per_epoch=int(steps))


def _comir_strip(
    model: Tiramisu, patches: Sequence[np.ndarray], inference: Mapping[str, Any], device: torch.device
) -> np.ndarray:
    """The CoMIRs of ``patches`` side by side, ``(C, H, P * W)``: one signed channel match for all patches."""
    options = {key: inference[key] for key in _COMIR_OPTIONS}
    return np.concatenate([compute_comir(model, patch, device=device, **options) for patch in patches], axis=-1)


def reproducibility_table(
    dataset: Mapping[str, Any],
    pairs: pd.DataFrame,
    settings: Mapping[str, Any],
    seed: int,
    *,
    threads: int = 1,
    workers: int | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Paper Table 1: mean pairwise correlation of the CoMIRs of independently trained models, per cell.

    ``dataset`` holds the dataset's ``modalities``, ``model``, ``training`` and ``inference``
    sections; ``pairs`` is its pairs table; ``seed`` the configured seed. Per cell of
    :data:`CELLS` (:func:`models_per_cell` of ``settings["models"]`` models each), model ``i`` is
    trained from scratch with the dataset's network and training settings for ``steps``
    optimisation steps (:func:`short_training`):

    * seed "fixed": every model with ``seed``; "random": model ``i`` with :func:`random_seed`
      ``(seed, i)`` (initialisation, patches, C4 draws and dropout all follow the seed);
    * image "fixed": every model on the first training pair only; "varying": model ``i`` on
      training pair ``i mod n_train`` (pairs in the table's order; with more models than
      training pairs, models ``i`` and ``i + n_train`` share a pair, and with the fixed seed
      they are the same run).

    Each model computes the CoMIRs of the same ``patches`` test patches of ``patch`` px
    (:func:`sample_test_patches`) with PyTorch and the ``inference`` section's device, padding, mixed
    precision and C4 averaging (an ONNX export per model would cost more than it saves on a few
    small patches). Per cell and modality, a model's patches are laid side by side so that one
    signed channel permutation matches two models on all patches (a model's channel order is the
    same everywhere); :func:`pairwise_correlations` matches and correlates every pair of models,
    :func:`bootstrap_mean_pairwise` gives the mean over pairs and its percentile interval
    (``bootstrap`` replicates, seeded with ``seed``; docs/representation.md, section 5).

    On a CPU the "fixed seed, fixed image" runs are bitwise the same network (PyTorch's CPU
    kernels are deterministic), so that cell is 1 by construction; on a GPU, non-deterministic
    kernels can make them differ, and the cell measures that.

    Time: ``sum(models)`` runs of ``steps`` training steps plus, per run, the BatchNorm
    re-estimation and validation batches of one epoch and the CoMIRs of the patches (timings:
    docs/results/speed.md).

    Parameters
    ----------
    dataset : Mapping[str, Any]
        The dataset's configuration; reads its ``modalities``, ``model``, ``training`` and ``inference`` sections.
    pairs : pandas.DataFrame
        The dataset's pairs table.
    settings : Mapping[str, Any]
        The ``representation.reproducibility`` section (``models``, ``steps``, ``patches``, ``patch``,
        ``bootstrap``), checked with :func:`comir.representation.settings.check_settings`.
    seed : int
        The configured seed.
    threads : int, optional
        CPU threads of each training run. Default 1.
    workers : int or None, optional
        Data-loading workers of each training run (:func:`short_training`). Default None.

    Returns
    -------
    summary : pandas.DataFrame
        One row per cell and modality: ``seed``, ``image``, ``modality``, ``models``, ``steps``,
        ``patches``, ``mean_correlation``, ``ci_low``, ``ci_high``.
    pairwise : pandas.DataFrame
        One row per cell, modality and pair of models ``i < j``: ``seed``, ``image``, ``modality``,
        ``model_i``, ``model_j``, ``seed_i``, ``seed_j``, ``train_id_i``, ``train_id_j``, ``correlation``.

    Raises
    ------
    ValueError
        If ``settings`` has a problem.
    comir.io.InputError
        If the pairs table has no training or no test pairs, or an image is too small for the
        training crops or the test patches.
    """
    check_settings("reproducibility", settings)
    counts = models_per_cell(settings["models"])
    modalities, training, inference = dataset["modalities"], dataset["training"], dataset["inference"]
    train_rows = pairs[pairs["split"] == "train"]
    if train_rows.empty:
        raise InputError("the pairs table has no training pairs")
    varying = max(counts[cell_name(s, i)] for s, i in CELLS if i == "varying")
    train_rows = train_rows.head(varying)
    patch_size = int(training["patch_size"])
    crop = rotation_crop(patch_size) if training["rotation"] else patch_size
    check_image_sizes(train_rows, ["train"], crop, f"training ({patch_size} px patches cut from {crop} px crops)")
    train_images = load_split(train_rows, "train", modalities)
    train_ids = [str(pair_id) for pair_id in train_rows["id"]]
    if varying > len(train_images):
        log.warning(
            "%d models in a varying-image cell, %d training pairs: models i and i + %d train on the same pair "
            "(with the fixed seed they are the same network)",
            varying, len(train_images), len(train_images),
        )  # fmt: skip
    positions, patches = sample_test_patches(pairs, modalities, settings["patches"], settings["patch"], seed)
    log.info("test patches:\n%s", positions.to_string(index=False))
    configs = model_configs(dataset)
    device = resolve_device(inference["device"])
    summary, pairwise = [], []
    for seed_kind, image_kind in CELLS:
        count = counts[cell_name(seed_kind, image_kind)]
        comirs: dict[str, list[np.ndarray]] = {slot: [] for slot in SLOTS}
        runs = []
        for model in range(count):
            start = time.perf_counter()
            run_seed = seed if seed_kind == "fixed" else random_seed(seed, model)
            image = 0 if image_kind == "fixed" else model % len(train_images)
            networks = build_models(configs, run_seed)
            run = short_training(training, settings["steps"], run_seed, threads, workers)
            train(networks, [train_images[image]], [], run)
            for index, slot in enumerate(SLOTS):
                comirs[slot].append(_comir_strip(networks[slot], [p[index] for p in patches], inference, device))
            runs.append((run_seed, train_ids[image]))
            log.info(
                "%s: model %d/%d (seed %d, image %s) in %.1f s",
                cell_name(seed_kind, image_kind),
                model + 1,
                count,
                run_seed,
                train_ids[image],
                time.perf_counter() - start,
            )
        for slot in SLOTS:
            matrix = pairwise_correlations(np.stack(comirs[slot]))
            interval = bootstrap_mean_pairwise(matrix, n_boot=settings["bootstrap"], seed=seed)
            cell = {"seed": seed_kind, "image": image_kind, "modality": modalities[slot]["name"]}
            summary.append(
                {
                    **cell,
                    "models": count,
                    "steps": settings["steps"] or training["epochs"] * training["steps_per_epoch"],
                    "patches": settings["patches"],
                    "mean_correlation": interval.mean,
                    "ci_low": interval.low,
                    "ci_high": interval.high,
                }
            )
            pairwise += [
                {
                    **cell,
                    "model_i": i,
                    "model_j": j,
                    "seed_i": runs[i][0],
                    "seed_j": runs[j][0],
                    "train_id_i": runs[i][1],
                    "train_id_j": runs[j][1],
                    "correlation": matrix[i, j],
                }
                for i, j in zip(*np.triu_indices(count, 1))
            ]
    return pd.DataFrame(summary), pd.DataFrame(pairwise).astype({"model_i": int, "model_j": int})


def plot_reproducibility(
    summary: pd.DataFrame, path: str | os.PathLike[str], *, title: str | None = None
) -> None:
    """Bar chart of :func:`reproducibility_table`'s summary: one group per cell, one bar per modality, 95 % CIs.

    Drawn on a bare Agg figure, written through :func:`comir.io.atomic_path`.

    Parameters
    ----------
    summary : pandas.DataFrame
        The summary table of :func:`reproducibility_table`.
    path : str or os.PathLike
        Where to write the figure (its suffix picks the format).
    title : str or None, optional
        Title of the plot; None: a default title. Default None.

    Raises
    ------
    ValueError
        If ``summary`` is empty.
    """
    if summary.empty:
        raise ValueError("plot_reproducibility: empty summary")
    cells = list(dict.fromkeys(zip(summary["seed"], summary["image"])))
    modalities = list(dict.fromkeys(summary["modality"]))
    figure = Figure(figsize=(6.4, 4.0), dpi=120, layout="constrained")
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    width = 0.8 / len(modalities)
    lowest = 0.0
    for offset, modality in enumerate(modalities):
        rows = summary[summary["modality"] == modality].set_index(["seed", "image"]).reindex(cells)
        positions = np.arange(len(cells)) + (offset - (len(modalities) - 1) / 2) * width
        means = rows["mean_correlation"].to_numpy(float)
        errors = np.vstack([means - rows["ci_low"].to_numpy(float), rows["ci_high"].to_numpy(float) - means])
        ax.bar(positions, means, width * 0.9, yerr=errors, capsize=3, label=modality)
        lowest = min(lowest, float(np.nanmin(rows["ci_low"])))
    counts = summary.groupby(["seed", "image"], sort=False)["models"].first()
    ax.set_xticks(
        np.arange(len(cells)), [f"{s} seed\n{i} image\n(N = {counts[(s, i)]})" for s, i in cells], fontsize=8
    )
    ax.set_ylim(math.floor(lowest * 4) / 4, 1.05)
    ax.axhline(1.0, color="grey", linewidth=0.6)
    ax.set_ylabel("mean pairwise correlation (channels matched)")
    ax.set_title(title or "reproducibility of the CoMIRs (95 % bootstrap intervals)", fontsize=10)
    ax.legend(fontsize=8, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    try:
        with atomic_path(path) as tmp:
            figure.savefig(tmp, dpi=figure.dpi)
    finally:
        figure.clear()
