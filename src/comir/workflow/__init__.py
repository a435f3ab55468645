"""Glue for the Snakemake rules and scripts: configuration slices, logging and provenance.

Snakemake reruns a job when the ``params`` it was run with change (its ``params``
rerun trigger compares their ``repr``). Each rule therefore receives only the part of
the configuration that it uses, in a canonical form (:func:`canonical`: mappings with
sorted keys), so that an unrelated edit, or merely re-ordered keys, reruns nothing;
see docs/how-to/ablations.md, "A changed setting reruns only the jobs it affects".

What the rules read and get is worked out, from the validated configuration, by the
submodules, whose plain data workflow/rules/common.smk turns into Snakemake's inputs:
:mod:`comir.workflow.jobs` (registration jobs and sources, calibrations, stress series,
pools), :mod:`comir.workflow.params` (each rule's params) and :mod:`comir.workflow.targets`
(the files each rule reads and the default target's). This module imports none of them:
the scripts import it in the jobs' environments, which lack what comir.config needs.
"""

from __future__ import annotations

import datetime
import logging
import platform
import subprocess
import sys
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import comir

PACKAGES = (
    "numpy",
    "scipy",
    "pandas",
    "statsmodels",
    "scikit-image",
    "matplotlib",
    "tifffile",
    "opencv",
    "SimpleITK",
    "torch",
    "snakemake",
)
# Distribution names differ between pip and conda-forge: the first one installed is reported.
_DISTRIBUTIONS = {"opencv": ("opencv-python-headless", "opencv-python", "opencv", "py-opencv")}


def canonical(value: Any) -> Any:
    """``value`` with every mapping (recursively) a dict in sorted key order and tuples as lists.

    Two configurations that differ only in the order of their keys get the same ``repr``.

    Parameters
    ----------
    value : Any
        Any value; mappings, lists and tuples are converted recursively, mapping keys to ``str``.

    Returns
    -------
    Any
        The converted value (other values as they are).
    """
    if isinstance(value, Mapping):
        return {str(key): canonical(value[key]) for key in sorted(value, key=str)}
    if isinstance(value, (list, tuple)):
        return [canonical(item) for item in value]
    return value


def pick(mapping: Mapping[str, Any], keys: Iterable[str]) -> dict[str, Any]:
    """The entries of ``mapping`` named in ``keys`` (absent keys are left out).

    Parameters
    ----------
    mapping : Mapping[str, Any]
        The entries to pick from.
    keys : Iterable[str]
        The names of the entries to keep, in the result's order.

    Returns
    -------
    dict of str to Any
        A new dict (the values are not copied).
    """
    return {key: mapping[key] for key in keys if key in mapping}


def modality_fields(modalities: Mapping[str, Mapping[str, Any]], keys: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Per modality slot (A, B) only the settings named in ``keys``.

    Parameters
    ----------
    modalities : Mapping[str, Mapping[str, Any]]
        The settings of each modality slot.
    keys : Iterable[str]
        The settings to keep (those a slot lacks are left out).

    Returns
    -------
    dict of str to dict
        Slot -> the picked settings (:func:`pick`).
    """
    keys = tuple(keys)
    return {slot: pick(spec, keys) for slot, spec in modalities.items()}


def setup_logging(log_path: str | Path | None) -> logging.Logger:
    """Send the library's log records (and uncaught exceptions) to the rule's log file.

    Parameters
    ----------
    log_path : str or pathlib.Path or None
        The log file, overwritten (its folder is created); None or empty: standard error only.

    Returns
    -------
    logging.Logger
        The ``comir`` logger. Records of level INFO and above go to standard error and the file, and
        :data:`sys.excepthook` logs uncaught exceptions to it.
    """
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w"))
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", handlers=handlers, force=True
    )
    logger = logging.getLogger("comir")

    def log_exception(kind: type[BaseException], value: BaseException, tb: Any) -> None:
        logger.error("failed: %s", value, exc_info=(kind, value, tb))

    sys.excepthook = log_exception
    return logger


def git_revision(
    directory: Path = Path(__file__).resolve().parent,  # noqa: B008 - an immutable Path, this package's folder
) -> str:
    """The git commit of ``directory``'s checkout, marked ``+uncommitted`` if tracked files changed; else "unknown".

    Parameters
    ----------
    directory : pathlib.Path, optional
        A folder of the checkout. Default: this package's folder.

    Returns
    -------
    str
        The commit hash, with ``+uncommitted`` where tracked files changed; ``"unknown"`` where git
        is missing or the folder is not a checkout.
    """
    try:
        revision = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=directory, capture_output=True, text=True
        ).stdout.strip()
        return revision + ("+uncommitted" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def package_versions() -> dict[str, str]:
    """The versions of Python, comir and the installed ``PACKAGES`` (those not installed are left out)."""
    versions = {"python": platform.python_version(), "comir": comir.__version__}
    for name in PACKAGES:
        for distribution in _DISTRIBUTIONS.get(name, (name,)):
            try:
                versions[name] = metadata.version(distribution)
                break
            except metadata.PackageNotFoundError:
                continue
    return versions


def provenance(config: Mapping[str, Any]) -> dict[str, Any]:
    """What made a result: the validated configuration, versions and git revision.

    Parameters
    ----------
    config : Mapping[str, Any]
        The validated configuration (copied shallowly into the result).

    Returns
    -------
    dict of str to Any
        ``created`` (UTC, ISO 8601, seconds), ``git_revision`` (:func:`git_revision`), ``versions``
        (:func:`package_versions`), ``platform`` and ``config``.
    """
    return {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "git_revision": git_revision(),
        "versions": package_versions(),
        "platform": platform.platform(),
        "config": dict(config),
    }
