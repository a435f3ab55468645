"""Calibrated confidence: from a registration's evidence to the probability of a right result.

See docs/method.md, section 15.  A :class:`Calibration` turns the evidence of a result (:data:`FEATURES`, measured by
:func:`comir.register.confidence.evidence` on the two CoMIRs) into the probability
that the result is within the success threshold: a logistic regression fitted on
labelled registrations of the model's validation data (:func:`fit_calibration`: the
method's own results on validation pairs with known transforms, right or wrong by
the truth, and on unrelated pairs, always wrong; :func:`calibration_data`).  It
stores its threshold, the lowest confidence that keeps the false-accept rate on
those data at or below the one asked for, and its reliability table (predicted
against observed, per bin).  Below the threshold a result is not to be trusted:
the callers report it as ``failed`` with the reason :data:`LOW_CONFIDENCE`.

Only NumPy, SciPy and pandas: the registration, the evaluation and the apply
stage all read calibrations.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

FEATURES = ("quality", "prominence", "overlap")
LOW_CONFIDENCE = "low confidence"
# A result whose evidence cannot be measured (no overlap, a flat CoMIR) gets this evidence: nothing supports it.
NO_EVIDENCE = {"quality": -1.0, "prominence": 0.0, "overlap": 0.0}
# Ridge penalty of the logistic fit (standardised features): the validation data often separate right from
# wrong completely, where an unpenalised fit diverges; this keeps the probabilities finite and ordered.
RIDGE = 1.0
RELIABILITY_BINS = 10
# The bias of a calibration without data: a confidence of ~2e-9, below any threshold.
NEVER = -20.0


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # exact and overflow-free


def _design(rows: Sequence[Mapping[str, float]]) -> np.ndarray:
    """The feature matrix (n, len(FEATURES)) of evidence rows."""
    return np.array([[float(row[name]) for name in FEATURES] for row in rows], dtype=float).reshape(-1, len(FEATURES))


@dataclass(frozen=True)
class Calibration:
    """A fitted map from evidence to the probability of a correct result, and its decision threshold.

    ``mean``/``scale`` standardise the features, ``weights`` and ``bias`` are the
    logistic model's; ``threshold`` is the least confidence of an accepted
    result, ``false_accept_rate`` the rate it was chosen for; ``success_fraction``
    what "correct" meant (error < f x width); ``reliability`` the table of the
    calibration data (bin edges, count, mean predicted, observed rate);
    ``counts`` the calibration data (correct, wrong, unrelated).
    """

    mean: tuple[float, ...]
    scale: tuple[float, ...]
    weights: tuple[float, ...]
    bias: float
    threshold: float
    false_accept_rate: float
    success_fraction: float
    reliability: list[dict[str, float]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def probability(self, rows: Sequence[Mapping[str, float]]) -> np.ndarray:
        """The calibrated probability that each result (its evidence row) is correct.

        Parameters
        ----------
        rows : Sequence[Mapping[str, float]]
            Evidence rows, each with a value for every name in :data:`FEATURES`.

        Returns
        -------
        numpy.ndarray
            ``(len(rows),)`` probabilities in [0, 1].
        """
        x = (_design(rows) - np.array(self.mean)) / np.array(self.scale)
        return _sigmoid(x @ np.array(self.weights) + self.bias)

    def confidence(self, row: Mapping[str, float]) -> float:
        """The probability for one evidence row.

        Parameters
        ----------
        row : Mapping[str, float]
            The evidence of one result, a value for every name in :data:`FEATURES`.

        Returns
        -------
        float
            The calibrated probability that the result is correct.
        """
        return float(self.probability([row])[0])

    def accepts(self, confidence: float) -> bool:
        """Whether a result of this confidence is trusted (at or above the threshold).

        Parameters
        ----------
        confidence : float
            A probability from :meth:`confidence`.

        Returns
        -------
        bool
            ``confidence >= threshold``.
        """
        return bool(confidence >= self.threshold)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able description (stored in model files and calibration files)."""
        return {
            "features": list(FEATURES),
            "mean": list(self.mean),
            "scale": list(self.scale),
            "weights": list(self.weights),
            "bias": self.bias,
            "threshold": self.threshold,
            "false_accept_rate": self.false_accept_rate,
            "success_fraction": self.success_fraction,
            "reliability": self.reliability,
            "counts": self.counts,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Calibration:
        """The calibration of :meth:`to_dict`; ``ValueError`` for another feature set.

        Parameters
        ----------
        data : Mapping[str, Any]
            The description written by :meth:`to_dict` (``reliability`` and ``counts`` may be missing).

        Returns
        -------
        Calibration
            The calibration it describes.

        Raises
        ------
        ValueError
            If its ``features`` are not :data:`FEATURES`.
        """
        if list(data.get("features", [])) != list(FEATURES):
            raise ValueError(f"calibration for features {data.get('features')}, this version measures {FEATURES}")
        return cls(
            tuple(data["mean"]), tuple(data["scale"]), tuple(data["weights"]), float(data["bias"]),
            float(data["threshold"]), float(data["false_accept_rate"]), float(data["success_fraction"]),
            list(data.get("reliability", [])), dict(data.get("counts", {})),
        )  # fmt: skip

    def with_threshold(self, threshold: float) -> Calibration:
        """The same calibration with another decision threshold (a user's override).

        Parameters
        ----------
        threshold : float
            The least confidence of an accepted result, in [0, 1].

        Returns
        -------
        Calibration
            A copy with ``threshold`` replaced.

        Raises
        ------
        ValueError
            If ``threshold`` is outside [0, 1].
        """
        if not 0 <= threshold <= 1:
            raise ValueError(f"a confidence threshold is a probability in [0, 1], got {threshold}")
        return Calibration(**{**self.__dict__, "threshold": float(threshold)})


def _fit_logistic(x: np.ndarray, y: np.ndarray, ridge: float) -> tuple[np.ndarray, float]:
    """Weights and bias of an L2-penalised logistic regression (the bias unpenalised), by L-BFGS."""
    from scipy.optimize import minimize

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = theta[:-1], theta[-1]
        z = x @ w + b
        # log(1 + exp(z)) - y z, stably
        value = np.sum(np.logaddexp(0.0, z) - y * z) + 0.5 * ridge * float(w @ w)
        residual = _sigmoid(z) - y
        return value, np.append(x.T @ residual + ridge * w, residual.sum())

    result = minimize(loss, np.zeros(x.shape[1] + 1), jac=True, method="L-BFGS-B")
    return result.x[:-1], float(result.x[-1])


def reliability_table(probability: np.ndarray, correct: np.ndarray, bins: int = RELIABILITY_BINS) -> list[dict]:
    """Per equal-width bin of predicted probability: its edges, count, mean prediction and observed rate.

    Parameters
    ----------
    probability : numpy.ndarray
        Predicted probabilities in [0, 1] (1 falls into the last bin).
    correct : numpy.ndarray
        Whether each result was correct (bool).
    bins : int, optional
        The number of bins over [0, 1]. Default :data:`RELIABILITY_BINS` (10).

    Returns
    -------
    list of dict
        One dict per bin with keys ``low``, ``high``, ``count``, ``predicted`` and ``observed``
        (the last two NaN for an empty bin).
    """
    probability, correct = np.asarray(probability, float), np.asarray(correct, bool)
    index = np.minimum((probability * bins).astype(int), bins - 1)
    rows = []
    for b in range(bins):
        inside = index == b
        n = int(inside.sum())
        rows.append({
            "low": b / bins, "high": (b + 1) / bins, "count": n,
            "predicted": float(probability[inside].mean()) if n else math.nan,
            "observed": float(correct[inside].mean()) if n else math.nan,
        })  # fmt: skip
    return rows


def threshold_for(probability: np.ndarray, correct: np.ndarray, false_accept_rate: float) -> float:
    """The threshold that accepts at most ``false_accept_rate`` of the wrong results, in the middle of the gap.

    Accepted means ``probability >= threshold``.  The highest wrong
    probability that must be rejected (the ``floor(rate * k)``-th highest of
    ``k`` wrong ones, 0-based) bounds it from below; the least right
    probability above that bound, from above.  Every threshold between the
    two accepts the same calibration results, so it sits midway between them
    in log-odds: as far from the wrong ones as from the right ones, for data
    that shift (docs/method.md, section 15).  Without a right result above
    the bound it lies just above the bound (ties with a wrong result are
    rejected); with no wrong result every result is accepted (0).

    Parameters
    ----------
    probability : numpy.ndarray
        Predicted probabilities of the calibration results.
    correct : numpy.ndarray
        Whether each result was correct (bool).
    false_accept_rate : float
        The largest share of wrong results that may be accepted.

    Returns
    -------
    float
        The threshold, in [0, 1].
    """
    probability, correct = np.asarray(probability, float), np.asarray(correct, bool)
    wrong = np.sort(probability[~correct])[::-1]
    allowed = int(math.floor(false_accept_rate * wrong.size))  # wrong results that may pass
    if wrong.size == 0 or allowed >= wrong.size:
        return 0.0
    bound = wrong[allowed]  # the highest wrong probability rejected
    above = probability[correct & (probability > bound)]
    if above.size == 0:
        return float(np.nextafter(bound, np.inf))
    middle = float(_sigmoid(0.5 * (_logit(bound) + _logit(above.min()))))
    return max(middle, float(np.nextafter(bound, np.inf)))


def _logit(p: float) -> float:
    p = min(max(p, 1e-12), 1.0 - 1e-12)  # 0 and 1 (the degenerate calibrations) stay finite
    return math.log(p / (1.0 - p))


def fit_calibration(
    rows: Sequence[Mapping[str, float]],
    correct: Sequence[bool],
    kinds: Sequence[str],
    false_accept_rate: float = 0.05,
    success_fraction: float = 0.05,
) -> Calibration:
    """The calibration of labelled evidence ``rows`` (``correct``: within the success threshold).

    Data with only correct (or only wrong) results cannot weigh the
    evidence: every result then gets the observed rate, so a model that
    registered none of its validation pairs correctly accepts nothing, nor
    does one that registered none at all (no data).

    Parameters
    ----------
    rows : Sequence[Mapping[str, float]]
        Evidence rows, a value for every name in :data:`FEATURES`.
    correct : Sequence[bool]
        Whether each row's result is within the success threshold.
    kinds : Sequence[str]
        Where each row comes from, ``"true"`` or ``"unrelated"`` (for the counts).
    false_accept_rate : float, optional
        The rate the threshold is chosen for (:func:`threshold_for`). Default 0.05.
    success_fraction : float, optional
        What "correct" meant (error < f x width), stored with the calibration. Default 0.05.

    Returns
    -------
    Calibration
        The fitted calibration with its threshold, reliability table and counts.

    Raises
    ------
    ValueError
        If ``rows``, ``correct`` and ``kinds`` differ in length.
    """
    x, y = _design(rows), np.asarray(correct, dtype=float)
    if len(x) != len(y) or len(y) != len(kinds):
        raise ValueError("rows, correct and kinds must have the same length")
    if len(y) == 0:  # the method registered no calibration pair: nothing shows when to trust it
        zeros = (0.0,) * len(FEATURES)
        return Calibration(zeros, (1.0,) * len(FEATURES), zeros, NEVER, 1.0, float(false_accept_rate),
                           float(success_fraction), counts={"correct": 0, "wrong": 0, "unrelated": 0})  # fmt: skip
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale == 0] = 1.0
    if y.min() == y.max():
        # Only right or only wrong results: the evidence cannot be weighed, so every result gets the
        # observed rate (kept off 0 and 1 by one pseudo-observation of the other kind).
        rate = (y.sum() + 0.5) / (len(y) + 1.0)
        weights, bias = np.zeros(len(FEATURES)), float(np.log(rate / (1.0 - rate)))
    else:
        weights, bias = _fit_logistic((x - mean) / scale, y, RIDGE)
    kinds = np.asarray(kinds)
    calibration = Calibration(
        tuple(map(float, mean)), tuple(map(float, scale)), tuple(map(float, weights)), bias,
        0.0, float(false_accept_rate), float(success_fraction),
    )  # fmt: skip
    probability = calibration.probability(rows)
    threshold = threshold_for(probability, y.astype(bool), false_accept_rate)
    counts = {
        "correct": int(y.sum()),
        "wrong": int(((y == 0) & (kinds == "true")).sum()),
        "unrelated": int((kinds == "unrelated").sum()),
    }
    reliability = reliability_table(probability, y.astype(bool))
    return Calibration(**{**calibration.__dict__, "threshold": threshold, "reliability": reliability,
                          "counts": counts})  # fmt: skip


def calibration_data(true: pd.DataFrame, unrelated: pd.DataFrame, success_fraction: float) -> pd.DataFrame:
    """The labelled evidence of a calibration from per-case results with evidence columns.

    Failed results are left out: they are failures already.

    Parameters
    ----------
    true : pandas.DataFrame
        A run's results on the calibration test set (columns ``case``, ``direction``, ``status``,
        ``error_px``, ``width`` and :data:`FEATURES`); correct when ok and the error is below
        ``success_fraction`` of the width.
    unrelated : pandas.DataFrame
        Its results on unrelated pairs (always wrong); same columns, ``error_px`` and ``width`` unused.
    success_fraction : float
        The success threshold as a fraction of the width.

    Returns
    -------
    pandas.DataFrame
        Columns: case, direction, kind (true / unrelated), the evidence, correct.
    """
    frames = []
    for kind, frame in (("true", true), ("unrelated", unrelated)):
        if frame.empty:
            continue
        frame = frame[frame["status"] == "ok"]
        correct = np.zeros(len(frame), bool) if kind == "unrelated" else (
            frame["error_px"].to_numpy(float) < success_fraction * frame["width"].to_numpy(float))  # fmt: skip
        frames.append(frame[["case", "direction", *FEATURES]].assign(kind=kind, correct=correct))
    columns = ["case", "direction", "kind", *FEATURES, "correct"]
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)


def calibration_key(method: str, params: Mapping[str, Any] | None) -> str:
    """The key of a method's calibration in a model file: its name and parameters, canonical JSON.

    Parameters
    ----------
    method : str
        The registration method's name.
    params : Mapping[str, Any] or None
        Its parameters (None: none).

    Returns
    -------
    str
        Compact JSON with sorted keys.
    """
    return json.dumps({"method": method, "params": dict(params or {})}, sort_keys=True, separators=(",", ":"))


def load_calibration(path: str | Path) -> Calibration:
    """The calibration written to ``path`` (JSON of :meth:`Calibration.to_dict`).

    Parameters
    ----------
    path : str or pathlib.Path
        The JSON file.

    Returns
    -------
    Calibration
        The calibration it describes.

    Raises
    ------
    ValueError
        If it was fitted for another feature set (:meth:`Calibration.from_dict`).
    """
    return Calibration.from_dict(json.loads(Path(path).read_text()))


__all__ = [
    "FEATURES",
    "LOW_CONFIDENCE",
    "NO_EVIDENCE",
    "Calibration",
    "calibration_data",
    "calibration_key",
    "fit_calibration",
    "load_calibration",
    "reliability_table",
    "threshold_for",
]
