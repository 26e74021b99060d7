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

.PHONY: install install-spark test-spark run check slo serve serve-sql mcp contracts test dev generate lint backtest bench-fits \
	bench-generate bench-pipeline bench-engines bench-delivery bench-hub bench-load bench-sql clean

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

# The delivery service on the published snapshot; builds and publishes the sample first if
# nothing is published yet.
PUBLISHED := data/warehouse/published/CURRENT
$(PUBLISHED): | $(STAMP) $(DATA_DIR)/manifest.json
	$(BIN)/retail-dp run

serve: $(STAMP) $(PUBLISHED)
	$(BIN)/retail-dp serve --demo

# The read-only PostgreSQL-wire endpoint for BI tools, governed like the service (README,
# "The SQL endpoint"); the demo callers sign in, as with make serve.
serve-sql: $(STAMP) $(PUBLISHED)
	$(BIN)/retail-dp serve-sql --demo --port 5433

# The MCP server for LLM assistants over streamable HTTP at http://127.0.0.1:8765/mcp (an API
# key in each request's Authorization header); stdio clients start `retail-dp mcp` themselves.
mcp: $(STAMP) $(PUBLISHED)
	$(BIN)/retail-dp mcp --demo --transport http --port 8765

# Regenerate the committed API contracts (docs/openapi.json, docs/schema.graphql).
contracts: $(STAMP)
	$(BIN)/retail-dp openapi

# Debian's Chromium for the browser tests: Playwright drives it (its own browser downloads
# fail here). Installed with apt when running as root; otherwise the hub tests say how.
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ]; then \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	else echo "the hub's browser tests need Debian's chromium: sudo apt-get install chromium"; fi

# The suite on TEST_WORKERS processes (pytest-xdist; each builds the session's shared warehouses
# once); an idle worker takes queued tests from a busy one. TEST_WORKERS=0 runs it in one. Then
# the tests marked `isolated`, which compare latencies within one test, alone: beside another
# worker's load the machine's two cores are not theirs to measure.
TEST_WORKERS ?= 2
test: $(STAMP) $(CHROMIUM)
	$(BIN)/pytest -q -m "not spark and not isolated" -n $(TEST_WORKERS) --dist worksteal; \
		rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 1; fi; \
		if [ $$rc -ne 0 ]; then exit $$rc; fi
	$(BIN)/pytest -q -m "isolated and not spark"; rc=$$?; \
		if [ $$rc -eq 5 ]; then echo "no isolated tests collected"; exit 1; fi; exit $$rc

# The Spark engine (RETAIL_DP_ENGINE=spark): the [spark] extra (pyspark and dbt-spark, a 456 MB
# download, under the lock's constraints), then the tests that compare it with DuckDB.
SPARK_STAMP := $(VENV)/.spark-stamp
$(SPARK_STAMP): $(STAMP) pyproject.toml
	$(BIN)/pip install --quiet -c requirements.lock -e '.[spark]'
	touch $(SPARK_STAMP)

install-spark: $(SPARK_STAMP)

test-spark: $(SPARK_STAMP)
	RETAIL_DP_REQUIRE_SPARK=1 $(BIN)/pytest -q -m spark; rc=$$?; \
		if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 1; fi; exit $$rc

dev: $(STAMP)
	$(BIN)/dagster dev -w workspace.yaml

lint: $(STAMP)
	$(BIN)/ruff check retail_dp tests benchmarks
	$(BIN)/ruff format --check retail_dp tests benchmarks

# The backtest on the sample: the product built 90 days before the sample's last day, against
# what happened since (reports under data/warehouse/backtest/reports/).
backtest: $(STAMP) $(DATA_DIR)/manifest.json
	$(BIN)/retail-dp backtest --horizon 90d --as-of $$($(BIN)/python -c "import json, datetime as d; \
		end = json.load(open('$(DATA_DIR)/manifest.json'))['end_date']; \
		print(d.date.fromisoformat(end) - d.timedelta(days=89))")

bench-fits: $(STAMP)
	$(BIN)/python benchmarks/fit_bench.py --data-dir $(DATA_DIR)

bench-generate: $(STAMP)
	$(BIN)/python benchmarks/generate_bench.py

bench-pipeline: $(STAMP)
	$(BIN)/python benchmarks/pipeline_bench.py

bench-engines: $(SPARK_STAMP)
	$(BIN)/python benchmarks/engine_bench.py

bench-delivery: $(STAMP)
	$(BIN)/python benchmarks/delivery_bench.py

bench-hub: $(STAMP) $(CHROMIUM) $(PUBLISHED)
	$(BIN)/python benchmarks/hub_bench.py

# 50 clients on loopback for 30 s while a new snapshot is published.
bench-load: $(STAMP) $(PUBLISHED)
	$(BIN)/python benchmarks/delivery_load.py

# One query through serve-sql, REST and DuckDB directly: medians in one run.
bench-sql: $(STAMP) $(PUBLISHED)
	$(BIN)/python benchmarks/sql_endpoint_bench.py

clean:
	rm -rf $(VENV) dbt_project/target dbt_project/logs data/warehouse
