# Two commands matter: `make demo` (the main job on built-in data) and `make test`.
# Both create or reuse the local virtual environment .venv with the pinned versions.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench bench-quick convergence clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev,plot,export]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/steadyclf demo --out demo-output

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

# One worker process per core (at most 4): tests are independent, each in its own tmp_path.
test: lint
	$(BIN)/pytest -q -n auto --maxprocesses 4

convergence: $(STAMP)
	$(BIN)/python benchmarks/convergence.py

# Speed against the peers (skorch, LightGBM: the bench extra, installed on first use).
$(VENV)/.installed-bench: $(STAMP)
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev,plot,export,bench]'
	touch $@

bench: $(VENV)/.installed-bench
	$(BIN)/python benchmarks/speed.py

bench-quick: $(VENV)/.installed-bench
	$(BIN)/python benchmarks/speed.py --quick

clean:
	rm -rf $(VENV) demo-output .pytest_cache .mypy_cache .ruff_cache
