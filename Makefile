# The verbs a newcomer needs; `make` (or `make help`) lists them from the `## ...` after each target.
.DEFAULT_GOAL := help
.PHONY: help bootstrap services sync dev demo test test-all lint audit fuzz sdk clients fmt migrate openapi bench

UV ?= uv
# pytest-xdist workers for the test targets (auto: one per core); PYTEST_ARGS passes more, e.g. PYTEST_ARGS="-x".
JOBS ?= auto
PYTEST_ARGS ?=
PYTEST_PARALLEL = -n $(JOBS) --dist loadgroup --durations=15
CLIENT_TOOLS = tests/clients/node_modules/.package-lock.json

help: ## list these targets
	@awk 'BEGIN {FS = ":[^#]*## "} /^[a-z][a-z-]*:[^#]*## / {printf "  make %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

bootstrap: ## install system packages (as root) and the locked Python workspace
	bash scripts/bootstrap.sh

services: ## start PostgreSQL and Redis on 127.0.0.1 when they are not answering
	bash scripts/services.sh

sync: ## install the locked workspace (every member, dev tools)
	$(UV) sync --locked

dev: bootstrap ## run the embedded default (SQLite, in-process worker)
	$(UV) run infrahaus dev

demo: bootstrap ## the embedded default with the Proxmox simulator beside it
	$(UV) run infrahaus dev --demo

test: ## the fast loop: unit + integration tests in parallel, slowest printed (PostgreSQL, Redis on 127.0.0.1)
	$(UV) run pytest tests/unit tests/integration $(PYTEST_PARALLEL) $(PYTEST_ARGS)

test-all: $(CLIENT_TOOLS) ## every test, as CI runs it: adds e2e, fault matrix, fuzzing, SDK and real clients
	$(UV) run pytest tests $(PYTEST_PARALLEL) $(PYTEST_ARGS)

lint: ## ruff format and check, mypy --strict, import-linter layer contracts (no network)
	$(UV) run ruff format --check .
	$(UV) run ruff check .
	$(UV) run mypy
	$(UV) run lint-imports

# Fails on a known vulnerability; an unreachable service is reported loudly but passes (AUDIT_STRICT=1: fails).
audit: ## pip-audit of the locked dependencies (needs the network)
	$(UV) run python tools/audit_dependencies.py

# `make test-all` fuzzes 15 examples per operation and 6 stateful sequences; this one digs deeper
# (override FUZZ_EXAMPLES, FUZZ_STATEFUL_EXAMPLES, FUZZ_SEED).
FUZZ_EXAMPLES ?= 100
FUZZ_STATEFUL_EXAMPLES ?= 100
fuzz: ## long schema fuzzing run (FUZZ_EXAMPLES=100 per operation, ~20 min)
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) FUZZ_STATEFUL_EXAMPLES=$(FUZZ_STATEFUL_EXAMPLES) \
		$(UV) run pytest tests/fuzz -q -p no:cacheprovider --timeout 3600

sdk: ## generate the Python SDK and run the scenario against infrahaus dev --demo
	$(UV) run pytest tests/sdk -q

clients: $(CLIENT_TOOLS) ## the TypeScript client and headless Chromium tests (tests/clients)
	$(UV) run pytest tests/clients -q

# The pinned Node tools of tests/clients, installed again whenever their lock file changes.
$(CLIENT_TOOLS): tests/clients/package-lock.json
	npm ci --prefix tests/clients --no-audit --no-fund --loglevel=error

fmt: ## format and autofix
	$(UV) run ruff format .
	$(UV) run ruff check --fix .

migrate: ## apply database migrations
	$(UV) run infrahaus migrate

openapi: ## regenerate openapi/openapi.json
	$(UV) run infrahaus openapi

bench: ## run the benchmarks and print the performance record
	$(UV) run python -m tests.bench
