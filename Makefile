# The one setup entry point. Needs only python3 (>= 3.11) and make.
#   make run    set up .venv and run the default pipeline (snakemake --cores all)
#   make report rebuild results/report.html (make run writes it last)
#   make test   set up .venv and run the test suite
#   make lock   regenerate requirements.lock from pyproject.toml
#   make rulegraph  redraw docs/rulegraph.svg (needs Graphviz's dot)
PYTHON ?= python3
VENV   ?= .venv
CORES  ?= all
# the HTML report `make run` writes last and `make report` rebuilds
REPORT ?= results/report.html
# pytest-xdist workers for `make test` (auto: one per CPU core; 0: no workers, one process).
# --dist loadfile keeps a test module on one worker, so its module-scoped fixtures (a workflow
# run, a trained network) are built once; the tiny run shared by several modules is built once
# per session under a file lock (tests/workflow_utils.py). --no-loadscope-reorder hands the
# modules out in collection order, which tests/conftest.py sets: the longest first.
TEST_WORKERS ?= auto
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# the locked environment `make setup` installs (`make lock` writes it)
LOCK   ?= requirements.lock
PIP_VERSION ?= 26.3

.PHONY: run report test setup lock lint rulegraph clean

setup: $(STAMP)

# Installs the locked environment (requirements.lock: every package at an exact version, each
# file's sha256 checked), then mfoml itself in editable mode without resolving anything.
# tools/lock.py --check stops first when pyproject.toml's dependencies changed since the lock.
$(STAMP): pyproject.toml $(LOCK)
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python >= 3.11 is required, found " + sys.version.split()[0]'
	$(PYTHON) tools/lock.py --check --lock $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet pip==$(PIP_VERSION)
	$(BIN)/python -m pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

# Regenerates requirements.lock from pyproject.toml with uv (the version pinned in pyproject's
# test extra; installed into the venv first when missing). Needs the package index. It does not
# depend on the lock being current: that is what it fixes. LOCK_ARGS passes further options to
# uv pip compile, e.g. LOCK_ARGS="--upgrade-package numpy".
UV_VERSION = $(shell sed -n 's/^ *"uv==\([^"]*\)".*/\1/p' pyproject.toml)
lock:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m uv --version 2>/dev/null | grep -qx 'uv $(UV_VERSION)' || $(BIN)/python -m pip install --quiet uv==$(UV_VERSION)
	$(BIN)/python tools/lock.py --lock $(LOCK) -- $(LOCK_ARGS)

# `make run` ends by writing the HTML report (REPORT; not after a dry run: ARGS with -n);
# `make report` rebuilds it from the finished results. Both pass ARGS (e.g. a --configfile).
run: $(STAMP)
	$(BIN)/snakemake --cores $(CORES) $(ARGS)
ifeq ($(filter -n --dry-run --dryrun,$(ARGS)),)
	$(BIN)/snakemake --report $(REPORT) $(ARGS)
endif

report: $(STAMP)
	$(BIN)/snakemake --report $(REPORT) $(ARGS)

test: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/snakefmt --check .
	$(BIN)/snakemake --lint

# docs/rulegraph.svg: the rule graph of the default configuration (config/config.yaml), drawn
# by Graphviz's dot (Debian: apt-get install graphviz); tests/test_rulegraph.py checks that it
# names the DAG's rules.
rulegraph: $(STAMP)
	$(BIN)/snakemake all --rulegraph > docs/.rulegraph.dot
	dot -Tsvg docs/.rulegraph.dot > docs/.rulegraph.svg
	mv docs/.rulegraph.svg docs/rulegraph.svg
	rm -f docs/.rulegraph.dot

clean:
	rm -rf results logs .snakemake
