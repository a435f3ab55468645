"""Run one registration method over every test case: the tidy per-case results table.

A case whose patch holds non-finite pixels (NaN, infinity, or a value beyond
float32's range) is a ``failed`` row whose message names the case, the file and
what is wrong; the other cases still run (docs/method.md, section 7).  Any other
exception (a missing file, a method's bug, a configuration mistake such as
``curvealign`` on CoMIRs) stops the job.

A deformable run (:func:`comir.register.make_run`) gives each case a displacement field; on a
test set with a known deformation a scorer measures every run's field against the truth (a rigid
result's as the field of its matrix), in columns of its own (docs/explanation/deformable.md).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from comir import geometry
from comir.calibration import FEATURES, NO_EVIDENCE, Calibration
from comir.deformation.affine import affine_of_field, affine_to_field
from comir.deformation.sitk import write_field
from comir.geometry import IDENTITY, MATRIX_KEYS
from comir.imaging.preprocess import prepare_modality_image
from comir.io import read_image
from comir.register.base import Registration, RegistrationResult, to_single_channel
from comir.register.confidence import evidence
from comir.register.deformable.base import DeformableResult
from comir.register.deformable.stage import DeformableStage
from comir.testset.deformation import FieldScorer

log = logging.getLogger(__name__)

DIRECTIONS = {"B_to_A": ("A", "B"), "A_to_B": ("B", "A")}  # direction -> (reference slot, floating slot)
#: The column of a deformable run's rows: the seconds of its deformable stage (of the run's ``seconds``).
DEFORMABLE_SECONDS = "deformable_seconds"


def prepare_patch(
    image: np.ndarray, name: str, image_input: str, modality: Mapping[str, Any], colour: bool = False
) -> np.ndarray:
    """A stored test patch as float32 (H, W) or (H, W, C), ready for a registration method.

    Originals get the same intensity pre-processing as the network input and
    are reduced to one channel by PCA, each image on its own (they are
    different modalities, so no shared projection exists); with ``colour``
    (methods with ``colour_input = True``, e.g. ``curvealign``) a
    multi-channel original keeps its channels, ``(H, W, C)``, and only a
    single-channel one is ``(H, W)``.  CoMIRs are used as computed.

    Parameters
    ----------
    image : numpy.ndarray
        The stored patch.
    name : str
        The patch's name, in error messages.
    image_input : str
        ``"comir"`` (used as is) or ``"original"`` (pre-processed).
    modality : Mapping[str, Any]
        The modality's configuration (:func:`comir.imaging.preprocess.prepare_modality_image`).
    colour : bool, optional
        Keep a multi-channel original's channels. Default False.

    Returns
    -------
    numpy.ndarray
        float32 ``(H, W)`` or ``(H, W, C)``.

    Raises
    ------
    comir.io.InputError
        As :func:`comir.imaging.preprocess.prepare_modality_image`, for an original.
    """
    if image_input == "comir":
        return np.asarray(image).astype(np.float32)
    prepared = prepare_modality_image(image, modality, name)
    channel_last = prepared[0] if prepared.shape[0] == 1 else np.moveaxis(prepared, 0, -1)
    if colour:
        return np.ascontiguousarray(channel_last, dtype=np.float32)
    return to_single_channel(channel_last)[0]


def load_patch(
    image_dir: Path, name: str, image_input: str, modality: Mapping[str, Any], colour: bool = False
) -> np.ndarray:
    """:func:`prepare_patch` of the file ``image_dir/<name>.tif``.

    Parameters
    ----------
    image_dir : pathlib.Path
        The folder of the patches.
    name : str
        The patch's file name without ``.tif``.
    image_input : str
        ``"comir"`` or ``"original"``.
    modality : Mapping[str, Any]
        The modality's configuration.
    colour : bool, optional
        Keep a multi-channel original's channels. Default False.

    Returns
    -------
    numpy.ndarray
        float32 ``(H, W)`` or ``(H, W, C)``.

    Raises
    ------
    comir.io.InputError
        If the file is missing or unreadable.
    """
    return prepare_patch(read_image(image_dir / f"{name}.tif"), name, image_input, modality, colour)


def non_finite_count(image: np.ndarray) -> int:
    """Values of ``image`` that are NaN or infinite as float32 (a float64 beyond float32's range overflows).

    Parameters
    ----------
    image : numpy.ndarray
        Any array; integer arrays count 0.

    Returns
    -------
    int
        The number of non-finite values.
    """
    image = np.asarray(image)
    if not np.issubdtype(image.dtype, np.floating):
        return 0  # integer images are always finite
    with np.errstate(over="ignore"):  # the overflow to infinity is what is counted
        return int(image.size - np.count_nonzero(np.isfinite(image.astype(np.float32, copy=False))))


def _load_checked(
    image_dir: Path, name: str, role: str, image_input: str, modality: Mapping[str, Any], colour: bool
) -> tuple[np.ndarray | None, str | None]:
    """``(patch, None)``, or ``(None, why)`` when the file or its pre-processed patch has non-finite values."""
    file = image_dir / f"{name}.tif"
    label = f"{file.name} ({role}, {modality.get('name', 'modality')})"
    stored = read_image(file)
    bad = non_finite_count(stored)
    if bad:
        return None, (
            f"{label} has non-finite pixels: {bad} of {stored.size} values are NaN or infinite "
            "(or beyond float32's range)"
        )
    patch = prepare_patch(stored, name, image_input, modality, colour)
    bad = non_finite_count(patch)
    if bad:  # finite input that pre-processing made non-finite
        return None, f"{label} has {bad} non-finite values after pre-processing"
    return patch, None


def _load_networks(
    image_dirs: Sequence[Path], name: str, role: str, image_input: str, modality: Mapping[str, Any], colour: bool
) -> tuple[np.ndarray | None, str | None]:
    """:func:`_load_checked` of one folder, or of several networks' CoMIRs stacked along the channels.

    The channels follow the folders' order (docs/method.md, section 12).
    """
    loaded = [_load_checked(folder, name, role, image_input, modality, colour) for folder in image_dirs]
    problems = [problem for _, problem in loaded if problem]
    if problems:
        return None, "; ".join(problems)
    if len(loaded) == 1:
        return loaded[0]
    return np.concatenate([np.atleast_3d(patch) for patch, _ in loaded], axis=2), None


def register_cases(
    cases: pd.DataFrame,
    image_dir: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    method: Registration | None,
    run_name: str,
    image_input: str,
    direction: str,
    modalities: Mapping[str, Mapping[str, Any]],
    judge: Judge | None = None,
    unrelated: bool = False,
    original_dir: Path | None = None,
    *,
    deformable: DeformableStage | None = None,
    score: FieldScorer | None = None,
    field_dir: Path | None = None,
    evidence_dir: Path | None = None,
) -> pd.DataFrame:
    """Register every case of ``cases`` (the test set's ``cases.csv``) in ``direction``; one row per case.

    Patches are ``image_dir/<case>_<slot>_<ref|flo>.tif``; with several
    folders (an ensemble's networks' CoMIRs, for a method with ``networks``)
    each patch is the folders' patches stacked along the channels.  A case
    with a non-finite patch is a failed row naming the case and the file(s).

    With a ``judge`` (CoMIRs only; docs/method.md, section 15) each row also
    has the evidence of :func:`comir.register.confidence.evidence` (columns
    :data:`~comir.calibration.FEATURES`; no evidence for a failed
    result) and, when the judge has a calibration, ``confidence`` (0 for a
    failed result) and ``accepted`` (ok and at or above the threshold);
    ``status`` keeps the method's own verdict, so the paper's statistics are
    unchanged; a method that registers other images than the CoMIRs (ACCR: the
    originals, through its own networks) is judged on the CoMIRs of
    ``evidence_dir``.  With ``unrelated`` each case's reference is registered against
    the floating patch of its :func:`unrelated_partner` instead (named in
    column ``partner``; no truth, so ``error_px`` and ``true_*`` are empty; a
    case without a partner is left out): every such result is wrong.

    A method that uses the original images besides the CoMIRs
    (``wants_originals``) gets the original patches of ``original_dir`` (the
    test set's images) as ``originals``.

    A ``deformable`` stage refines each of ``method``'s results on the same patches from its
    matrix (:func:`deformable_result`); without a ``method`` (``None``) it registers on its own.
    Such a row's ``est_*`` is the affine closest to the total field
    (:func:`comir.deformation.affine.affine_of_field`), its ``seconds`` those of both stages, and
    column :data:`DEFORMABLE_SECONDS` the deformable stage's. With ``score`` (a test set with a
    known deformation) each row also has ``score``'s columns of the case's total field: the
    deformable stage's, the method's own (:attr:`RegistrationResult.field`), or the field of the
    matrix. With ``field_dir`` that field is also written
    there, ``<case>_field.h5`` (:func:`comir.deformation.sitk.write_field`).

    Parameters
    ----------
    cases : pandas.DataFrame
        The test set's cases (``case``, ``image_id``, ``stratum``, ``width``, ``height``,
        ``initial_displacement_px``, ``true_*``; ``crop_x``, ``crop_y`` with ``unrelated``).
    image_dir : str or os.PathLike or Sequence[str or os.PathLike]
        The folder of the patches, or several networks' folders, stacked in this order.
    method : Registration or None
        The rigid method; None only with a ``deformable`` stage that registers on its own.
    run_name : str
        The registration run's name (column ``method``).
    image_input : str
        ``"comir"`` or ``"original"``.
    direction : str
        ``"B_to_A"`` or ``"A_to_B"`` (:data:`DIRECTIONS`).
    modalities : Mapping[str, Mapping[str, Any]]
        The modalities' configurations by slot (``"A"``, ``"B"``), each with its ``name``.
    judge : Judge or None, optional
        Adds the evidence (and confidence) columns. Default None.
    unrelated : bool, optional
        Register against unrelated partners. Default False.
    original_dir : pathlib.Path or None, optional
        The test set's original patches, required by a method with ``wants_originals``. Default None.
    deformable : DeformableStage or None, optional
        A deformable stage after ``method`` (or on its own). Default None.
    score : FieldScorer or None, optional
        Scores each case's total field against a known deformation. Default None.
    field_dir : pathlib.Path or None, optional
        A folder (created) for each case's total field, ``<case>_field.h5``. Default None.
    evidence_dir : pathlib.Path or None, optional
        The folder of the CoMIR patches the ``judge`` measures the evidence on, where ``image_dir``
        holds other images; None (default): the judge measures it on the registered patches.

    Returns
    -------
    pandas.DataFrame
        One row per case, columns :func:`result_columns`.

    Raises
    ------
    ValueError
        If ``method`` wants the originals and no ``original_dir`` is given.
    comir.io.InputError
        If a patch file is missing or unreadable.
    """
    reference_slot, floating_slot = DIRECTIONS[direction]
    colour = bool(getattr(method, "colour_input", False))  # the method wants RGB originals as they are
    with_originals = bool(getattr(method, "wants_originals", False))
    image_dirs = [Path(image_dir)] if isinstance(image_dir, str | os.PathLike) else [Path(d) for d in image_dir]
    if with_originals and original_dir is None:
        raise ValueError(f"registration run {run_name!r} uses the original images besides: give original_dir")
    if field_dir is not None:
        Path(field_dir).mkdir(parents=True, exist_ok=True)
    rows = []
    for index, case in enumerate(cases.itertuples(index=False)):
        partner = unrelated_partner(cases, index) if unrelated else case.case
        if partner is None:
            continue
        ref_name, flo_name = f"{case.case}_{reference_slot}_ref", f"{partner}_{floating_slot}_flo"
        reference, ref_problem = _load_networks(
            image_dirs, ref_name, "reference", image_input, modalities[reference_slot], colour
        )
        floating, flo_problem = _load_networks(
            image_dirs, flo_name, "floating", image_input, modalities[floating_slot], colour
        )
        problems = [p for p in (ref_problem, flo_problem) if p]
        deformed = None
        if problems:
            result = RegistrationResult.failed(f"case {case.case}: " + "; ".join(problems))
            log.warning("%s", result.message)
        else:
            extra = {}
            if with_originals:
                extra["originals"] = (
                    load_patch(original_dir, ref_name, "original", modalities[reference_slot]),
                    load_patch(original_dir, flo_name, "original", modalities[floating_slot]),
                )
            result = None if method is None else method.register(reference, floating, **extra)
            if deformable is not None and (result is None or result.ok):  # a failed rigid stage is not refined
                deformed = deformable.register(reference, floating, None if result is None else result.matrix)
                result = deformable_result(result, deformed, deformable.method)
        total = _total_field(result, deformed, case) if score is not None or field_dir is not None else None
        if field_dir is not None:
            write_field(Path(field_dir) / f"{case.case}_field.h5", total)
        judged = (reference, floating)
        if judge is not None and evidence_dir is not None and result.ok:
            judged = (
                load_patch(evidence_dir, ref_name, "comir", modalities[reference_slot]),
                load_patch(evidence_dir, flo_name, "comir", modalities[floating_slot]),
            )
        if unrelated:
            truth, error = np.full((2, 3), np.nan), math.nan
        else:
            truth = np.array([getattr(case, f"true_{k}") for k in MATRIX_KEYS]).reshape(2, 3)
            error = float(geometry.corner_error(result.matrix, truth, case.width, case.height))
        rows.append(
            {
                "case": case.case,
                **({"partner": partner} if unrelated else {}),
                "image_id": case.image_id,
                "stratum": case.stratum,
                "width": case.width,
                "height": case.height,
                "initial_displacement_px": case.initial_displacement_px,
                "method": run_name,
                "input": image_input,
                "direction": direction,
                "reference_modality": modalities[reference_slot]["name"],
                "floating_modality": modalities[floating_slot]["name"],
                "status": result.status,
                "metric": result.metric,
                "seconds": result.seconds,
                "error_px": error,
                **{f"est_{k}": v for k, v in zip(MATRIX_KEYS, np.asarray(result.matrix).ravel())},
                **{f"true_{k}": v for k, v in zip(MATRIX_KEYS, truth.ravel())},
                **({} if judge is None else judge.columns(result, *judged)),
                **({} if deformable is None else {DEFORMABLE_SECONDS: deformed.seconds if deformed else math.nan}),
                **({} if score is None else score(case.case, total)),
                "message": result.message,
            }
        )
        log.info("%s: %s error %.2f px in %.2f s %s", case.case, result.status, error, result.seconds, result.message)
    fields = [*([DEFORMABLE_SECONDS] if deformable is not None else []), *(score.columns if score else [])]
    return pd.DataFrame(rows, columns=result_columns(judge, unrelated, fields))


def result_columns(judge: Judge | None = None, unrelated: bool = False, fields: Sequence[str] = ()) -> list[str]:
    """The columns of :func:`register_cases`' table, in order (also those of a table without rows).

    Parameters
    ----------
    judge : Judge or None, optional
        With a judge, the evidence columns (and ``confidence``, ``accepted`` with a calibration).
        Default None.
    unrelated : bool, optional
        Adds column ``partner``. Default False.
    fields : Sequence[str], optional
        The columns of a deformable run and of a field's scores, before the message. Default none.

    Returns
    -------
    list of str
        The column names.
    """
    judged = [] if judge is None else [*FEATURES, *(["confidence", "accepted"] if judge.calibration else [])]
    return [
        "case", *(["partner"] if unrelated else []), "image_id", "stratum", "width", "height",
        "initial_displacement_px", "method", "input", "direction", "reference_modality", "floating_modality",
        "status", "metric", "seconds", "error_px", *(f"est_{k}" for k in MATRIX_KEYS),
        *(f"true_{k}" for k in MATRIX_KEYS), *judged, *fields, "message",
    ]  # fmt: skip


def deformable_result(
    rigid: RegistrationResult | None, deformed: DeformableResult, method: str
) -> RegistrationResult:
    """One row's result of a deformable run: the deformable stage's after the rigid method's (``None``: none).

    Its matrix is the affine closest to the total field (the rigid start where the stage failed),
    its status the stage's, its metric the rigid method's (else the stage's), its seconds both
    stages', its message both messages, the stage's named by ``method``.

    Parameters
    ----------
    rigid : RegistrationResult or None
        The rigid method's result; None for a deformable method on its own.
    deformed : DeformableResult
        The deformable stage's result.
    method : str
        The deformable method's name, prefixed to its message.

    Returns
    -------
    RegistrationResult
        The combined result.
    """
    matrix = affine_of_field(deformed.field) if deformed.ok else IDENTITY if rigid is None else rigid.matrix
    messages = [rigid.message] if rigid is not None and rigid.message else []
    return RegistrationResult(
        matrix,
        deformed.status,
        deformed.metric if rigid is None else rigid.metric,
        deformed.seconds + (0.0 if rigid is None else rigid.seconds),
        "; ".join([*messages, f"{method}: {deformed.message}"]),
    )


def _total_field(result: RegistrationResult, deformed: DeformableResult | None, case: Any) -> np.ndarray:
    """The case's total field: the deformable stage's where it succeeded, the method's own, or its matrix's."""
    if deformed is not None and deformed.ok:
        return deformed.field
    if result.field is not None:
        return result.field
    return affine_to_field(result.matrix, (int(case.height), int(case.width)))


@dataclass(frozen=True)
class Judge:
    """How :func:`register_cases` judges each result (docs/method.md, section 15).

    Its evidence (the alternatives drawn with ``seed``) and, with a calibration,
    its confidence and whether it is accepted.
    """

    seed: int = 0
    calibration: Calibration | None = None

    def columns(self, result: RegistrationResult, reference: np.ndarray, floating: np.ndarray) -> dict[str, Any]:
        """The judgement's columns of one result (the evidence of a failed result: :data:`NO_EVIDENCE`).

        Parameters
        ----------
        result : RegistrationResult
            The method's result.
        reference, floating : numpy.ndarray
            The CoMIRs it registered.

        Returns
        -------
        dict
            The :data:`~comir.calibration.FEATURES` values; with a calibration also ``confidence``
            (0 for a failed result) and ``accepted``.
        """
        measured = evidence(reference, floating, result.matrix, seed=self.seed) if result.ok else dict(NO_EVIDENCE)
        if self.calibration is None:
            return measured
        confidence = self.calibration.confidence(measured) if result.ok else 0.0
        return {**measured, "confidence": confidence, "accepted": result.ok and self.calibration.accepts(confidence)}


def unrelated_partner(cases: pd.DataFrame, index: int) -> str | None:
    """The case whose floating patch shows nothing of case ``index``'s reference patch; None if none does.

    The first case from half the table on (cycling) that is cut from another image, or from the
    same image where the box around everything its floating patch shows (its corners mapped by
    its true transform, widened by the largest displacement of a deformation test set) lies
    outside the reference patch: so one large image (a scene cut into strips) gives unrelated
    pairs too.  Cases whose place in the image is not known (``crop_x`` < 0: prebuilt test
    sets) pair only with other images.

    Parameters
    ----------
    cases : pandas.DataFrame
        The test set's cases.
    index : int
        The row (position) of the case whose partner is sought.

    Returns
    -------
    str or None
        The partner's ``case`` name, or None.
    """
    n = len(cases)
    here = cases.iloc[index]
    for step in range(n // 2, n // 2 + n):
        other = cases.iloc[(index + step) % n]
        if other["case"] == here["case"]:
            continue
        if other["image_id"] != here["image_id"] or _apart(here, other):
            return str(other["case"])
    return None


def _apart(reference_case: pd.Series, floating_case: pd.Series) -> bool:
    """Whether the floating patch of ``floating_case`` shows nothing of the reference patch of ``reference_case``.

    Both of one image; their patch origins ``crop_x``, ``crop_y`` in it (unknown below 0: not apart).
    """
    origins = [np.array([float(case["crop_x"]), float(case["crop_y"])]) for case in (reference_case, floating_case)]
    if min(origins[0].min(), origins[1].min()) < 0:
        return False
    width, height = float(floating_case["width"]), float(floating_case["height"])
    truth = np.array([float(floating_case[f"true_{k}"]) for k in MATRIX_KEYS]).reshape(2, 3)
    corners = geometry.apply(truth, np.array([[0.0, 0.0], [width, 0.0], [0.0, height], [width, height]]))
    margin = float(floating_case.get("deformation_max_displacement_px", 0.0) or 0.0)
    low = corners.min(axis=0) + origins[1] - margin - origins[0]  # in the reference patch's pixels
    high = corners.max(axis=0) + origins[1] + margin - origins[0]
    size = np.array([float(reference_case["width"]), float(reference_case["height"])])
    return bool((high <= 0).any() or (low >= size).any())


def results_evidence(
    results: pd.DataFrame, image_dir: Path, modalities: Mapping[str, Mapping[str, Any]], seed: int = 0
) -> pd.DataFrame:
    """``results`` (per-case rows on CoMIRs) with the evidence of each result (:class:`Judge` without calibration).

    The patches are read from ``image_dir`` as :func:`register_cases` read them.

    Parameters
    ----------
    results : pandas.DataFrame
        Rows of :func:`register_cases` (``case``, ``direction``, ``status``, ``metric``,
        ``seconds``, ``message``, ``est_*``; with ``partner``, rows of unrelated pairs).
    image_dir : pathlib.Path
        The folder of the CoMIR patches.
    modalities : Mapping[str, Mapping[str, Any]]
        The modalities' configurations by slot.
    seed : int, optional
        The seed of the evidence's alternatives. Default 0.

    Returns
    -------
    pandas.DataFrame
        ``results`` (index reset) with the :data:`~comir.calibration.FEATURES` columns appended.
    """
    judge = Judge(seed)
    measured = []
    for row in results.itertuples(index=False):
        reference_slot, floating_slot = DIRECTIONS[row.direction]
        matrix = np.array([getattr(row, f"est_{k}") for k in MATRIX_KEYS]).reshape(2, 3)
        result = RegistrationResult(matrix, row.status, row.metric, row.seconds, str(row.message))
        reference = load_patch(image_dir, f"{row.case}_{reference_slot}_ref", "comir", modalities[reference_slot])
        floating_case = getattr(row, "partner", row.case)  # an unrelated pair's floating patch is its partner's
        floating = load_patch(image_dir, f"{floating_case}_{floating_slot}_flo", "comir", modalities[floating_slot])
        measured.append(judge.columns(result, reference, floating))
    return pd.concat([results.reset_index(drop=True), pd.DataFrame(measured, columns=list(FEATURES))], axis=1)
