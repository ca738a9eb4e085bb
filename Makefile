# patchgate developer commands. Everything runs from the project's own .venv; services needed by
# tests and the demo (Kafka-protocol broker, Redis) are started by the project itself.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: install test test-tansu test-apache lint bench demo up down clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# The whole suite on Tansu, then every integration suite again on Apache Kafka (KRaft).
test: test-tansu test-apache

test-tansu: $(STAMP)
	PATCHGATE_TEST_KAFKA=tansu $(PY) -m pytest

test-apache: $(STAMP)
	scripts/apache-kafka/fetch.sh
	PATCHGATE_TEST_KAFKA=apache $(PY) -m pytest -m integration

lint: $(STAMP)
	$(VENV)/bin/ruff check processors edge tests benchmarks
	$(VENV)/bin/mypy processors edge tests benchmarks

bench: $(STAMP)
	$(PY) -m benchmarks

demo: $(STAMP)
	$(VENV)/bin/patchgate demo

up:
	docker compose up -d

down:
	docker compose down

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
