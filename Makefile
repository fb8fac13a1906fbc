# Developer entry points. `make run` starts the whole system; `make test` runs every test.
SHELL := /bin/bash
UV := $(shell command -v uv 2>/dev/null)
ifeq ($(UV),)
UV := python3 -m uv
endif
PY := .venv/bin/python

.PHONY: setup browser promtool run test lint schemas asyncapi bench clean

setup: ## install uv (if missing) and every package of the workspace from the lock file
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
	@$(UV) sync --frozen --quiet

browser: ## Debian's headless Chromium for the browser tests (never a downloaded browser)
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)

promtool: ## Debian's promtool (package `prometheus`) for the alert-rule checks and unit tests
	@command -v promtool >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq --no-install-recommends prometheus)

run: setup ## migrate and start every service's api + worker and the Telegram emulator
	@$(PY) deploy/local/stack.py

test: setup browser promtool ## run the whole test suite against local Postgres/RabbitMQ/Redis
	@$(PY) deploy/local/check_infra.py
	@$(PY) deploy/local/run_tests.py $(PYTEST_ARGS)
	@$(UV) run --frozen lint-imports

lint: setup
	@$(UV) run --frozen ruff check .
	@$(UV) run --frozen lint-imports

schemas: setup ## regenerate the committed JSON Schemas of the contracts
	@$(PY) -m contracts.schemas

asyncapi: setup ## regenerate the committed AsyncAPI documents (docs/02-api/asyncapi, the gateway's)
	@$(PY) deploy/local/asyncapi.py

bench: setup ## benchmark the hot paths beside the machine's baselines (BENCH_ARGS=--help)
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	@$(PY) tests/bench/run.py $(BENCH_ARGS)

SCALE ?= 10k
.PHONY: seed-scale bench-scale
seed-scale: setup ## a consistent history of SCALE=10k|100k|1m customers in the vpn_scale database
	@$(PY) tests/bench/scale/seed.py --scale $(SCALE)

bench-scale: setup ## searches, lists and sweeps on the seed-scale database (BENCH_SCALE_ARGS=--help)
	@$(PY) tests/bench/scale/run.py $(BENCH_SCALE_ARGS)

clean:
	rm -rf .run .pytest_cache

.PHONY: backup restore restore-drill
backup: setup ## pg_dump DATABASE_URL's database into backups/<stamp>.dump (+ one dump per schema)
	@$(PY) deploy/backup/backup.py $(BACKUP_ARGS)

restore: setup ## restore BACKUP=backups/<stamp>.dump [SCHEMA=billing] [FORCE=1] into DATABASE_URL
	@test -n "$(BACKUP)" || { echo "usage: make restore BACKUP=backups/<stamp>.dump [SCHEMA=name] [FORCE=1]" >&2; exit 2; }
	@$(PY) deploy/backup/restore.py "$(BACKUP)" $(if $(SCHEMA),--schema "$(SCHEMA)") $(if $(FORCE),--force)

restore-drill: setup ## restore the latest backup (or BACKUP=...) into a scratch database, smoke-check, drop it
	@$(PY) deploy/backup/drill.py $(if $(BACKUP),--backup "$(BACKUP)")
