# bridgebsr: `make run` starts the demo in Prefect, `make test` runs every check. Both install from nothing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SUDO   := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

.PHONY: install run demo lint test screenshots soak bench bench-quick clean browser

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

# Debian's Chromium for the end-to-end test (tests/e2e): Playwright drives it, no browser download.
browser:
	@test -x /usr/bin/chromium || ($(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends chromium)

test: lint browser
	$(BIN)/pytest -q --durations=20

# The README's screenshots: the end-to-end walkthrough writes them into docs/screenshots
# (a test run writes them to build/screenshots, so the checkout stays clean).
screenshots: $(STAMP) browser
	BRIDGEBSR_SCREENSHOTS=$(CURDIR)/docs/screenshots $(BIN)/pytest -q tests/e2e/test_pilot_lead_day.py tests/e2e/test_desk_form.py tests/e2e/test_partners_door.py

# The large versions of tests/reliability: 10,000 notices, 20 kills, 10,000 fuzz examples.
soak: $(STAMP)
	BRIDGEBSR_SOAK=1 $(BIN)/pytest -q tests/reliability

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

bench-quick: $(STAMP)
	$(BIN)/python -m benchmarks.run --quick

clean:
	rm -rf $(VENV) .bridgebsr .pytest_cache .mypy_cache .ruff_cache *.egg-info build
