# simtune: `make demo` and `make test` work on a fresh machine with Python 3.11.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
BENCH  := data/synthetic

.PHONY: install data demo test test-fast typecheck clean

install: $(VENV)/.installed

# torch==2.14.1 / torchvision==0.29.1 install from local wheels here; mlflow is capped at 3.17.2.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

data: $(BENCH)/benchmark.json

$(BENCH)/benchmark.json: | install
	$(BIN)/simtune data synth --out $(BENCH)

demo: install data
	$(BIN)/simtune sweep search_spaces/lambda_ci_race.yaml

# Two pytest workers (one per core of the 2-core VM); a test file stays on one worker, so a
# module's shared sweep runs once.
PYTEST := $(BIN)/python -m pytest -q -n 2 --dist loadfile

test: install
	$(PYTEST) --durations=15

test-fast: install
	$(PYTEST) -m "not slow"

# Types (mypy) and lint (ruff check, configured in pyproject.toml).
typecheck: install
	$(BIN)/python -m mypy simtune scripts
	$(BIN)/ruff check simtune scripts tests

clean:
	rm -rf $(VENV) runs sweeps
