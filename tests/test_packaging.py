"""Packaging and project metadata: the wheel validates configurations on its own; citation and catalog files.

The wheel test builds from a copy of the sources, so it never writes ``build/`` or egg-info into the
checkout, and it runs offline with the setuptools of this environment (``--no-build-isolation``,
``--no-index``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "config" / "demo.yaml"
SCHEMA_IN_WHEEL = "comir/schemas/config.schema.yaml"


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def pip(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}
    run = subprocess.run(
        [sys.executable, "-m", "pip", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, f"pip {' '.join(args)} failed:\n{run.stdout[-2000:]}\n{run.stderr[-3000:]}"
    return run


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a copy of the project's packaging inputs (the checkout stays untouched)."""
    tmp = tmp_path_factory.mktemp("wheel")
    project = tmp / "project"
    project.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, project / name)
    shutil.copytree(ROOT / "src", project / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    pip("wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(tmp / "dist"), str(project), cwd=tmp)
    (built,) = (tmp / "dist").glob("comir-*.whl")
    return built


def test_the_wheel_ships_the_schema_and_the_licence(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert SCHEMA_IN_WHEEL in names, "the schema is not package data: an installed comir could not validate"
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), names
    # Only the library: no workflow, tests or results leak into the wheel.
    assert all(n.startswith(("comir/", "comir-")) for n in names), sorted(names)
    schema = yaml.safe_load(zipfile.ZipFile(wheel).read(SCHEMA_IN_WHEEL))
    assert schema["properties"]["datasets"], "the schema in the wheel is not the configuration schema"


# Run in a subprocess from an empty folder, so nothing of the checkout is importable by accident. The
# editable install's .pth puts the checkout's src/ on sys.path too (after PYTHONPATH); it is removed
# before the import so that every comir module, including lazily imported ones, comes from the wheel.
_CHECK = r"""
import json, sys
from pathlib import Path
site, src, demo = map(Path, sys.argv[1:4])
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != src]
import comir, comir.config.schema, yaml
from comir.config.schema import ConfigError
from comir.config.validate import load_config, validate_config
assert Path(comir.__file__).resolve().is_relative_to(site), comir.__file__
load_config(demo)  # the shipped demo validates (raises ConfigError otherwise)
config = yaml.safe_load(demo.read_text())
config["datasets"]["synthetic"]["training"]["lerning_rate"] = 0.1
try:
    validate_config(config)
    message = None
except ConfigError as error:
    message = str(error)
print(json.dumps({"file": comir.__file__, "schema": str(comir.config.schema.SCHEMA), "message": message}))
"""


def test_an_installed_wheel_validates_a_config_without_the_checkout(wheel, tmp_path):
    site = tmp_path / "site"
    pip("install", "--no-deps", "--no-index", "--target", str(site), str(wheel), cwd=tmp_path)
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    # The other dependencies (jsonschema, yaml, the registration methods' libraries) come from this venv.
    env = {**os.environ, "PYTHONPATH": str(site)}
    run = subprocess.run(
        [sys.executable, "-c", _CHECK, str(site.resolve()), str((ROOT / "src").resolve()), str(DEMO)],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    found = json.loads(run.stdout.strip().splitlines()[-1])
    assert Path(found["schema"]).resolve().is_relative_to(site.resolve()), found
    assert found["message"] is not None, "a misspelt key was accepted"
    assert "datasets/synthetic/training: unknown key(s): 'lerning_rate'" in found["message"], found["message"]


def test_the_schema_has_one_home():
    # A second copy (Snakemake's customary workflow/schemas/) would drift from the packaged one.
    from comir.config.schema import SCHEMA

    assert Path(str(SCHEMA)).resolve() == (ROOT / "src" / "comir" / "schemas" / "config.schema.yaml").resolve()
    assert not (ROOT / "workflow" / "schemas").exists()


# --- citation and workflow-catalog metadata -----------------------------------------------------------


def citation() -> dict:
    return yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))


def _check_person(author: dict) -> None:
    # CFF 1.2.0: a person has family-names (and given-names), an entity has a name.
    assert isinstance(author, dict) and (author.get("family-names") or author.get("name")), author


def test_citation_cff_has_the_required_keys_and_matches_pyproject():
    # cffconvert 2.0.0, the latest, pins jsonschema<4, which conflicts with this project's jsonschema>=4.20,
    # so the required keys of the CFF 1.2.0 schema are checked here instead.
    cff = citation()
    assert cff["cff-version"] == "1.2.0"
    for key in ("message", "title", "authors"):
        assert cff.get(key), f"CITATION.cff lacks {key!r}"
    assert cff["type"] == "software"
    for author in cff["authors"]:
        _check_person(author)
    project = pyproject()["project"]
    assert str(cff["version"]) == project["version"], "bump CITATION.cff's version with pyproject.toml's"
    assert cff["license"] == project["license"]


def test_citation_cff_prefers_the_paper():
    paper = citation()["preferred-citation"]
    assert paper["type"] == "conference-paper"
    assert paper["title"].startswith("CoMIR: Contrastive Multimodal Image Representations for Registration")
    for author in paper["authors"]:
        _check_person(author)
    assert [a["family-names"] for a in paper["authors"]] == [
        "Pielawski", "Wetzer", "Öfverstedt", "Lu", "Wählby", "Lindblad", "Sladoje",
    ]
    assert "NeurIPS 2020" in paper["collection-title"] and paper["year"] == 2020
    assert (int(paper["start"]), int(paper["end"])) == (18433, 18444)
    assert any("2006.06325" in str(i["value"]) for i in paper["identifiers"])


def test_workflow_catalog_usage():
    usage = yaml.safe_load((ROOT / ".snakemake-workflow-catalog.yml").read_text(encoding="utf-8"))["usage"]
    assert usage["software-stack-deployment"]["conda"] is True
    assert usage["report"] is True  # the catalog's generator reads usage.report
    flags = usage["mandatory-flags"]
    assert flags["desc"] and "--configfile" in flags["flags"]
    configfile = flags["flags"].split("--configfile", 1)[1].split()[0]
    assert (ROOT / configfile).is_file(), f"the catalog's flag names a missing file: {configfile}"
    assert (ROOT / "config" / "README.md").is_file()  # the catalog shows it as the configuration docs
