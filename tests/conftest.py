"""Fixtures shared by the test modules, and the markers of the test tiers (docs/testing.md).

The markers are applied here from what a test uses, so a new test lands in its tier unaided:

* ``workflow``: the test, one of its fixtures, or a function of the tests it calls uses
  tests/helpers/snakemake.py (``run_snakemake``, ``planned_jobs``, ``SNAKEMAKE``; the
  ``tiny_run`` fixture uses them too). :func:`helpers.snakemake.run_snakemake` refuses to run
  for a test without the marker, so nothing in the unit tier starts Snakemake unnoticed;
* ``slurm``: every test of tests/test_slurm.py;
* ``browser``: the test uses the ``browser_executable`` fixture or tests/helpers/browser.py;
* ``slow``: the test uses ``tiny_run`` (a complete workflow run: minutes); elsewhere it is set
  by hand, with the reason, on long tests (real trainings, the wheel build);
* ``gpu``: set by hand on tests that need CUDA; they are skipped where PyTorch sees no device.

The unit tier (``make test-fast``) is everything without these markers.
"""

from __future__ import annotations

import functools
import gc
import inspect
import os
import sys
import types
from collections.abc import Callable
from pathlib import Path

import pytest

from helpers import browser as browser_helpers
from helpers import snakemake as snakemake_helpers
from helpers.browser import BrowserUnavailable, ensure_browser
from helpers.snakemake import TINY_CONFIG, run_snakemake

TESTS = Path(__file__).resolve().parent
WORKFLOW_USES = (
    snakemake_helpers,
    snakemake_helpers.run_snakemake,
    snakemake_helpers.planned_jobs,
    snakemake_helpers.SNAKEMAKE,
)
BROWSER_USES = (browser_helpers, browser_helpers.Chromium, browser_helpers.ensure_browser)
SLURM_MODULES = {"test_slurm.py"}


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A complete run of the tiny configuration (.test/config.yaml); tests must not change it."""
    workdir = tmp_path_factory.mktemp("tiny")
    run = run_snakemake("--cores", "2", "--configfile", str(TINY_CONFIG), cwd=workdir)
    assert run.returncode == 0, run.stderr[-3000:]
    return workdir


@pytest.fixture(scope="session")  # session: resolved before a workflow run, so a skip costs nothing
def browser_executable() -> str:
    """Headless Chromium's executable (tests/helpers/browser.py), or a skip with the reason."""
    try:
        return ensure_browser()
    except BrowserUnavailable as error:
        if os.environ.get("COMIR_REQUIRE_BROWSER") == "1":
            pytest.fail(f"COMIR_REQUIRE_BROWSER=1 but no browser for the browser tests: {error}")
        pytest.skip(f"no browser for the browser tests: {error}")


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """PyTorch on one thread, as the tests' networks are tiny.

    Two OpenMP threads spin-wait for each other: on a loaded 2-core machine a tiny GAN's training
    step took 29 s of CPU instead of 0.2 s. Tests of threading set their own counts.
    """
    torch = sys.modules.get("torch")  # imported at collection by the test modules that use it
    if torch is not None:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        yield
        torch.set_num_threads(threads)
    else:
        yield


@pytest.fixture(autouse=True)
def _thread_counts_restored():
    """Each test leaves PyTorch's and OpenCV's thread counts as it found them.

    Code under test sets them for the rest of the process: ``python -m comir register`` its
    ``--threads`` (2 by default), a training its ``threads``. Left at 2, the OpenMP spin-waits of
    the paragraph above made the next PyTorch tests of the worker ~10x slower (a C4-averaged
    equivariance test: 0.9 s after another test, 8.4 s after one that ran the command).
    """
    torch, cv2 = sys.modules.get("torch"), sys.modules.get("cv2")
    before = (torch and torch.get_num_threads(), cv2 and cv2.getNumThreads())
    yield
    if torch is not None and torch.get_num_threads() != before[0]:
        torch.set_num_threads(before[0])
    if cv2 is not None and cv2.getNumThreads() != before[1]:
        cv2.setNumThreads(before[1])


# --- the tiers ------------------------------------------------------------------------------


def _code_names(code: types.CodeType) -> set[str]:
    """The global and attribute names a function's code (and the code nested in it) refers to."""
    names, stack = set(), [code]
    while stack:
        code = stack.pop()
        names.update(code.co_names)
        stack.extend(const for const in code.co_consts if isinstance(const, types.CodeType))
    return names


def _is_test_code(function: Callable) -> bool:
    code = getattr(function, "__code__", None)
    return code is not None and Path(code.co_filename).resolve().is_relative_to(TESTS)


def _uses(function: Callable, targets: tuple, seen: set[int] | None = None) -> bool:
    """Whether a function of the tests refers to one of ``targets`` (objects or modules).

    Followed through the functions of the tests it refers to (a module's ``plan`` helper that
    calls ``planned_jobs``, say); ``functools.partial`` objects count as their function.
    """
    function = inspect.unwrap(function)
    seen = set() if seen is None else seen
    if id(function) in seen or not _is_test_code(function):
        return False
    seen.add(id(function))
    scope = function.__globals__
    modules = {target.__name__ for target in targets if isinstance(target, types.ModuleType)}
    for name in _code_names(function.__code__):
        if name in modules:  # imported inside the function
            return True
        found = scope.get(name, scope)  # the scope itself stands for "not a global"
        if isinstance(found, functools.partial):
            found = found.func
        if any(found is target for target in targets):
            return True
        if isinstance(found, types.FunctionType) and _uses(found, targets, seen):
            return True
    return False


def _functions(item: pytest.Item) -> list[Callable]:
    """The test's function and those of the fixtures it uses (the ones that apply to it)."""
    functions = [item.function] if hasattr(item, "function") else []
    fixtureinfo = getattr(item, "_fixtureinfo", None)
    if fixtureinfo is not None:
        functions += [defs[-1].func for defs in fixtureinfo.name2fixturedefs.values() if defs]
    return functions


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Marks every test with the tiers it belongs to (this module's docstring)."""
    for item in items:
        functions = _functions(item)
        if any(_uses(function, WORKFLOW_USES) for function in functions):
            item.add_marker(pytest.mark.workflow)
        if item.path.name in SLURM_MODULES:
            item.add_marker(pytest.mark.slurm)
        if "browser_executable" in item.fixturenames or any(_uses(f, BROWSER_USES) for f in functions):
            item.add_marker(pytest.mark.browser)
        if "tiny_run" in item.fixturenames:
            item.add_marker(pytest.mark.slow)


def _freeze_survivors() -> None:
    """What is alive now (imported modules, caches), moved out of the garbage collector's sight.

    Full collections then look at a test module's own objects only. Some libraries collect
    explicitly (statsmodels' Holm adjustment, on every call): with PyTorch, SciPy, OpenCV and
    ITK loaded each full collection took ~0.4 s, 15 s of the unit tier.
    """
    gc.collect()
    gc.freeze()


def pytest_collection_finish(session: pytest.Session) -> None:
    _freeze_survivors()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None):
    result = yield
    if nextitem is not None and nextitem.path != item.path:  # a module's fixtures are finalised
        _freeze_survivors()
    return result


@pytest.hookimpl(tryfirst=True)  # before the test's fixtures are set up (tiny_run runs Snakemake)
def pytest_runtest_setup(item: pytest.Item) -> None:
    snakemake_helpers.workflow_allowed = item.get_closest_marker("workflow") is not None
    if item.get_closest_marker("gpu") is not None:
        import torch

        if not torch.cuda.is_available():
            pytest.skip("needs a CUDA device; PyTorch sees none")
