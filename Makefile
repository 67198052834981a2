# Everything installs into .venv; nothing else on the machine is changed.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: install demo test test-fast lint openapi bench-fleet clean

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(INSTALLED)

install: $(INSTALLED)

# Ingest the real sample in data/, train, replay the rest in time order, print risk.
demo: install
	$(BIN)/predictor run

# The whole suite, slow tests included.
test: install
	$(BIN)/python -m pytest

# The suite without tests marked slow.
test-fast: install
	$(BIN)/python -m pytest -m "not slow"

lint: install
	$(BIN)/ruff check predictor tests dags
	$(BIN)/mypy

# Regenerate the API's OpenAPI document after changing a route or response model.
openapi: install
	$(BIN)/python -m predictor.api.openapi docs/openapi.json

# Every fleet benchmark stage at 100, 1,000 and 10,000 components, one after another,
# then the table of docs/benchmarks.md. Reads the SMD and ASD data sets from
# ../shared/data when present (see benchmarks/run.py). Takes about 30 minutes.
FLEET_RESULTS := benchmarks/.work/fleet-results.jsonl
bench-fleet: install
	mkdir -p benchmarks/.work
	rm -f $(FLEET_RESULTS)
	for size in 100 1000 10000; do \
		for stage in ingest features training scoring forecast hooks compact; do \
			$(BIN)/python benchmarks/run.py --stage $$stage --components $$size \
				>> $(FLEET_RESULTS) || exit 1; \
		done; \
	done
	$(BIN)/python benchmarks/table.py $(FLEET_RESULTS)

clean:
	rm -rf $(VENV) .predictor .pytest_cache
