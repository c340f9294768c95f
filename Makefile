# Convenience targets. `make run` and `make test` are the two front-door commands.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8000

.PHONY: help venv run test lint migrate shell clean-data bench-ingest bench-kpi bench-search

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@

venv: $(VENV)/.installed ## Create/refresh the virtualenv (.venv)

run: venv ## Start the product on the embedded database with demo data (PORT=8000)
	$(PY) manage.py run_demo --port $(PORT)

test: venv ## Lint, then the whole test suite (embedded database unless DATABASE_URL is set)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest

lint: venv ## ruff only
	$(VENV)/bin/ruff check .

migrate: venv ## Apply migrations
	$(PY) manage.py migrate

shell: venv ## Django shell on the configured database
	$(PY) manage.py shell

bench-ingest: venv ## Ingest throughput vs raw COPY and the ORM (reports/bench/ingest.json)
	$(PY) scripts/bench/ingest.py

bench-kpi: venv ## KPI latency on 10M rows vs raw SQL, refresh time, storage (reports/bench/kpi.json)
	$(PY) scripts/bench/kpi.py

bench-search: venv ## HNSW build, semantic search latency and recall@10 on 100k vectors (reports/bench/search.json)
	$(PY) scripts/bench/search.py

clean-data: ## Delete the embedded databases and demo key under .data/
	rm -rf .data
