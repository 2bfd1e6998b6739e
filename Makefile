.PHONY: help bootstrap services sync dev demo test lint fmt migrate openapi bench

UV ?= uv

help:
	@echo "make bootstrap install system packages (as root) and the locked Python workspace"
	@echo "make services start PostgreSQL and Redis on 127.0.0.1 when they are not answering"
	@echo "make dev      run the embedded default (SQLite, in-process worker)"
	@echo "make demo     same, with the Proxmox simulator beside it"
	@echo "make test     run the whole test suite (needs PostgreSQL and Redis on 127.0.0.1)"
	@echo "make lint     ruff, mypy --strict, import-linter"
	@echo "make fmt      format and autofix"
	@echo "make migrate  apply database migrations"
	@echo "make openapi  regenerate openapi/openapi.json"
	@echo "make bench    run the benchmarks and print the performance record"

bootstrap:
	bash scripts/bootstrap.sh

services:
	bash scripts/services.sh

sync:
	$(UV) sync --locked

dev: bootstrap
	$(UV) run infrahaus dev

demo: bootstrap
	$(UV) run infrahaus dev --demo

test:
	$(UV) run pytest

lint:
	$(UV) run ruff format --check .
	$(UV) run ruff check .
	$(UV) run mypy libs/proxmox/src libs/domain/src services/api/src services/worker/src src tests
	$(UV) run lint-imports

fmt:
	$(UV) run ruff format .
	$(UV) run ruff check --fix .

migrate:
	$(UV) run infrahaus migrate

openapi:
	$(UV) run infrahaus openapi

bench:
	$(UV) run python -m tests.bench
