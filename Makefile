# The two commands: `make demo` (set up and run the pipeline on the built-in data)
# and `make test` (set up with test extras and run the test suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CORES ?= 2
# The CPU build of PyTorch; CUDA users install their build into .venv first
# (pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128).
TORCH ?= torch==2.13.0

.PHONY: setup demo demo-gan test test-fast lint docs bench gpu-check clean config-docs

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/activate requirements.txt pyproject.toml
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet -e ".[workflow]"
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed requirements-test.txt
	$(BIN)/pip install --quiet -r requirements-test.txt
	$(BIN)/pip install --quiet -e ".[workflow,test]"
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(BIN)/snakemake --cores $(CORES) --configfile config/demo.yaml
	$(BIN)/snakemake --cores 1 --configfile config/demo.yaml --report results/report.html

# The demo with the GAN translation baselines (config/demo-gan.yaml merged onto the demo;
# docs/how-to/gan-baselines.md): the demo's jobs plus three small GANs trained on the CPU.
demo-gan: setup
	$(BIN)/snakemake --cores $(CORES) --configfile config/demo.yaml config/demo-gan.yaml
	$(BIN)/snakemake --cores 1 --configfile config/demo.yaml config/demo-gan.yaml --report results/report-gan.html

# Every test tier (docs/testing.md; this is CI's command, .ci/run): the unit tests, the
# Snakemake workflow (dry runs and real runs of the tiny configuration), tests/test_slurm.py on a
# real one-node SLURM cluster and the report in headless Chromium, both set up with apt-get when
# run as root on Debian (skipped elsewhere, with the reason; COMIR_REQUIRE_SLURM=1 and
# COMIR_REQUIRE_BROWSER=1 make that a failure, as .ci/run does), the slow and the GPU tests.
test: lint
	$(BIN)/python -m pytest

# The unit tier only: no test marked workflow, slurm, browser, gpu or slow (tests/conftest.py
# applies the markers from what a test uses; docs/testing.md), in two pytest-xdist workers (the
# unit tests share nothing; the workflow tiers stay serial: their Snakemake runs use the cores).
UNIT_TIER := not (workflow or slurm or browser or gpu or slow)
test-fast: lint
	$(BIN)/python -m pytest -m "$(UNIT_TIER)" -n 2

# Static checks, part of `make test`: Snakemake's linter (log:, conda:, paths ...), snakefmt
# formatting of Snakefile and workflow/rules, ruff on the Python code (pyflakes, pycodestyle,
# import order, docstrings, bugbear; settings in pyproject.toml), and the documentation site
# (mkdocs.yml) built with --strict: a broken link or anchor, a missing page or a docstring the
# API reference cannot render fails. NO_MKDOCS_2_WARNING silences mkdocs-material's banner.
lint: $(VENV)/.installed-test
	$(BIN)/snakemake --lint
	$(BIN)/snakefmt --check .
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/lint-imports
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# The documentation site at http://127.0.0.1:8000, rebuilt on every edit (`make lint` builds it into site/).
docs: $(VENV)/.installed-test
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve

bench: setup
	$(BIN)/python benchmarks/bench_network.py --threads $(CORES)
	$(BIN)/python benchmarks/bench_registration.py --threads $(CORES)

# On a CUDA machine: GPU training and inference, their speed and memory, CoMIRs against the CPU
# (benchmarks/gpu_check.py); says so and succeeds where PyTorch sees no GPU.
gpu-check: setup
	$(BIN)/python benchmarks/gpu_check.py --out results/gpu-check

clean:
	rm -rf results .snakemake

# config/README.md ends with the key table generated from the schema (a test checks it is current).
config-docs: setup
	$(BIN)/python -c "import pathlib, comir.config.reference as c; p = pathlib.Path('config/README.md'); t = p.read_text(); head = t[: t.index(c.REFERENCE_MARKER)]; p.write_text(head + c.REFERENCE_MARKER + '\n\n' + c.schema_reference())"
