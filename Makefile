# wootric-ingest: every target does its own set-up; `make setup` downloads packages and jars once.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.setup-done
CONF   ?=
PYTEST_ARGS ?=

.PHONY: setup run lint test clean

setup: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	@command -v java >/dev/null 2>&1 || { echo "make setup: Java 17 or newer is required and 'java' is not on PATH (Debian: apt-get install openjdk-17-jre-headless)" >&2; exit 1; }
	@v=$$(java -version 2>&1 | awk -F'"' '/version/ {split($$2, a, "."); print (a[1] == "1" ? a[2] : a[1])}'); \
	  [ -n "$$v" ] && [ "$$v" -ge 17 ] || { echo "make setup: Java 17 or newer is required; found: $$(java -version 2>&1 | head -n1)" >&2; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[spark,test]'
	$(BIN)/python -m wootric_ingest.lake.spark
	@touch $(STAMP)

## make run: the job against the sandbox API (or against CONF=path, e.g. the real API)
run: setup
ifeq ($(CONF),)
	$(BIN)/python -m jobs.run_with_sandbox --config conf/local.yaml
else
	$(BIN)/wootric-ingest run --config $(CONF)
endif

## make lint: ruff (lint and format) over everything, mypy over the package; `make test` runs it first
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: setup lint
	$(BIN)/python -m pytest --durations=20 $(PYTEST_ARGS)

## make dist: the wheel that spark-submit (--py-files) and the Databricks bundle ship, into $(DIST)/
DIST ?= dist
NODE_TYPE ?=
PIPELINE ?=
.PHONY: dist bundle
dist: setup
	rm -f $(DIST)/wootric_ingest-*.whl
	$(BIN)/python -m pip wheel --quiet --no-deps --wheel-dir $(DIST) .
	@ls $(DIST)/wootric_ingest-*.whl

## make bundle CONF=conf/databricks.yaml [NODE_TYPE=...] [PIPELINE=1]: the Databricks Asset Bundle for that config,
## into bundle/; PIPELINE=1 adds a Lakeflow Declarative Pipeline over the `wootric` Spark data source
bundle:
	@test -n "$(CONF)" || { echo "make bundle: name the config, e.g. make bundle CONF=conf/databricks.yaml" >&2; exit 2; }
	@$(MAKE) --no-print-directory dist
	$(BIN)/python -m wootric_ingest.cli.bundle --config $(CONF) --dist $(DIST) --out bundle $(if $(NODE_TYPE),--node-type $(NODE_TYPE)) $(if $(PIPELINE),--pipeline)

## make chaos [CHAOS_RUNS=50 CHAOS_SEED=1]: the job run over and over against the sandbox with random faults and
## SIGKILLs (seeded, loopback only); prints runs, faults, kills, resumes, records served and landed, lost, duplicates.
## 50 runs take about an hour on a busy 2-core machine; CHAOS_RUNS=10 is the quick version
CHAOS_RUNS ?= 50
CHAOS_SEED ?= 1
.PHONY: chaos
chaos: setup
	$(BIN)/python -m chaos --runs $(CHAOS_RUNS) --seed $(CHAOS_SEED)

## make bench [BENCH_ARGS=--quick]: our own cost of a run (driver memory, landing throughput, no-op run,
## MERGE vs rewrite, Spark start) for 10k, 100k and 1M responses, each beside its baseline; --quick: 1k and 10k;
## then the job beside a plain requests + delta-rs loader and delta-rs writing the same staged rows (10k, 100k, 1M);
## a full sync written as a MERGE against a rewrite on 1M responses (1% changed, 0.1% gone); a batch read of 100k
## responses through the `wootric` Spark data source against the job's extraction of the same; staging throughput
## on 1M responses with and without a personal data policy; the NPS gold refresh after an incremental run changing
## 1% of 1M responses against a full recompute
BENCH_ARGS ?=
.PHONY: bench
bench: setup
	$(BIN)/python bench/landing.py $(BENCH_ARGS)
	$(BIN)/python bench/peer.py
	$(BIN)/python bench/full_sync.py
	$(BIN)/python bench/datasource.py
	$(BIN)/python bench/pii.py
	$(BIN)/python bench/nps.py

clean:
	rm -rf lakehouse build dist *.egg-info .pytest_cache
