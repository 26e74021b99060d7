# retail_dp: two commands set everything up on a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DATA_DIR := data/landing

export DAGSTER_HOME := $(CURDIR)/dagster_home
export DBT_SEND_ANONYMOUS_USAGE_STATS := false
export DO_NOT_TRACK := 1

.PHONY: install run check slo test dev generate lint bench-generate bench-pipeline clean

# Create the virtual environment from the lock file and parse the dbt project.
$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	$(BIN)/retail-dp prepare
	touch $(STAMP)

install: $(STAMP)

# The default sample, generated once if the landing zone has none.
$(DATA_DIR)/manifest.json: | $(STAMP)
	$(BIN)/retail-dp generate --out $(DATA_DIR)

generate: $(STAMP)
	$(BIN)/retail-dp generate --out $(DATA_DIR)

run: $(STAMP) $(DATA_DIR)/manifest.json
	$(BIN)/retail-dp run

# Run every asset check against the warehouse as it stands; non-zero if an ERROR check fails.
check: $(STAMP)
	$(BIN)/retail-dp check --junit-xml data/warehouse/checks.junit.xml

slo: $(STAMP)
	$(BIN)/retail-dp slo

test: $(STAMP)
	$(BIN)/pytest -q; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 1; fi; exit $$rc

dev: $(STAMP)
	$(BIN)/dagster dev -w workspace.yaml

lint: $(STAMP)
	$(BIN)/ruff check retail_dp tests benchmarks
	$(BIN)/ruff format --check retail_dp tests benchmarks

bench-generate: $(STAMP)
	$(BIN)/python benchmarks/generate_bench.py

bench-pipeline: $(STAMP)
	$(BIN)/python benchmarks/pipeline_bench.py

clean:
	rm -rf $(VENV) dbt_project/target dbt_project/logs data/warehouse
