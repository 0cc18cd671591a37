# The one setup entry point. Needs only python3 (>= 3.11) and make.
#   make run    set up .venv and run the default pipeline (snakemake --cores all)
#   make test   set up .venv and run the test suite
PYTHON ?= python3
VENV   ?= .venv
CORES  ?= all
# pytest-xdist workers for `make test` (auto: one per CPU core; 0: no workers, one process).
# --dist loadfile keeps a test module on one worker, so its module-scoped fixtures (a workflow
# run, a trained network) are built once; the tiny run shared by several modules is built once
# per session under a file lock (tests/workflow_utils.py). --no-loadscope-reorder hands the
# modules out in collection order, which tests/conftest.py sets: the longest first.
TEST_WORKERS ?= auto
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test setup lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python >= 3.11 is required, found " + sys.version.split()[0]'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/snakemake --cores $(CORES) $(ARGS)

test: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/snakefmt --check .
	$(BIN)/snakemake --lint

clean:
	rm -rf results logs .snakemake
