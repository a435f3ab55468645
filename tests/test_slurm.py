"""The workflow on a real (one-node) SLURM cluster through profiles/slurm, against a local run.

Needs root and Debian's apt (tests/slurm/local_cluster.py installs slurm-wlm and munge,
starts munged, slurmctld and slurmd on loopback and removes everything afterwards).
Elsewhere the tests are skipped with the reason; with COMIR_REQUIRE_SLURM=1 (set by
.ci/run) they fail instead, so CI cannot pass without having run them.

Determinism, checked on this 2-core CPU host: data, test sets, training (loss history,
weights) and CoMIRs are bit-identical between two runs with the same seed and threads, so
they must be identical between SLURM and local runs too. Mutual-information registration
(SimpleITK) is not: its estimates differ by ~1e-9 px between two local runs, hence the
tolerance on numbers. Timings, memory and CPU columns are never compared.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers.snakemake import ROOT, SNAKEMAKE, TINY_CONFIG

CONFIG = TINY_CONFIG
# Faster than the profile's 20 s for second-long test jobs; logs of successful jobs kept as evidence.
SLURM_TEST_OPTIONS = ["--slurm-init-seconds-before-status-checks", "1", "--slurm-keep-successful-logs"]
RTOL = ATOL = 1e-6
# Columns whose values depend on the machine's load, not on the computation.
VOLATILE_COLUMN = re.compile(r"second|time|_s$|cpu|rss|mem", re.I)
VOLATILE_KEYS = {"created"}
SKIPPED_PARTS = {"logs", "benchmarks"}

spec = importlib.util.spec_from_file_location("local_cluster", ROOT / "tests" / "slurm" / "local_cluster.py")
local_cluster = importlib.util.module_from_spec(spec)
spec.loader.exec_module(local_cluster)

pytestmark = pytest.mark.slow


@pytest.fixture()
def cluster(tmp_path_factory):
    """A fresh one-node cluster per test (so each test also proves a clean restart)."""
    try:
        cluster = local_cluster.LocalCluster.start()
    except local_cluster.Unavailable as error:
        if os.environ.get("COMIR_REQUIRE_SLURM") == "1":
            pytest.fail(f"COMIR_REQUIRE_SLURM=1 but no SLURM test cluster: {error}")
        pytest.skip(f"no SLURM test cluster: {error}")
    try:
        yield cluster
    finally:
        cluster.stop(keep_logs=tmp_path_factory.mktemp("slurm-daemon-logs"))
        assert not any(p.exists() for p in cluster.written), "the test cluster's configuration was left behind"
        assert all(proc.poll() is not None for proc in cluster.procs.values()), "a SLURM daemon is still running"


def start(args: list[str], cwd: Path, log: Path) -> subprocess.Popen:
    cwd.mkdir(parents=True, exist_ok=True)
    print("$ cd", cwd, "&&", shlex.join(args), flush=True)  # shown with -s or on failure
    with open(log, "w") as out:
        return subprocess.Popen(args, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=local_cluster.clean_env())


def finish(proc: subprocess.Popen, log: Path, timeout: float, what: str) -> str:
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.terminate()  # Snakemake cancels its SLURM jobs on SIGTERM
        proc.wait(timeout=60)
    text = log.read_text(errors="replace")
    assert proc.returncode == 0, f"{what} failed (exit {proc.returncode}):\n{text[-6000:]}"
    return text


def slurm_logs(workdir: Path) -> str:
    return "\n".join(
        f"--- {p.relative_to(workdir)}\n{p.read_text(errors='replace')[-2500:]}"
        for p in sorted((workdir / ".snakemake" / "slurm_logs").rglob("*.log"))
    )


# --- the profiles parse (no cluster needed) -----------------------------------------------------


@pytest.mark.parametrize("profile", ["default", "local", "slurm"])
def test_profile_plans_the_tiny_run(profile, tmp_path):
    """Every key is a valid option (Snakemake rejects unknown ones) and the DAG is planned."""
    args = [
        *SNAKEMAKE, "--profile", str(ROOT / "profiles" / profile), "--configfile", str(CONFIG), "-n", "--quiet", "rules"
    ]
    run = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=local_cluster.clean_env())
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    assert "train" in run.stdout + run.stderr


# --- a GPU request goes through SLURM -------------------------------------------------------


def test_gpu_resource_becomes_a_slurm_gpu(cluster, tmp_path):
    """resources: gpu=1 -> sbatch --gpus=1: the job gets the node's (fake) GPU."""
    (tmp_path / "Snakefile").write_text(
        "rule gpu_job:\n"
        "    output: 'gpu.txt'\n"
        "    resources: gpu=1, mem_mb=100, runtime=5\n"
        "    shell: 'echo \"$CUDA_VISIBLE_DEVICES $SLURM_JOB_ID\" > {output}'\n"
    )
    args = [sys.executable, "-m", "snakemake", "--profile", str(ROOT / "profiles" / "slurm"), *SLURM_TEST_OPTIONS]
    proc = start(args, tmp_path, tmp_path / "snakemake.out")
    output = finish(proc, tmp_path / "snakemake.out", 300, "the GPU job on SLURM")
    visible, job_id = (tmp_path / "gpu.txt").read_text().split()
    assert visible == "0" and job_id.isdigit(), output
    jobs = {job["id"]: job for job in cluster.jobs()}
    assert jobs[job_id]["state"] == "COMPLETED" and jobs[job_id]["comment"].startswith("rule_gpu_job")


# --- the tiny configuration on SLURM and locally ------------------------------------------------


def test_tiny_workflow_on_slurm_equals_local_run(cluster, tmp_path):
    local_dir, slurm_dir = tmp_path / "local", tmp_path / "slurm"
    local_args = [
        *SNAKEMAKE, "--profile", str(ROOT / "profiles" / "local"), "--cores", "2", "--configfile", str(CONFIG)
    ]
    slurm_args = [
        *SNAKEMAKE, "--profile", str(ROOT / "profiles" / "slurm"), *SLURM_TEST_OPTIONS, "--configfile", str(CONFIG)
    ]
    started = time.monotonic()
    # Both at once: the SLURM run mostly waits (job start-up, status polling).
    slurm = start(slurm_args, slurm_dir, tmp_path / "slurm.out")
    local = start(local_args, local_dir, tmp_path / "local.out")
    try:
        local_output = finish(local, tmp_path / "local.out", 900, "the local run")
        try:
            slurm_output = finish(slurm, tmp_path / "slurm.out", 900, "the SLURM run")
        except AssertionError as error:
            raise AssertionError(f"{error}\n{slurm_logs(slurm_dir)}\n{cluster.logs()}") from None
    finally:
        for proc in (slurm, local):  # a failed run must not leave the other one running
            if proc.poll() is None:
                proc.terminate()  # Snakemake cancels its SLURM jobs on SIGTERM
                proc.wait(timeout=60)
    print(f"local and SLURM runs took {time.monotonic() - started:.0f} s together")

    # The jobs really went through SLURM: one COMPLETED SLURM job per submission, a kept
    # SLURM log for each, and every rule that the local run executed as a job among them.
    submitted = re.findall(r"has been submitted with SLURM jobid (\d+)", slurm_output)
    assert submitted, slurm_output[-3000:]
    jobs = {job["id"]: job for job in cluster.jobs()}
    assert set(submitted) <= set(jobs), (submitted, jobs)
    assert all(jobs[i]["state"] == "COMPLETED" for i in submitted), [jobs[i] for i in submitted]
    log_dir = slurm_dir / ".snakemake" / "slurm_logs"
    assert {p.stem for p in log_dir.rglob("*.log")} >= set(submitted)
    ran_locally = set(re.findall(r"^rule (\w+):", local_output, re.M))
    slurm_dirs = [p.name for p in log_dir.iterdir()]
    for rule in ran_locally:
        assert any(d == f"rule_{rule}" or (d.startswith("group_") and d.endswith(f"_{rule}")) for d in slurm_dirs), (
            rule,
            slurm_dirs,
        )

    problems = compare_trees(local_dir, slurm_dir)
    assert not problems, "\n".join(problems[:40])


# --- comparing two result trees ---------------------------------------------------------------


def result_files(root: Path) -> set[Path]:
    """Every file a run wrote, without logs, benchmarks and Snakemake's own bookkeeping."""
    files = set()
    for path in root.rglob("*"):
        rel = path.relative_to(root)
        if path.is_file() and not any(part.startswith(".snakemake") for part in rel.parts):
            if not SKIPPED_PARTS & set(rel.parts):
                files.add(rel)
    return files


def compare_trees(a: Path, b: Path) -> list[str]:
    files_a, files_b = result_files(a), result_files(b)
    problems = [f"only in {a.name}: {p}" for p in sorted(files_a - files_b)]
    problems += [f"only in {b.name}: {p}" for p in sorted(files_b - files_a)]
    assert len(files_a & files_b) > 10, "no results to compare"
    for rel in sorted(files_a & files_b):
        try:
            problems += [f"{rel}: {p}" for p in compare_file(a / rel, b / rel, a, b)]
        except Exception as error:  # a file that cannot be read is a difference too
            problems.append(f"{rel}: {type(error).__name__}: {error}")
    return problems


def compare_file(x: Path, y: Path, root_x: Path, root_y: Path) -> list[str]:
    suffix = x.suffix.lower()
    if suffix == ".csv":
        return compare_tables(pd.read_csv(x), pd.read_csv(y), root_x, root_y)
    if suffix == ".json":
        return compare_values(json.loads(x.read_text()), json.loads(y.read_text()), root_x, root_y, "")
    if suffix in {".tif", ".tiff"}:
        import tifffile

        ix, iy = tifffile.imread(x), tifffile.imread(y)
        return [] if ix.shape == iy.shape and np.array_equal(ix, iy) else ["images differ"]
    if suffix == ".pt":
        import torch

        return compare_values(
            torch.load(x, map_location="cpu", weights_only=False),
            torch.load(y, map_location="cpu", weights_only=False),
            root_x, root_y, "",
        )
    if suffix == ".png":
        import cv2

        ix, iy = cv2.imread(str(x), cv2.IMREAD_UNCHANGED), cv2.imread(str(y), cv2.IMREAD_UNCHANGED)
        if ix is None or iy is None or ix.shape != iy.shape:
            return ["PNG unreadable or of another size"]
        differing = np.any(ix != iy, axis=-1).mean() if ix.ndim == 3 else (ix != iy).mean()
        return [] if differing <= 0.01 else [f"{differing:.1%} of the pixels differ"]
    return []  # Markdown and the like: derived from the tables (with timings), existence suffices


def normalise(text: str, root: Path) -> str:
    return text.replace(str(root), "<WORKDIR>")


def compare_tables(x: pd.DataFrame, y: pd.DataFrame, root_x: Path, root_y: Path) -> list[str]:
    if list(x.columns) != list(y.columns) or x.shape != y.shape:
        return [f"columns/shape differ: {list(x.columns)} {x.shape} vs {list(y.columns)} {y.shape}"]
    problems = []
    for column in x.columns:
        if VOLATILE_COLUMN.search(str(column)):
            continue
        cx, cy = x[column], y[column]
        if pd.api.types.is_numeric_dtype(cx) and pd.api.types.is_numeric_dtype(cy):
            if not np.allclose(cx.to_numpy(float), cy.to_numpy(float), rtol=RTOL, atol=ATOL, equal_nan=True):
                worst = np.nanmax(np.abs(cx.to_numpy(float) - cy.to_numpy(float)))
                problems.append(f"column {column} differs (max abs difference {worst:.3g})")
        else:
            sx = [normalise(str(v), root_x) for v in cx.tolist()]  # NaN -> 'nan' on both sides
            sy = [normalise(str(v), root_y) for v in cy.tolist()]
            if sx != sy:
                diff = [(u, v) for u, v in zip(sx, sy) if u != v]
                problems.append(f"column {column} differs: {diff[:2]}")
    return problems


def compare_values(x, y, root_x: Path, root_y: Path, where: str) -> list[str]:
    """JSON-like values and checkpoints, recursively: tensors and arrays exactly."""
    import torch

    if isinstance(x, dict) and isinstance(y, dict):
        if set(x) != set(y):
            return [f"{where}: keys differ: {sorted(map(str, set(x) ^ set(y)))}"]
        return [
            p for k in x if k not in VOLATILE_KEYS for p in compare_values(x[k], y[k], root_x, root_y, f"{where}/{k}")
        ]
    if isinstance(x, (list, tuple)) and isinstance(y, (list, tuple)):
        if len(x) != len(y):
            return [f"{where}: lengths differ"]
        return [p for i, (u, v) in enumerate(zip(x, y)) for p in compare_values(u, v, root_x, root_y, f"{where}[{i}]")]
    if isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor):
        return [] if x.shape == y.shape and torch.equal(x, y) else [f"{where}: tensors differ"]
    if isinstance(x, np.ndarray) and isinstance(y, np.ndarray):
        return [] if np.array_equal(x, y) else [f"{where}: arrays differ"]
    if isinstance(x, str) and isinstance(y, str):
        return [] if normalise(x, root_x) == normalise(y, root_y) else [f"{where}: {x!r} vs {y!r}"]
    if isinstance(x, float) or isinstance(y, float):
        return [] if np.isclose(x, y, rtol=RTOL, atol=ATOL, equal_nan=True) else [f"{where}: {x} vs {y}"]
    return [] if x == y else [f"{where}: {x!r} vs {y!r}"]


def test_compare_trees_sees_real_differences_only(tmp_path):
    import tifffile

    a, b = tmp_path / "a", tmp_path / "b"
    for root, (value, seconds, pixel) in {a: (1.0, 3.0, 0), b: (1.0 + 1e-9, 7.0, 0)}.items():
        (root / "results" / "logs").mkdir(parents=True)
        (root / "results" / "logs" / "x.log").write_text(str(seconds))
        for i in range(11):
            (root / "results" / f"same_{i}.md").write_text(str(seconds))
        pd.DataFrame({"path": [f"{root}/img.tif"], "error_px": [value], "seconds": [seconds], "note": [None]}).to_csv(
            root / "results" / "t.csv", index=False
        )
        (root / "results" / "p.json").write_text(json.dumps({"created": str(seconds), "config": {"seed": 1}}))
        tifffile.imwrite(root / "results" / "img.tif", np.full((4, 4), pixel, np.uint8))
    assert compare_trees(a, b) == []

    pd.DataFrame({"path": [f"{b}/img.tif"], "error_px": [1.001], "seconds": [1.0], "note": [None]}).to_csv(
        b / "results" / "t.csv", index=False
    )
    tifffile.imwrite(b / "results" / "img.tif", np.full((4, 4), 1, np.uint8))
    (b / "results" / "p.json").write_text(json.dumps({"created": "0", "config": {"seed": 2}}))
    (b / "results" / "extra.csv").write_text("a\n1\n")
    problems = "\n".join(compare_trees(a, b))
    for expected in ["only in b: results/extra.csv", "t.csv: column error_px differs", "img.tif: images differ",
                     "p.json: /config/seed: 1 vs 2"]:
        assert expected in problems, problems
    assert "seconds" not in problems and "created" not in problems and "logs" not in problems
