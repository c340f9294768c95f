# Convenience targets. `make run` and `make test` are the two front-door commands.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8000
OPS_VENV ?= .venv-ops
OPS_BIN := $(abspath $(OPS_VENV))/bin

.PHONY: help venv ui-assets run test lint migrate shell clean-data bench-ingest bench-ingest-instructions bench-kpi bench-search bench-sketches bench-ui bench-replication bench-anomalies bench-alerts \
	ops-venv validate secrets certs cluster-config up down backup-up monitoring-up \
	cluster-up cluster-down app-up backup-full backup-check deploy \
	drill-baseline drill-primary-restore drill-failover drill-minio-outage \
	cluster-local cluster-local-down cluster-local-status cluster-local-clean \
	newman steps

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@

venv: $(VENV)/.installed ## Create/refresh the virtualenv (.venv)

# The UI's front-end libraries, pinned in package-lock.json (npm registry).
UI_VENDOR := observability/ui/static/ui/vendor
$(UI_VENDOR)/.installed: package.json package-lock.json scripts/dev/ui_assets.sh
	scripts/dev/ui_assets.sh
	@touch $@

ui-assets: $(UI_VENDOR)/.installed ## Install the UI's front-end libraries (htmx, uPlot) from npm

run: venv ui-assets ## Start the product on the embedded database with demo data (PORT=8000)
	$(PY) manage.py run_demo --port $(PORT)

test: venv ui-assets ## Lint, then the whole test suite (embedded database unless DATABASE_URL is set)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest

newman: venv ui-assets ## The Step1 Postman collection under newman against a live server (part of make test)
	$(PY) -m pytest -q observability/tests/test_postman.py

lint: venv ## ruff only
	$(VENV)/bin/ruff check .

migrate: venv ## Apply migrations
	$(PY) manage.py migrate

shell: venv ## Django shell on the configured database
	$(PY) manage.py shell

bench-ingest: venv ## Ingest throughput vs raw COPY and the ORM (reports/bench/ingest.json)
	$(PY) -m scripts.bench.ingest

bench-ingest-instructions: venv ## Worker instructions per ingested event (callgrind), this code vs COMPARE=<checkout> (reports/bench/ingest_instructions.json)
	$(PY) -m scripts.bench.ingest_instructions --compare-with "$(COMPARE)"

bench-kpi: venv ## KPI latency on 10M rows vs raw SQL, refresh time, storage (reports/bench/kpi.json)
	$(PY) -m scripts.bench.kpi

bench-search: venv ## HNSW build, semantic search latency and recall@10 on 100k vectors (reports/bench/search.json)
	$(PY) -m scripts.bench.search

bench-sketches: venv ## Sketch merge cost with pgvector vs without (reports/bench/sketches.json)
	$(PY) -m scripts.bench.sketches

bench-anomalies: venv ## One anomaly evaluation minute over 10,000 endpoint baselines: database time (reports/bench/anomalies.json)
	$(PY) -m scripts.bench.anomalies

bench-ui: venv ui-assets ## UI pages and fragments on 10M rows, page weight, chart points (reports/bench/ui.json)
	scripts/dev/install-debian-packages.sh chromium fonts-inter
	$(PY) -m scripts.bench.ui

bench-replication: venv ## Commit and ingest latency, synchronous vs asynchronous replication, on the running local cluster (reports/bench/replication.json)
	$(PY) -m scripts.bench.replication

# The alerts job's minute is its SLOs plus its anomaly baselines: the budget (10 s of
# database time) is the sum of the two reports' figures, each on its own data.
bench-alerts: venv bench-anomalies ## One alert evaluation minute: 1,000 SLOs on 10M requests (reports/bench/alerts.json) plus 10,000 anomaly baselines (bench-anomalies)
	$(PY) -m scripts.bench.alerts

clean-data: ## Delete the embedded databases and demo key under .data/
	rm -rf .data

# --- Validation of the deployment files (no Docker engine needed) -------------------

$(OPS_VENV)/.installed: requirements-ops.txt
	@test -x $(OPS_BIN)/python || $(PYTHON) -m venv $(OPS_VENV)
	$(OPS_BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-ops.txt
	@touch $@

ops-venv: $(OPS_VENV)/.installed ## Virtualenv of the operations tools (.venv-ops)

validate: venv ops-venv ## Check every deployment file: YAML, Compose, Dockerfiles, Nginx, Prometheus, Ansible, shell, dashboards
	scripts/dev/install-debian-packages.sh nginx prometheus openssl
	@echo "== yamllint: every YAML file (.yamllint.yml)"
	$(OPS_BIN)/yamllint --strict .
	@echo "== Compose files against the Compose specification, with their env files"
	$(OPS_BIN)/python scripts/validate/compose.py
	@echo "== GitHub workflow and Dependabot config against their schemas"
	$(OPS_BIN)/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/ci.yml
	$(OPS_BIN)/check-jsonschema --builtin-schema vendor.dependabot .github/dependabot.yml
	@echo "== hadolint: every Dockerfile"
	$(OPS_BIN)/hadolint Dockerfile docker/*/Dockerfile
	@echo "== nginx -t: app and monitoring proxies"
	scripts/validate/nginx.sh
	@echo "== promtool: config, rules, rule unit tests, exporter web config"
	scripts/validate/prometheus.sh
	@echo "== promtool: the SLO rules of manage.py export_slo_rules (check and unit tests)"
	$(PY) -m pytest -q observability/tests/test_export_slo_rules.py
	@echo "== Ansible: syntax check and ansible-lint (production profile)"
	cd infra/ansible && PATH=$(OPS_BIN):$$PATH ansible-playbook --syntax-check site.yml
	cd infra/ansible && PATH=$(OPS_BIN):$$PATH ansible-lint --profile production
	@echo "== shellcheck: every shell script (.shellcheckrc)"
	find . -name '*.sh' -not -path './.venv*' -not -path './.data/*' -print0 | xargs -0 $(OPS_BIN)/shellcheck
	@echo "== switch_cluster_mode.py and the rendered cluster configuration"
	$(OPS_BIN)/python -m pytest -q -c scripts/tests/pytest.ini scripts/tests
	@echo "== Railway and the production deploy: railway.json, setup_railway_env.sh and check_railway_db.sh on the test database, deploy-production.sh --dry-run preflight"
	$(PY) -m pytest -q apm_platform/tests/test_railway_and_deploy.py
	@echo "== Grafana dashboards: datasources, and every SQL panel run on the test database"
	$(PY) -m pytest -q apm_platform/tests/test_grafana_dashboards.py

# --- The local cluster: the three nodes' roles as processes on this machine ---------

# Debian's packages the local cluster runs (no services are started by installing them).
CLUSTER_LOCAL_PACKAGES := postgresql-15 pgbackrest prometheus prometheus-postgres-exporter \
	prometheus-node-exporter nginx openssl curl

cluster-local: venv ops-venv ## Start the local cluster (DATA, CONTROL, APP as processes; state in .cluster-local/)
	scripts/dev/install-debian-packages.sh $(CLUSTER_LOCAL_PACKAGES)
	scripts/cluster/local.sh up

cluster-local-down: ## Stop the local cluster (its state is kept)
	scripts/cluster/local.sh down

cluster-local-status: ## What runs where: processes, ports, data directories, logs
	scripts/cluster/local.sh status

cluster-local-clean: ## Stop the local cluster and delete .cluster-local/
	scripts/cluster/local.sh clean

# --- Docker stacks (need a Docker engine with the Compose plugin) -------------------

SINGLE_COMPOSE := docker compose -f docker/docker-compose.yml --env-file docker/.env.ports
BACKUP_COMPOSE := docker compose -f docker/docker-compose.yml -f docker/docker-compose.backup.yml --env-file docker/.env.ports
cluster_compose = docker compose -f docker/cluster/docker-compose.$(1).yml --env-file docker/cluster/.env.cluster
NODE ?= all
CLUSTER_NODES := $(if $(filter all,$(NODE)),data control app,$(NODE))
# Backups of the single host (default) or of the cluster's CONTROL node (STACK=cluster).
STACK ?= single
BACKUP_EXEC := $(if $(filter cluster,$(STACK)),$(call cluster_compose,control) exec -T pgbackrest,$(BACKUP_COMPOSE) exec -T backup)

define require_docker
	@command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1 || { \
		echo "make $@: needs a Docker engine with the Compose plugin; none is reachable here." >&2; exit 2; }
endef

secrets certs: ## Generate docker/secrets and docker/certs (idempotent; run as root)
	scripts/dev/bootstrap.sh

docker/.env.ports:
	cp docker/.env.ports.example $@

cluster-config: ops-venv ## Render .env.ports or .env.cluster, targets, DB URLs from configs/cluster/cluster.yml
	$(OPS_BIN)/python scripts/cluster/switch_cluster_mode.py
	scripts/dev/bootstrap.sh

up: docker/.env.ports ## Single host: start docker/docker-compose.yml
	$(require_docker)
	$(SINGLE_COMPOSE) up -d --build --wait

down: ## Single host: stop it (volumes are kept)
	$(require_docker)
	$(BACKUP_COMPOSE) down

backup-up: docker/.env.ports ## Single host: add MinIO, WAL archiving and the backup schedule
	$(require_docker)
	$(BACKUP_COMPOSE) up -d --build --wait

monitoring-up: docker/.env.ports ## Single host: Prometheus, Grafana and the exporters only
	$(require_docker)
	$(SINGLE_COMPOSE) up -d --wait prometheus grafana node-exporter postgres-exporter

cluster-up: ## Cluster: start this node's stack (NODE=data|control|app; all: the three, in order)
	$(require_docker)
	$(foreach node,$(CLUSTER_NODES),$(call cluster_compose,$(node)) up -d --build --wait &&) true

cluster-down: ## Cluster: stop this node's stack (NODE=data|control|app|all)
	$(require_docker)
	$(foreach node,$(CLUSTER_NODES),$(call cluster_compose,$(node)) down &&) true

app-up: ## Cluster: start the APP node's stack
	$(require_docker)
	$(call cluster_compose,app) up -d --build --wait

backup-full: ## Full backup to both repositories now (STACK=single|cluster)
	$(require_docker)
	$(BACKUP_EXEC) pgbackrest-secrets --stanza=apm --repo=1 --type=full backup
	$(BACKUP_EXEC) pgbackrest-secrets --stanza=apm --repo=2 --type=full backup

backup-check: ## pgbackrest check and info (STACK=single|cluster)
	$(require_docker)
	$(BACKUP_EXEC) pgbackrest-secrets --stanza=apm check
	$(BACKUP_EXEC) pgbackrest-secrets --stanza=apm info

deploy: ops-venv ## Deploy the cluster with Ansible (infra/ansible/inventory/hosts.ini)
	cd infra/ansible && PATH=$(OPS_BIN):$$PATH ansible-playbook site.yml

# The drills run against TARGET=local (make cluster-local) or compose (the cluster's
# stacks, Docker engine needed); DRILL_SYNC=1 makes drill-failover synchronous first.
TARGET ?= compose
DRILL_ENV = TARGET=$(TARGET) $(if $(DRILL_SYNC),DRILL_SYNC=$(DRILL_SYNC))

drill-baseline: ## Drill 0: replication, archiving, backups, readiness (TARGET=local|compose)
	$(DRILL_ENV) scripts/drills/00_baseline.sh

drill-primary-restore: ## Drill 1: lose the primary's data directory under ingest, restore, RTO/RPO
	$(DRILL_ENV) scripts/drills/01_primary_restore.sh

drill-failover: ## Drill 2: SIGKILL the primary under ingest, promote replica1, seconds to writable, events lost
	$(DRILL_ENV) scripts/drills/02_failover_replica.sh

drill-minio-outage: ## Drill 3: S3 down 2 minutes under ingest: writes continue, alert fires, archive catches up
	$(DRILL_ENV) scripts/drills/03_minio_outage.sh

# The six steps (functional, connectivity, roles and routing, backups, analytics, drills)
# with their JUnit, HTML and JSON reports in reports/all_tests_<UTC timestamp>/.
steps: venv ui-assets ## Step 1-6 against TARGET=local (make cluster-local) or deployed (BASE_URL, DATABASE_URL, keys)
	TARGET=$(TARGET) scripts/run_all_tests.sh
