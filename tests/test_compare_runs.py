"""benchmarks/compare_runs.py on two small results trees written here: what agrees and what differs."""

import importlib.util
import re
import struct
import subprocess
import sys
import zlib
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import tifffile
import torch

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("compare_runs", ROOT / "benchmarks" / "compare_runs.py")
compare_runs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compare_runs)

PIXELS = np.arange(48, dtype=np.uint8).reshape(6, 8)


def png_with_text(pixels: np.ndarray, text: str) -> bytes:
    """A PNG of ``pixels`` with a tEXt chunk after the header: other bytes, the same pixels."""
    encoded = cv2.imencode(".png", pixels)[1].tobytes()
    data = b"Comment\0" + text.encode()
    chunk = struct.pack(">I", len(data)) + b"tEXt" + data + struct.pack(">I", zlib.crc32(b"tEXt" + data))
    end_of_header = 8 + 4 + 4 + 13 + 4  # signature, then IHDR's length, type, data and CRC
    return encoded[:end_of_header] + chunk + encoded[end_of_header:]


def write_run(run: Path, run_number: int, *, angle: str = "12.5", weight: float = 1.0) -> Path:
    """A run folder's results tree; two run numbers differ only where a rerun's outputs would."""
    results = run / "results"
    for folder in ("tables", "model", "images", "logs", "benchmarks"):
        (results / folder).mkdir(parents=True)
    seconds = f"{0.5 + run_number:.2f}"
    (results / "tables" / "same.csv").write_text("id,value\na,1\nb,2\n")
    (results / "tables" / "registration.csv").write_text(f"id,angle_deg,seconds\ncase_0,{angle},{seconds}\n")
    (results / "tables" / "inputs.csv").write_text(f"id,image\ncase_0,{run / 'data' / 'case_0.tif'}\n")
    (results / "tables" / "timing.md").write_text(
        f"# Timing\n\n| stage | angle_deg | total_s |\n| --- | ---: | ---: |\n| train | {angle} | {seconds} |\n"
    )
    (results / "tables" / "provenance.json").write_text(
        f'{{"config": {{"epochs": 3}}, "created": "2026-01-0{run_number}T00:00:00"}}'
    )
    model = {
        "state": {"weight": torch.full((2, 3), weight), "steps": torch.tensor([4, 5])},
        "epochs": 3,
        "provenance": {"created": f"run {run_number}", "source": str(run)},
    }
    torch.save(model, results / "model" / "comir.pt")
    (results / "images" / "pair.png").write_bytes(png_with_text(PIXELS, f"written by run {run_number}"))
    tifffile.imwrite(results / "images" / "comir.tif", PIXELS.astype(np.float32), description=f"run {run_number}")
    (results / "logs" / "train.log").write_text(f"took {seconds} s\n")
    (results / "benchmarks" / "train.tsv").write_text(f"s\tmax_rss\n{seconds}\t{100 + run_number}\n")
    (results / "images" / ".snakemake_timestamp").write_text(str(run_number))
    return results


def outcomes(before: Path, after: Path) -> Counter:
    volatile = re.compile(compare_runs.DEFAULT_VOLATILE, re.IGNORECASE)
    comparison = compare_runs.compare_trees(before, after, volatile)
    return Counter(verdict.outcome for verdict in comparison.verdicts.values())


def test_runs_that_agree_but_in_timings_paths_provenance_and_metadata(tmp_path, capsys):
    before, after = write_run(tmp_path / "run_1", 1), write_run(tmp_path / "run_2", 2)
    assert compare_runs.main([str(before), str(after)]) == 0
    output = capsys.readouterr().out
    assert outcomes(before, after) == {
        "identical": 1,  # same.csv
        "identical_paths_replaced": 1,  # inputs.csv
        "identical_without_volatile": 4,  # registration.csv, timing.md, provenance.json, comir.pt
        "same_content": 2,  # pair.png, comir.tif
        "skipped": 3,  # the log, the benchmark file, the timestamp
    }
    assert ".csv: seconds" in output
    assert ".md: total_s" in output
    assert ".json: created" in output
    assert ".pt: provenance" in output
    assert "model/comir.pt: identical_without_volatile, 2 tensors equal" in output
    assert "differing files: 0" in output


def test_a_changed_value_in_a_kept_column_differs(tmp_path, capsys):
    before, after = write_run(tmp_path / "run_1", 1), write_run(tmp_path / "run_2", 2, angle="12.6")
    assert compare_runs.main([str(before), str(after)]) == 1
    output = capsys.readouterr().out
    assert "tables/registration.csv: row 1, column 'angle_deg': '12.5' != '12.6'" in output
    assert "tables/timing.md: table 1: row 1, column 'angle_deg': '12.5' != '12.6'" in output
    assert "differing files: 2" in output


def test_a_changed_tensor_differs(tmp_path, capsys):
    before, after = write_run(tmp_path / "run_1", 1), write_run(tmp_path / "run_2", 2, weight=1.0 + 1e-6)
    assert compare_runs.main([str(before), str(after)]) == 1
    assert "model/comir.pt: model.state.weight: tensors differ" in capsys.readouterr().out


def test_a_file_in_one_tree_only_fails_the_comparison(tmp_path, capsys):
    before, after = write_run(tmp_path / "run_1", 1), write_run(tmp_path / "run_2", 2)
    (after / "tables" / "extra.csv").write_text("id\na\n")
    (after / "logs" / "extra.log").write_text("skipped, not missing\n")
    assert compare_runs.main([str(before), str(after)]) == 1
    output = capsys.readouterr().out
    assert "only in after: 1\n  tables/extra.csv\n" in output
    assert "differing files: 0" in output


def test_the_volatile_columns_can_be_overridden(tmp_path, capsys):
    before, after = write_run(tmp_path / "run_1", 1), write_run(tmp_path / "run_2", 2)
    assert compare_runs.main([str(before), str(after), "--ignore-columns", "^(created|total_s)$"]) == 1
    output = capsys.readouterr().out
    assert "tables/registration.csv: row 1, column 'seconds': '1.50' != '2.50'" in output
    assert "differing files: 1" in output


def test_without_models_or_images_neither_torch_nor_tifffile_nor_opencv_is_imported(tmp_path):
    for run, seconds in (("run_1", 1), ("run_2", 2)):
        (tmp_path / run / "results").mkdir(parents=True)
        (tmp_path / run / "results" / "table.csv").write_text(f"id,seconds\na,{seconds}\n")
    script = (
        "import sys; sys.path.insert(0, 'benchmarks'); import compare_runs; "
        f"status = compare_runs.main(['{tmp_path / 'run_1' / 'results'}', '{tmp_path / 'run_2' / 'results'}']); "
        "print(sorted({'torch', 'tifffile', 'cv2'} & set(sys.modules))); sys.exit(status)"
    )
    run = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().endswith("[]")
