#!/usr/bin/env bash
# Installs each workspace member alone, as a built wheel, into a throwaway environment and imports it:
# an undeclared dependency or a file the wheel leaves out fails here rather than in production.
set -euo pipefail
cd "$(dirname "$0")/.."

check() {  # member, module to import
  local env; env=$(mktemp -d)
  UV_PROJECT_ENVIRONMENT="$env" uv sync --quiet --locked --no-dev --no-editable --package "$1"
  "$env/bin/python" -c "import importlib, sys; importlib.import_module(sys.argv[1])" "$2"
  rm -rf "$env"
  printf '==> %s installs on its own and imports %s\n' "$1" "$2"
}

check infrahaus-proxmox infrahaus_proxmox.simulator
check infrahaus-domain infrahaus_domain.models
check infrahaus-api infrahaus_api.app
check infrahaus-worker infrahaus_worker.actors
