"""The GPU check's plumbing, run on the CPU (no GPU here): every step and its summary."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
gpu_check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu_check)


def test_without_a_gpu_it_says_so_and_succeeds(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert gpu_check.main(["--out", str(tmp_path / "out")]) == 0
    assert "gpu-check skipped: PyTorch sees no CUDA device" in capsys.readouterr().out
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_every_step_runs_on_the_cpu(tmp_path):
    out = tmp_path / "check"
    arguments = ["--device", "cpu", "--configs", "tiny", "--steps", "2", "--batch", "4", "--out", str(out)]
    assert gpu_check.main(arguments) == 0
    summary = json.loads((out / "summary.json").read_text())
    paper = summary["paper_network"]
    assert paper["steps_per_s"] > 0 and paper["paper_schedule_s"] == pytest.approx(736 / paper["steps_per_s"])
    assert paper["autocast_dtype"].startswith("float32")  # mixed precision is for CUDA only
    (config,) = summary["configs"]
    assert config["config"] == "tiny" and config["train_steps_per_s"] > 0
    (comirs,) = summary["comirs"]
    # The same checkpoint on the same device and precision: equal to float32 rounding.
    assert comirs["max_relative_difference"] < 1e-4 and comirs["min_correlation"] > 0.9999
