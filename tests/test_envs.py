"""The per-rule conda environments (envs/*.yaml), checked offline.

conda channels cannot be reached where this project is developed, so the environments are
never solved here. What can be checked without a solver:

* every env uses conda-forge only (plus `nodefaults`), and every spec is a valid, pinned
  conda MatchSpec (py-rattler parses them strictly, offline);
* every rule that runs code (`script:`, `shell:`, `notebook:`, `wrapper:`) names an env,
  listed through the Snakemake API, so new rules are covered without editing this file;
* every third-party module that a rule's script imports, directly or through the comir
  modules it imports (followed transitively: the scripts are thin and the library does the
  importing), is provided by that rule's env, and the env lists nothing that no rule using
  it imports;
* the pins agree with requirements.txt and the Makefile's torch pin.

What belongs in an env: with `--use-conda` only the job's *script* runs with the env's
Python. Snakemake itself (parsing the Snakefile, which imports comir.config and with it
jsonschema and yaml; scheduling; the SLURM executor) runs in the host environment, also
inside a cluster job, where `python -m snakemake` is the submitting interpreter. The script
preamble unpickles the job's `snakemake` object, importing snakemake, its interface
packages and tenacity (all pure Python) from the host's sys.path, which Snakemake
*appends* to the script's sys.path. So envs need neither snakemake nor jsonschema/pyyaml;
they pin python=3.11 like the host so that this fallback stays importable. The same fallback
means a run cannot prove an env complete (a module missing from the env is silently taken
from the host), hence this static check.
"""

from __future__ import annotations

import ast
import functools
import json
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import rattler  # py-rattler (requirements-test.txt): conda MatchSpecs, offline
import yaml
from rattler.exceptions import InvalidMatchSpecError

ROOT = Path(__file__).resolve().parents[1]
ENVS = ROOT / "envs"
PACKAGE = "comir"
PACKAGE_ROOT = ROOT / "src"

# Import name -> conda-forge package. Names not listed map to themselves (lower case).
IMPORT_TO_CONDA = {
    "torch": "pytorch",
    "torchvision": "torchvision",
    "cv2": "py-opencv",
    "skimage": "scikit-image",
    "sklearn": "scikit-learn",
    "SimpleITK": "simpleitk",
    "itk": "itk-elastix",  # comir.register.elastix imports itk; conda-forge's itk-elastix brings it
    "yaml": "pyyaml",
    "matplotlib": "matplotlib-base",
    "mpl_toolkits": "matplotlib-base",
    "PIL": "pillow",
    "jsonschema": "jsonschema",
    "imageio": "imageio",
    "statsmodels": "statsmodels",
    "tifffile": "tifffile",
}
# requirements.txt name -> conda-forge package (others: the same name, lower case).
PIP_TO_CONDA = {
    "opencv-python-headless": "py-opencv",
    "opencv-python": "py-opencv",
    "SimpleITK": "simpleitk",
    "matplotlib": "matplotlib-base",
    "PyYAML": "pyyaml",
    "torch": "pytorch",
}
# Packages an env may list without any rule importing them.
RUNTIME_ONLY = {"python", "onnx"}  # onnx: imported by torch.onnx.export, which comir.inference.engines calls


# --- the envs ---------------------------------------------------------------------------


def env_files() -> list[Path]:
    return sorted(ENVS.glob("*.yaml"))


def load_env(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def env_specs(path: Path) -> dict[str, "rattler.MatchSpec"]:
    """Conda package name -> parsed MatchSpec; fails on pip sections and duplicates."""
    specs: dict[str, rattler.MatchSpec] = {}
    for dep in load_env(path)["dependencies"]:
        assert isinstance(dep, str), f"{path.name}: only conda packages, no pip section: {dep!r}"
        spec = rattler.MatchSpec(dep, strict=True)
        name = spec.name.normalized
        assert name not in specs, f"{path.name}: {name} listed twice"
        specs[name] = spec
    return specs


def pinned_version(spec: "rattler.MatchSpec") -> str:
    """'2.4.6' from `numpy=2.4.6` (2.4.6.*) or `numpy==2.4.6`."""
    text = str(spec.version)
    match = re.fullmatch(r"(?:==)?([0-9][0-9A-Za-z.]*?)(?:\.\*)?", text)
    assert match, f"{spec}: not an exact or series pin ({text})"
    return match.group(1)


@pytest.mark.parametrize("path", env_files(), ids=lambda p: p.name)
def test_env_channels_are_conda_forge_only(path):
    env = load_env(path)
    assert set(env) <= {"name", "channels", "dependencies"}, sorted(env)
    assert env["channels"] == ["conda-forge", "nodefaults"], env["channels"]
    text = path.read_text()
    assert "defaults" not in text.replace("nodefaults", ""), "the defaults channel is not allowed"


@pytest.mark.parametrize("path", env_files(), ids=lambda p: p.name)
def test_env_specs_are_strict_and_pinned(path):
    specs = env_specs(path)
    assert "python" in specs, "pin python like the host (see the module docstring)"
    for name, spec in specs.items():
        assert spec.version is not None, f"{path.name}: {name} is not pinned"
        assert spec.channel is None, f"{path.name}: {spec}: no per-package channel"
        pinned_version(spec)


def test_matchspec_rejects_malformed_specs():
    """The strict parser is really strict (so the test above can fail)."""
    for bad in ["numpy 2.4.6 extra words", "numpy>=", "numpy=2.4.6=*"]:
        with pytest.raises(InvalidMatchSpecError):
            rattler.MatchSpec(bad, strict=True)


def requirement_pins() -> dict[str, str]:
    """Conda name -> version pinned for pip in requirements.txt and the Makefile's TORCH."""
    pins = {}
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    torch = re.search(r"^TORCH \?= (torch==\S+)", (ROOT / "Makefile").read_text(), re.M)
    assert torch, "the Makefile pins torch as `TORCH ?= torch==X`"
    for line in [*lines, torch.group(1)]:
        line = line.split("#")[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        assert sep, f"requirements.txt: not an exact pin: {line}"
        name = re.sub(r"\[.*\]", "", name).strip()
        if name == "opencv-python-headless" or name == "opencv-python":
            version = ".".join(version.split(".")[:3])  # 5.0.0.93: the 4th number is the wheel build
        pins[PIP_TO_CONDA.get(name, name.lower())] = version
    return pins


def test_env_pins_equal_requirements():
    pins = requirement_pins()
    assert pins["pytorch"] and pins["numpy"]
    mismatches = []
    for path in env_files():
        for name, spec in env_specs(path).items():
            if name in pins and pinned_version(spec) != pins[name]:
                mismatches.append(f"{path.name}: {spec} but requirements pin {pins[name]}")
    assert not mismatches, "\n".join(mismatches)


def test_envs_share_one_python():
    versions = {path.name: pinned_version(env_specs(path)["python"]) for path in env_files()}
    assert len(set(versions.values())) == 1, versions
    minimum = re.search(r'requires-python = ">=(\S+)"', (ROOT / "pyproject.toml").read_text()).group(1)
    assert all(tuple(map(int, v.split("."))) >= tuple(map(int, minimum.split("."))) for v in versions.values())


# --- the rules, through the Snakemake API -----------------------------------------------

INVENTORY = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from snakemake.api import SnakemakeApi
    from snakemake.settings.enums import Quietness
    from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings

    snakefile, workdir, configfiles = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
    rules = []
    with SnakemakeApi(OutputSettings(quiet={Quietness.ALL})) as api:
        wf = api.workflow(
            resource_settings=ResourceSettings(cores=1),
            config_settings=ConfigSettings(configfiles=[Path(c) for c in configfiles]),
            snakefile=snakefile,
            workdir=workdir,
        )
        for rule in wf._workflow.rules:
            base = Path(str(rule.basedir))
            resolve = lambda p: None if p is None else str((base / str(p)).resolve())
            kind = (
                "script" if rule.script else "shell" if rule.shellcmd else "notebook" if rule.notebook
                else "wrapper" if rule.wrapper else "none" if rule.norun else "run"
            )
            rules.append(dict(name=rule.name, kind=kind, script=resolve(rule.script),
                              conda=resolve(rule.conda_env), snakefile=str(rule.snakefile)))
    print("RULES-JSON " + json.dumps(rules))
    """
)


def list_rules(snakefile: Path, workdir: Path, configfiles: tuple[Path, ...] = ()) -> list[dict]:
    """Every rule's kind (script/shell/run/...), script and conda env, as absolute paths."""
    run = subprocess.run(
        [sys.executable, "-c", INVENTORY, str(snakefile), str(workdir), *map(str, configfiles)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=workdir,
    )
    lines = [line for line in run.stdout.splitlines() if line.startswith("RULES-JSON ")]
    assert run.returncode == 0 and lines, run.stdout[-2000:] + run.stderr[-3000:]
    return json.loads(lines[-1].removeprefix("RULES-JSON "))


@pytest.fixture(scope="module")
def rules(tmp_path_factory):
    """The rules of the workflow with its default (demo) configuration, parsed in a temp dir."""
    return list_rules(ROOT / "Snakefile", tmp_path_factory.mktemp("rules"))


# --- imports of a script, followed through the package ------------------------------------


@dataclass
class ImportGraph:
    """Third-party top-level modules a script needs, with the module that imports each."""

    package: str = PACKAGE
    package_root: Path = PACKAGE_ROOT
    third_party: dict[str, str] = field(default_factory=dict)  # module -> first importer
    visited: set[Path] = field(default_factory=set)
    # The script's folder: Snakemake puts it on sys.path, so `import helper` may be scripts/helper.py.
    local_dir: Path | None = None

    def module_file(self, dotted: str) -> Path | None:
        base = self.package_root.joinpath(*dotted.split("."))
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return candidate
        return None

    def visit_module(self, dotted: str) -> None:
        """A package module and the packages above it (importing a.b.c runs a and a.b first)."""
        parts = dotted.split(".")
        for i in range(1, len(parts) + 1):
            path = self.module_file(".".join(parts[:i]))
            if path is not None:
                self.visit(path, ".".join(parts[:i]))

    def visit(self, path: Path, dotted: str | None = None) -> "ImportGraph":
        if path in self.visited:
            return self
        self.visited.add(path)
        if self.local_dir is None:
            self.local_dir = path.parent
        is_package = path.name == "__init__.py"
        for node in parsed_imports(path.read_text(), str(path)):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    self.record(alias.name, path)
                continue
            if node.level:  # relative import inside the package
                if dotted is None:
                    continue
                anchor = dotted.split(".")[: len(dotted.split(".")) - node.level + (1 if is_package else 0)]
                module = ".".join(anchor + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            self.record(module, path)
            if module.split(".")[0] == self.package:
                for alias in node.names:  # `from comir import geometry` imports a module
                    if self.module_file(f"{module}.{alias.name}") is not None:
                        self.visit_module(f"{module}.{alias.name}")
        return self

    def record(self, module: str, importer: Path) -> None:
        top = module.split(".")[0]
        if not top or top in sys.stdlib_module_names or top == "__future__":
            return
        if top == self.package:
            self.visit_module(module)
        elif self.local_dir is not None and (self.local_dir / f"{top}.py").is_file():
            self.visit(self.local_dir / f"{top}.py")
        else:
            self.third_party.setdefault(top, str(importer))


@functools.cache  # every script's graph visits the package again: parse each text once
def parsed_imports(text: str, filename: str) -> list[ast.Import | ast.ImportFrom]:
    return executed_imports(ast.parse(text, filename))


def executed_imports(tree: ast.AST):
    """Every import statement, also inside functions (lazy imports still run).

    Not those under `if TYPE_CHECKING:`, which never run.
    """
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else test.attr if isinstance(test, ast.Attribute) else None
            if name == "TYPE_CHECKING":
                skipped.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)) and id(n) not in skipped]


def conda_name(module: str) -> str:
    return IMPORT_TO_CONDA.get(module, module.lower())


def env_problems(rules: list[dict], root: Path = ROOT, package_root: Path = PACKAGE_ROOT) -> list[str]:
    """Why the rules' envs do not fit their code; empty when they do."""
    problems = []
    used: dict[Path, set[str]] = {}
    for rule in rules:
        if rule["kind"] in {"none", "run"}:  # `run:` executes in Snakemake's own process
            continue
        if rule["conda"] is None:
            problems.append(f"rule {rule['name']} ({rule['snakefile']}): {rule['kind']} without a conda: env")
            continue
        env = Path(rule["conda"])
        if not env.is_file():
            problems.append(f"rule {rule['name']}: conda env {env} does not exist")
            continue
        if env.parent != root / "envs":
            problems.append(f"rule {rule['name']}: conda env {env} is not in envs/")
        provided = set(env_specs(env))
        used.setdefault(env, set())
        if rule["kind"] != "script":
            continue
        if not Path(rule["script"]).is_file():
            problems.append(f"rule {rule['name']}: script {rule['script']} does not exist")
            continue
        graph = ImportGraph(package_root=package_root).visit(Path(rule["script"]))
        for module, importer in sorted(graph.third_party.items()):
            used[env].add(conda_name(module))
            if conda_name(module) not in provided:
                problems.append(
                    f"rule {rule['name']}: {env.name} lacks {conda_name(module)} "
                    f"(`import {module}` in "
                    f"{Path(importer).relative_to(root) if Path(importer).is_relative_to(root) else importer})"
                )
    for env, needed in used.items():
        if any(rule["kind"] not in {"script", "none", "run"} for rule in rules if rule["conda"] == str(env)):
            continue  # shell/notebook/wrapper rules: their needs cannot be read off imports
        unused = set(env_specs(env)) - needed - RUNTIME_ONLY
        if unused:
            problems.append(f"{env.name} lists {sorted(unused)}, which no rule using it imports")
    return problems


def test_rules_are_listed(rules):
    names = {rule["name"] for rule in rules}
    assert {"train", "register", "evaluate"} <= names, names
    assert any(rule["kind"] == "script" for rule in rules)


def test_every_rule_has_an_env_providing_its_imports(rules):
    problems = env_problems(rules)
    assert not problems, "\n".join(problems)


def test_every_script_belongs_to_a_rule(rules):
    scripts = {Path(rule["script"]) for rule in rules if rule["script"]}
    orphans = sorted(p.name for p in (ROOT / "scripts").glob("*.py") if p not in scripts)
    assert not orphans, f"scripts/ holds scripts no rule runs: {orphans}"


def test_every_env_is_used(rules):
    envs = {Path(rule["conda"]) for rule in rules if rule["conda"]}
    unused = sorted(p.name for p in env_files() if p not in envs)
    assert not unused, f"envs no rule uses: {unused}"


# --- the check fails when it should --------------------------------------------------------


@pytest.fixture()
def fake_workflow(tmp_path):
    """A tiny package, env and Snakefile.

    The script imports numpy and, via the package, scipy (lazily, in a function) and
    statsmodels (in a sub-package's __init__).
    """
    package = tmp_path / "src" / "comir"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "helper.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import sklearn\n"
        "def f():\n    import scipy.ndimage\n    return scipy.ndimage\n"
    )
    (package / "sub" / "__init__.py").write_text("import statsmodels.api\n")
    (package / "sub" / "leaf.py").write_text("from ..helper import f\n")
    (tmp_path / "envs").mkdir()
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "job.py").write_text(
        "import os\nimport numpy as np\nfrom comir import helper\nfrom comir.sub.leaf import f\nimport _shared\n"
    )
    (tmp_path / "scripts" / "_shared.py").write_text("import numpy\n")
    (tmp_path / "Snakefile").write_text(
        'rule job:\n    output: "a.txt"\n    conda: "envs/job.yaml"\n    script: "scripts/job.py"\n\n'
        'rule bare:\n    output: "b.txt"\n    shell: "touch {output}"\n'
    )
    return tmp_path


def write_env(path: Path, packages: list[str]) -> None:
    path.write_text(yaml.safe_dump({"channels": ["conda-forge", "nodefaults"], "dependencies": packages}))


def test_import_graph_follows_the_package(fake_workflow):
    graph = ImportGraph(package_root=fake_workflow / "src").visit(fake_workflow / "scripts" / "job.py")
    assert set(graph.third_party) == {"numpy", "scipy", "statsmodels"}  # not os, not sklearn


def test_check_fails_on_a_missing_import_and_a_missing_env(fake_workflow):
    write_env(fake_workflow / "envs" / "job.yaml", ["python=3.11", "numpy=2.4.6", "scipy=1.17.1", "pillow=11.0.0"])
    rules = list_rules(fake_workflow / "Snakefile", fake_workflow)
    problems = env_problems(rules, root=fake_workflow, package_root=fake_workflow / "src")
    text = "\n".join(problems)
    assert "job.yaml lacks statsmodels (`import statsmodels` in src/comir/sub/__init__.py)" in text
    assert "rule bare" in text and "without a conda: env" in text
    assert "job.yaml lists ['pillow']" in text
    assert len(problems) == 3, text
    with pytest.raises(AssertionError):
        assert not problems

    write_env(fake_workflow / "envs" / "job.yaml", ["python=3.11", "numpy=2.4.6", "scipy=1.17.1", "statsmodels=0.15.0"])
    (fake_workflow / "Snakefile").write_text((fake_workflow / "Snakefile").read_text().replace(
        '    shell: "touch', '    conda: "envs/job.yaml"\n    shell: "touch'))
    rules = list_rules(fake_workflow / "Snakefile", fake_workflow)
    assert env_problems(rules, root=fake_workflow, package_root=fake_workflow / "src") == []
