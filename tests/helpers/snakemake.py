"""The workflow's command line, as users run it, and the jobs a dry run plans.

A test that uses these (directly, through a function of its module or through a fixture) is
marked ``workflow`` by tests/conftest.py; called from a test without that marker,
:func:`run_snakemake` fails, so the unit tier cannot start Snakemake unnoticed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from helpers.project import ROOT, TINY_CONFIG

__all__ = ["ROOT", "SNAKEMAKE", "TINY_CONFIG", "planned_jobs", "run_snakemake"]

SNAKEMAKE = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile")]
# Set by tests/conftest.py before each test's setup: whether the test is marked ``workflow``
# (None outside pytest).
workflow_allowed: bool | None = None


def run_snakemake(*args: str, cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    """The workflow's command line, as users run it (targets and flags first, ``--configfile`` last)."""
    if workflow_allowed is False:
        raise RuntimeError(
            "Snakemake started by a test without the `workflow` marker: tests/conftest.py marks tests that "
            "use helpers.snakemake directly, through a function of their module or through a fixture"
        )
    return subprocess.run([*SNAKEMAKE, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def planned_jobs(*args: str, cwd: Path) -> set[tuple[str, str]]:
    """Every job a dry run (``-n``) plans, as (rule, "wildcard=value, ...") pairs."""
    run = run_snakemake("-n", *args, cwd=cwd)
    assert run.returncode == 0, run.stderr[-3000:]
    jobs, rule = set(), None

    def close(pending: str | None) -> None:  # a job block without a wildcards line ended
        if pending and pending != "all":
            jobs.add((pending, ""))

    for line in map(str.strip, run.stdout.splitlines()):  # jobs of a group are indented
        if line.startswith(("rule ", "localrule ")):
            close(rule)
            rule = line.split()[1].rstrip(":")
        elif rule and line.startswith("wildcards:"):
            jobs.add((rule, line.split(":", 1)[1].strip()))
            rule = None
        elif rule and (not line or line.startswith("[")):  # a blank line or the next job's time stamp
            close(rule)
            rule = None
    close(rule)
    return jobs
