# bridgebsr: `make run` starts the demo in Prefect, `make test` runs every check. Both install from nothing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run demo lint test bench bench-quick clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,postgres]"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/bridgebsr up --demo

demo: $(STAMP)
	$(BIN)/bridgebsr demo

lint: $(STAMP)
	$(BIN)/ruff check models notifications bridgebsr flows tests benchmarks
	$(BIN)/ruff format --check models notifications bridgebsr flows tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

bench-quick: $(STAMP)
	$(BIN)/python -m benchmarks.run --quick

clean:
	rm -rf $(VENV) .bridgebsr .pytest_cache .mypy_cache .ruff_cache *.egg-info
