"""Deformable registration in the real workflow: a test set with a known deformation, scored by TRE.

A monomodal pairs dataset (B is A with another contrast), so that the runs on the originals
need no training: rigid MI, MI followed by each deformable stage, and elastix's B-spline alone.
"""

import numpy as np
import pandas as pd
import pytest
import tifffile
import yaml

from comir.deformation.sitk import read_field
from helpers.registration_cases import monomodal_pair
from helpers.snakemake import planned_jobs
from helpers.snakemake import run_snakemake as snakemake

EVALUATION = "results/mono/default/evaluation/deformed"
TARGETS = [f"{EVALUATION}/tables/tre.csv", f"{EVALUATION}/tables/tre_wilcoxon.md", f"{EVALUATION}/figures/tre_ecdf.png"]
MI = {"iterations": 30, "start_angles_deg": [0]}


def configuration(root) -> dict:
    return {
        "seed": 4,
        "datasets": {
            "mono": {
                "source": "pairs",
                "modalities": {"A": {"name": "fibres", "channels": 1}, "B": {"name": "copy", "channels": 1}},
                "pairs": {"root": str(root), "split": {"train": ["p0"], "val": ["p1"], "test": ["p2", "p3"]}},
                "testsets": {
                    "deformed": {
                        "patch_size": 96, "rotation_deg": 10, "translation_px": 6,
                        "strata": [{"name": "all", "count": 4}],
                        "deformation": {"max_displacement_px": 3, "smoothness_px": 48, "landmark_spacing_px": 12,
                                        "mask_slot": "A"},
                    }
                },  # fmt: skip
                "registration": {
                    "mi": {"method": "mi", "inputs": ["original"], "params": MI},
                    "mi-bspline": {"method": "mi", "inputs": ["original"], "params": MI,
                                   "deformable": {"method": "bspline", "params": {"iterations": 30}}},
                    "mi-demons": {"method": "mi", "inputs": ["original"], "params": MI,
                                  "deformable": {"method": "demons"}},
                    "elastix-bspline": {"method": "elastix_bspline", "inputs": ["original"],
                                        "params": {"resolutions": 2, "iterations": 64, "grid_spacing_px": 48}},
                },  # fmt: skip
            }
        },
    }


def write_pairs(root):
    """The dataset's four monomodal pairs in ``root`` (the pairs layout); returns ``root``."""
    for i in range(4):
        for folder, pixels in zip(("fibres", "copy"), monomodal_pair(192, 10 + i)):
            (root / folder).mkdir(parents=True, exist_ok=True)
            tifffile.imwrite(root / folder / f"p{i}.tif", pixels)
    return root


@pytest.fixture(scope="module")
def deformable_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("deformable")
    config = configuration(write_pairs(workdir / "pairs"))
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    run = snakemake(*TARGETS, "--cores", "2", "--configfile", "config.yaml", cwd=workdir)
    assert run.returncode == 0, run.stderr[-3000:]
    return workdir, config


def test_a_deformation_test_set_scores_every_run_by_tre(deformable_run):
    workdir, _ = deformable_run
    testset = workdir / "results" / "mono" / "testsets" / "deformed"
    cases = pd.read_csv(testset / "cases.csv")
    assert len(cases) == 4 and (cases["landmarks"] > 30).all()
    images = testset / "images"
    assert len(list(images.glob("*_field.h5"))) == 4 == len(list(images.glob("*_mask_flo.tif")))
    registrations = workdir / "results" / "mono" / "original" / "registration" / "deformed"
    rigid = pd.read_csv(registrations / "mi_B_to_A.csv")
    refined = pd.read_csv(registrations / "mi-bspline_B_to_A.csv")
    assert "deformable_seconds" not in rigid and (refined["deformable_seconds"] > 0).all()
    assert (rigid["tre_n"] == cases["landmarks"]).all() and (rigid["folded_fraction"] == 0).all()
    table = pd.read_csv(workdir / EVALUATION / "tables" / "tre.csv")
    assert len(table) == 8 and set(table["n"]) == {4} and np.isfinite(table["median_tre_px"]).all()
    by = table.set_index(["method", "direction"])
    for direction in ("A_to_B", "B_to_A"):
        # A rigid result misses the deformation (up to 3 px); each deformable stage from it finds most of it.
        start = by.loc[("mi", direction), "median_tre_px"]
        assert 0.3 < start < 3
        for stage in ("mi-bspline", "mi-demons"):
            assert by.loc[(stage, direction), "median_tre_px"] < 0.5 * start, (stage, direction)
            assert by.loc[(stage, direction), "max_folded_fraction"] < 0.001
            assert by.loc[(stage, direction), "success_1px"] >= by.loc[("mi", direction), "success_1px"]
            # The structure masks (Otsu on A) overlap better after the deformable stage.
            assert by.loc[(stage, direction), "median_dice"] > by.loc[("mi", direction), "median_dice"] > 0.5
            assert by.loc[(stage, direction), "median_hd95_px"] < by.loc[("mi", direction), "median_hd95_px"]
    tests = pd.read_csv(workdir / EVALUATION / "tables" / "tre_wilcoxon.csv")
    assert len(tests) == 2 * 6  # every two of the 4 runs, per direction
    assert (workdir / EVALUATION / "figures" / "tre_ecdf.png").stat().st_size > 5000


def test_a_tre_setting_or_a_deformable_stage_reruns_only_what_reads_it(deformable_run, tmp_path):
    workdir, config = deformable_run
    changed = yaml.safe_load(yaml.safe_dump(config))
    changed["datasets"]["mono"]["evaluation"] = {"tre_thresholds_px": [0.5, 1]}
    changed["datasets"]["mono"]["registration"]["mi-demons"]["deformable"]["params"] = {"smoothing_sigma": 2}
    path = tmp_path / "changed.yaml"
    path.write_text(yaml.safe_dump(changed))
    jobs = planned_jobs(*TARGETS, "--configfile", str(path), cwd=workdir)
    registered = "dataset=mono, source=original, testset=deformed, run=mi-demons, direction="
    assert jobs == {("register", registered + "A_to_B"), ("register", registered + "B_to_A"),
                    ("evaluate_tre", "dataset=mono, variant=default, testset=deformed")}  # fmt: skip


def test_a_deformable_stage_with_save_fields_writes_each_cases_field_beside_the_csv(tmp_path):
    """Rule register_fields: the register job of such a run, with the fields folder as an output."""
    config = configuration(write_pairs(tmp_path / "pairs"))
    config["datasets"]["mono"]["registration"]["mi-demons"]["deformable"]["save_fields"] = True
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    registrations = "results/mono/original/registration/deformed"
    targets = [f"{registrations}/{run}_B_to_A.csv" for run in ("mi-demons", "mi-bspline")]
    jobs = planned_jobs(*targets, "--configfile", "config.yaml", cwd=tmp_path)
    wildcards = "dataset=mono, source=original, testset=deformed, run={}, direction=B_to_A"
    assert {("register_fields", wildcards.format("mi-demons")), ("register", wildcards.format("mi-bspline"))} <= jobs
    run = snakemake(targets[0], "--cores", "2", "--configfile", "config.yaml", cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    fields = sorted((tmp_path / registrations / "mi-demons_B_to_A_fields").glob("*.h5"))
    assert [p.name for p in fields] == [f"case_{i:04d}_field.h5" for i in range(4)]
    assert read_field(fields[0]).shape == (96, 96, 2)
