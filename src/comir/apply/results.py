"""Results of the apply stage: the summary with flags, and errors against known transforms (docs/method.md, section 13).

The summary joins the batches of an apply job (:mod:`comir.apply.folder`) and
flags the pairs to look at: ``failed`` (the method reported a failure),
``low confidence`` (a calibrated model judged the result below its threshold;
docs/method.md, section 15) and ``low quality`` (a metric below
``min_quality``, for methods whose metric grows with quality: the cascade's
CoMIR correlation, SIFT's inliers).

With known transforms (a CSV with ``id`` and the floating -> reference matrix
``a11, a12, tx, a21, a22, ty`` in original pixels, as :func:`export_testset_pairs`
writes for a test set), every row also gets its corner error and the rows take
the per-case format of the register rule (:data:`comir.evaluate.tables.RESULT_COLUMNS`),
so the success table, the eCDF and the Wilcoxon tests of the experiment
measure the apply stage the same way.  Nothing here needs PyTorch or the
registration libraries.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from comir import geometry
from comir.calibration import LOW_CONFIDENCE
from comir.geometry import MATRIX_KEYS
from comir.io import InputError, read_image, write_csv, write_tiff

#: Flags of the summary: the method failed; the calibrated confidence is below the threshold (the
#: failure's reason, :data:`comir.calibration.LOW_CONFIDENCE`); the metric is below ``min_quality``.
FAILED_FLAG, LOW_CONFIDENCE_FLAG, LOW_QUALITY_FLAG = "failed", LOW_CONFIDENCE, "low quality"
#: Flag of an ``ok`` pair whose deformable stage failed (the rigid result is kept).
DEFORMABLE_FAILED_FLAG = "deformable failed"


def summarise(rows: pd.DataFrame, min_quality: float | None) -> pd.DataFrame:
    """The batches' rows with a ``flag``: ``failed``, ``low confidence``, ``low quality``, ``deformable failed`` or "".

    ``deformable failed`` (rows with a ``deformable_status``: a job with a deformable stage) marks an
    ``ok`` pair whose stage failed; ``low quality`` takes precedence.

    Parameters
    ----------
    rows : pandas.DataFrame
        The batches' tables joined (:func:`comir.apply.folder.register_batch`): ``id``, ``status``,
        ``metric``, ``message``, ...
    min_quality : float or None
        The least ``metric`` of an ``ok`` row (a NaN metric is below it); None: no quality flag.

    Returns
    -------
    pandas.DataFrame
        The rows sorted by ``id``, with ``flag`` inserted after ``status``.
    """
    summary = rows.sort_values("id").reset_index(drop=True)
    flag = np.where(summary["status"] != "ok", FAILED_FLAG, "")
    rejected = (summary["status"] != "ok") & summary["message"].astype(str).str.startswith(LOW_CONFIDENCE)
    flag = np.where(rejected, LOW_CONFIDENCE_FLAG, flag)
    if "deformable_status" in summary.columns:
        stage_failed = (summary["status"] == "ok") & (summary["deformable_status"] == "failed")
        flag = np.where(stage_failed, DEFORMABLE_FAILED_FLAG, flag)
    if min_quality is not None:
        low = (summary["status"] == "ok") & ~(summary["metric"] >= float(min_quality))
        flag = np.where(low, LOW_QUALITY_FLAG, flag)
    summary.insert(summary.columns.get_loc("status") + 1, "flag", flag)
    return summary


def read_truth(path: str | Path) -> pd.DataFrame:
    """Known floating -> reference transforms: ``id`` and the six matrix entries, checked (file named).

    Parameters
    ----------
    path : str or pathlib.Path
        A CSV with ``id`` and :data:`comir.geometry.MATRIX_KEYS` (further columns, e.g. ``stratum``, are kept).

    Returns
    -------
    pandas.DataFrame
        The table, ``id`` as strings and the matrix entries numeric.

    Raises
    ------
    comir.io.InputError
        If the file is missing, lacks a column, has a non-numeric matrix entry or a repeated id.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"known transforms file not found: {path}")
    truth = pd.read_csv(path, dtype={"id": str})
    missing = [c for c in ("id", *MATRIX_KEYS) if c not in truth.columns]
    if missing:
        raise InputError(f"{path} lacks column(s) {', '.join(missing)}: expected id, {', '.join(MATRIX_KEYS)}")
    values = truth[list(MATRIX_KEYS)].apply(pd.to_numeric, errors="coerce")
    if values.isna().any().any() or truth["id"].duplicated().any():
        raise InputError(f"{path}: every id must appear once with six numeric matrix entries")
    return truth.assign(**{k: values[k] for k in MATRIX_KEYS})


def with_errors(summary: pd.DataFrame, truth: pd.DataFrame, label: str) -> pd.DataFrame:
    """The summary's rows in the register rule's per-case format, with corner errors against ``truth``.

    Parameters
    ----------
    summary : pandas.DataFrame
        The summary (:func:`summarise`) with the estimated matrices ``est_*``, ``width`` and ``height``.
    truth : pandas.DataFrame
        Known transforms (:func:`read_truth`); an optional ``stratum`` column is carried over.
    label : str
        Names the run (the ``method`` column; the apply job's name).

    Returns
    -------
    pandas.DataFrame
        One row per pair in the register rule's per-case format, with ``error_px`` and
        ``initial_displacement_px`` (corner errors of the estimate and of the identity, px).

    Raises
    ------
    comir.io.InputError
        If a pair has no known transform (naming it).
    """
    known = truth.set_index("id")
    unknown = sorted(set(summary["id"]) - set(known.index))
    if unknown:
        raise InputError(f"no known transform for pair(s) {', '.join(unknown[:10])} in the truth file")
    true = known.loc[summary["id"], list(MATRIX_KEYS)].to_numpy().reshape(-1, 2, 3)
    estimated = summary[[f"est_{k}" for k in MATRIX_KEYS]].to_numpy().reshape(-1, 2, 3)
    width, height = summary["width"].to_numpy(), summary["height"].to_numpy()
    errors = [geometry.corner_error(e, t, w, h) for e, t, w, h in zip(estimated, true, width, height)]
    displacement = [geometry.corner_error(geometry.IDENTITY, t, w, h) for t, w, h in zip(true, width, height)]
    stratum = known.loc[summary["id"], "stratum"].to_numpy() if "stratum" in known.columns else ""
    return pd.DataFrame(
        {
            "case": summary["id"],
            "image_id": summary["id"],
            "stratum": stratum,
            "width": width,
            "height": height,
            "initial_displacement_px": displacement,
            "method": label,
            "input": "comir",
            "direction": summary["direction"],
            "reference_modality": summary["reference_modality"],
            "floating_modality": summary["floating_modality"],
            "status": summary["status"],
            "metric": summary["metric"],
            "seconds": summary["seconds"],
            "error_px": np.asarray(errors, dtype=float),
            **{f"est_{k}": summary[f"est_{k}"] for k in MATRIX_KEYS},
            **{f"true_{k}": true.reshape(-1, 6)[:, i] for i, k in enumerate(MATRIX_KEYS)},
            "message": summary["message"],
        }
    )


def export_testset_pairs(
    cases: pd.DataFrame,
    image_dir: str | Path,
    modalities: Mapping[str, Mapping[str, Any]],
    reference_slot: str,
    out_root: str | Path,
    truth_path: str | Path,
) -> pd.DataFrame:
    """A test set as a folder of unaligned pairs and their known transforms, for validating the apply stage.

    Each case gives the pair (reference patch of ``reference_slot``, floating
    patch of the other modality) as ``out_root/<modality name>/<case>.tif``.

    Parameters
    ----------
    cases : pandas.DataFrame
        The test set's cases table: ``case``, ``stratum`` and the true matrix ``true_*``.
    image_dir : str or pathlib.Path
        Folder of the test set's ``<case>_<slot>_<ref|flo>.tif`` patches.
    modalities : Mapping[str, Mapping[str, Any]]
        The modality sections by slot (``name`` names the output sub-folder).
    reference_slot : str
        The slot of the reference patches; the floating patches are of the other slot.
    out_root : str or pathlib.Path
        Root of the folder of pairs.
    truth_path : str or pathlib.Path
        The CSV written with ``id``, ``stratum`` and the true floating -> reference matrix.

    Returns
    -------
    pandas.DataFrame
        The truth table as written.

    Raises
    ------
    comir.io.InputError
        If a patch cannot be read.
    """
    flo_slot = next(slot for slot in modalities if slot != reference_slot)
    image_dir, out_root = Path(image_dir), Path(out_root)
    for case in cases.itertuples(index=False):
        for slot, role in ((reference_slot, "ref"), (flo_slot, "flo")):
            image = read_image(image_dir / f"{case.case}_{slot}_{role}.tif")
            write_tiff(out_root / modalities[slot]["name"] / f"{case.case}.tif", image)
    truth = pd.DataFrame(
        {"id": cases["case"], "stratum": cases["stratum"], **{k: cases[f"true_{k}"] for k in MATRIX_KEYS}}
    )
    write_csv(truth_path, truth)
    return truth


__all__ = [
    "DEFORMABLE_FAILED_FLAG",
    "FAILED_FLAG",
    "LOW_CONFIDENCE_FLAG",
    "LOW_QUALITY_FLAG",
    "export_testset_pairs",
    "read_truth",
    "summarise",
    "with_errors",
]
