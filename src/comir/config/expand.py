"""Entries a dataset generates: the variants of its sweeps and the test sets of its stress series.

Contract: :func:`expand_sweeps` and :func:`expand_stress` add the generated variants and test sets
to a dataset in place and return the problems (a name taken or invalid, a stress series that
cannot degrade its modality); both are idempotent. :func:`sweep_variants`,
:func:`stress_testsets` and :func:`stress_testset_name` name and build the entries;
:func:`modality_shift_problem` says why a shift cannot degrade a modality.
"""

from __future__ import annotations

import copy
import itertools
import re
from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any

from comir.imaging.shifts import severity_label, shift_problem

__all__ = [
    "expand_stress",
    "expand_sweeps",
    "modality_shift_problem",
    "stress_testset_name",
    "stress_testsets",
    "sweep_variants",
]


def sweep_variants(sweep: str, grid: Mapping[str, Sequence[Any]]) -> dict[str, dict[str, Any]]:
    """The variants of one sweep: name -> overrides, one per combination of the grid's values.

    A variant is named ``<sweep>-<value>-...`` in the grid's key order, a ``.`` in a
    value written ``p`` (variant names are folder names and wildcard values).

    Parameters
    ----------
    sweep : str
        The sweep's name, the first part of each variant's name.
    grid : Mapping[str, Sequence[Any]]
        Dotted keys (``training.temperature``: a section, then a key in it) to the values to try.

    Returns
    -------
    dict of str to dict
        Variant name -> its overrides, ``{section: {key: value}}``.
    """
    keys = list(grid)
    variants = {}
    for values in itertools.product(*(grid[key] for key in keys)):
        label = "-".join([sweep, *(str(v).lower().replace(".", "p") for v in values)])
        overrides: dict[str, Any] = {}
        for key, value in zip(keys, values):
            section, field = key.split(".", 1)
            overrides.setdefault(section, {})[field] = value
        variants[label] = overrides
    return variants


def expand_sweeps(name: str, dataset: MutableMapping[str, Any]) -> list[str]:
    """Add the variants of a dataset's ``sweeps`` to its ``variants``; the problems (a name already taken).

    Idempotent: a variant that a sweep generated before (same name, same overrides) is kept.

    Parameters
    ----------
    name : str
        The dataset's name, in the problems' paths.
    dataset : MutableMapping[str, Any]
        The dataset's configuration; its ``variants`` are extended in place.

    Returns
    -------
    list of str
        The problems, ``<path>: <message>`` each: a generated name taken by other settings, or invalid.
    """
    problems = []
    for sweep, grid in dataset.get("sweeps", {}).items():
        where = f"datasets/{name}/sweeps/{sweep}"
        problems += _add_generated(dataset["variants"], sweep_variants(sweep, grid), where, "variant")
    return problems


def _add_generated(section: MutableMapping[str, Any], generated: Mapping[str, Any], where: str, kind: str) -> list[str]:
    """Add generated entries (variants, test sets) to ``section``; the problems (a name taken or invalid).

    An entry generated before (same name, same settings) is kept, so expanding twice changes nothing.
    """
    problems = []
    for entry, settings in generated.items():
        existing = section.get(entry)
        if existing is not None and existing != settings:
            problems.append(f"{where}: generates {kind} {entry!r}, which is taken")
        elif not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", entry):
            problems.append(f"{where}: {entry!r} is not a valid {kind} name")
        else:
            section[entry] = settings
    return problems


def stress_testset_name(series: str, severity: float) -> str:
    """The test set of one severity of a stress series: ``<series>-<severity>``, a '.' written 'p'.

    Parameters
    ----------
    series : str
        The stress series' name.
    severity : float
        The severity of the shift (:func:`comir.imaging.shifts.severity_label` writes it).

    Returns
    -------
    str
        The test set's name.
    """
    return f"{series}-{severity_label(severity)}"


def stress_testsets(series: str, entry: Mapping[str, Any], base: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The test sets of one ``stress`` series: name -> the base test set's settings plus the shift.

    Parameters
    ----------
    series : str
        The series' name.
    entry : Mapping[str, Any]
        The series' settings: ``modality``, ``kind`` and ``severities``.
    base : Mapping[str, Any]
        The settings of the test set it degrades (deep-copied into each test set).

    Returns
    -------
    dict of str to dict
        One test set per severity (:func:`stress_testset_name`), with a ``shift`` of ``modality``,
        ``kind`` and ``severity``.
    """
    return {
        stress_testset_name(series, severity): {
            **copy.deepcopy(dict(base)),
            "shift": {"modality": entry["modality"], "kind": entry["kind"], "severity": severity},
        }
        for severity in entry["severities"]
    }


def expand_stress(name: str, dataset: MutableMapping[str, Any]) -> list[str]:
    """Add the test sets of a dataset's ``stress`` series to its ``testsets``; the problems.

    Like :func:`expand_sweeps`, and idempotent: a test set a series generated before is kept.

    Parameters
    ----------
    name : str
        The dataset's name, in the problems' paths.
    dataset : MutableMapping[str, Any]
        The dataset's configuration; its ``testsets`` are extended in place.

    Returns
    -------
    list of str
        The problems, ``<path>: <message>`` each: a base test set that does not exist or has a
        shift of its own, a shift that cannot degrade the modality, a generated name taken or
        invalid. A series with a problem of its base or shift generates nothing.
    """
    problems = []
    for series, entry in dataset.get("stress", {}).items():
        where = f"datasets/{name}/stress/{series}"
        base = dataset["testsets"].get(entry["base"])
        if base is None:
            problems.append(f"{where}/base: {entry['base']!r} is not a test set of this dataset")
            continue
        if "shift" in base:
            problems.append(f"{where}/base: test set {entry['base']!r} has a shift of its own; stress one without")
            continue
        problem = modality_shift_problem(entry["kind"], entry["modality"], dataset["modalities"])
        if problem:
            problems.append(f"{where}: {problem}")
            continue
        problems += _add_generated(dataset["testsets"], stress_testsets(series, entry, base), where, "test set")
    return problems


def modality_shift_problem(kind: str, slot: str, modalities: Mapping[str, Any]) -> str | None:
    """Why a shift of ``kind`` cannot degrade modality ``slot`` (its channel count), naming the slot.

    Parameters
    ----------
    kind : str
        The shift's kind (:func:`comir.imaging.shifts.shift_problem`).
    slot : str
        The modality slot it degrades, a key of ``modalities``.
    modalities : Mapping[str, Any]
        The dataset's modalities, each with its ``channels``.

    Returns
    -------
    str or None
        The reason, or None (or an empty string) when the shift can degrade the modality.
    """
    problem = shift_problem(kind, modalities[slot]["channels"])
    return problem and problem.replace("this one", f"modality {slot}")
