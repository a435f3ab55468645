"""The package as it was before the speed work, for before/after ratios in one benchmark run.

``baseline_src()`` extracts ``src/`` of :data:`BASELINE_REVISION` (the last revision before
the speed changes of the training input pipeline, inference and registration) from the git
history into a cache folder; :func:`isolation.isolated` imports ``comir`` from there. Outside
a git checkout (an archive) there is no baseline and the benchmarks say so.
"""

from __future__ import annotations

import io
import subprocess
import tarfile
import tempfile
from pathlib import Path

BASELINE_REVISION = "38e5212"
ROOT = Path(__file__).resolve().parents[1]


def baseline_src(revision: str = BASELINE_REVISION) -> Path | None:
    """``src/`` of ``revision`` in a temporary folder, or ``None`` when git or the revision is missing."""
    target = Path(tempfile.gettempdir()) / f"comir-baseline-{revision}"
    if (target / "src" / "comir").is_dir():
        return target / "src"
    try:
        archive = subprocess.run(
            ["git", "archive", "--format=tar", revision, "src"], cwd=ROOT, capture_output=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")
    return target / "src"
