"""Shared fixtures: the one Snakemake runner of the workflow tests and a finished tiny run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY_CONFIG = ROOT / ".test" / "config.yaml"
SNAKEMAKE = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile")]


def run_snakemake(*args: str, cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    """The workflow's command line, as users run it (targets and flags first, ``--configfile`` last)."""
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


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A complete run of the tiny configuration (.test/config.yaml); tests must not change it."""
    workdir = tmp_path_factory.mktemp("tiny")
    run = run_snakemake("--cores", "2", "--configfile", str(TINY_CONFIG), cwd=workdir)
    assert run.returncode == 0, run.stderr[-3000:]
    return workdir

