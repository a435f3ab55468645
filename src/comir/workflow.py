"""Glue for the Snakemake scripts: logging into the rule's log file and provenance records."""

from __future__ import annotations

import datetime
import logging
import platform
import subprocess
import sys
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import comir

PACKAGES = (
    "numpy", "scipy", "pandas", "statsmodels", "scikit-image", "matplotlib", "tifffile",
    "opencv", "SimpleITK", "torch", "snakemake",
)
# Distribution names differ between pip and conda-forge: the first one installed is reported.
_DISTRIBUTIONS = {"opencv": ("opencv-python-headless", "opencv-python", "opencv", "py-opencv")}


def setup_logging(log_path: str | Path | None) -> logging.Logger:
    """Send the library's log records (and uncaught exceptions) to the rule's log file."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w"))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", handlers=handlers, force=True)
    logger = logging.getLogger("comir")

    def log_exception(kind: type[BaseException], value: BaseException, tb: Any) -> None:
        logger.error("failed: %s", value, exc_info=(kind, value, tb))

    sys.excepthook = log_exception
    return logger


def git_revision(directory: Path = Path(__file__).resolve().parent) -> str:
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
    """What made a result: the validated configuration, versions and git revision."""
    return {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "git_revision": git_revision(),
        "versions": package_versions(),
        "platform": platform.platform(),
        "config": dict(config),
    }
