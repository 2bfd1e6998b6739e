.PHONY: help bootstrap services sync dev demo test lint fmt migrate openapi bench

UV ?= uv

help:
	@echo "make bootstrap install system packages (as root) and the locked Python workspace"
	@echo "make services start PostgreSQL and Redis on 127.0.0.1 when they are not answering"
	@echo "make dev      run the embedded default (SQLite, in-process worker)"
	@echo "make demo     same, with the Proxmox simulator beside it"
	@echo "make test     run the whole test suite (needs PostgreSQL and Redis on 127.0.0.1)"
	@echo "make lint     ruff, mypy --strict, import-linter, dependency audit"
	@echo "make fuzz     long schema fuzzing run (FUZZ_EXAMPLES=100 per operation, ~20 min)"
	@echo "make sdk      generate the Python SDK and run the scenario against infrahaus dev --demo"
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
	$(UV) run mypy libs/proxmox/src libs/domain/src services/api/src services/worker/src src tests tools
	$(UV) run lint-imports
	$(UV) run python tools/audit_dependencies.py

# Fails on a known vulnerability; an unreachable service is reported loudly but passes (AUDIT_STRICT=1: fails).
audit:
	$(UV) run python tools/audit_dependencies.py

# The CI run (`make test`) fuzzes 15 examples per operation and 6 stateful sequences; this one digs deeper
# (override FUZZ_EXAMPLES, FUZZ_STATEFUL_EXAMPLES, FUZZ_SEED).
FUZZ_EXAMPLES ?= 100
FUZZ_STATEFUL_EXAMPLES ?= 100
fuzz:
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) FUZZ_STATEFUL_EXAMPLES=$(FUZZ_STATEFUL_EXAMPLES) \
		$(UV) run pytest tests/fuzz -q -p no:cacheprovider --timeout 3600

sdk:
	$(UV) run pytest tests/sdk -q

fmt:
	$(UV) run ruff format .
	$(UV) run ruff check --fix .

migrate:
	$(UV) run infrahaus migrate

openapi:
	$(UV) run infrahaus openapi

bench:
	$(UV) run python -m tests.bench
