#!/usr/bin/env bash
# Installs each workspace member alone, as a built wheel, into a throwaway environment and imports it:
# an undeclared dependency or a file the wheel leaves out fails here rather than in production. Then the
# production install (what deploy/Dockerfile runs) must work without the simulator, which it must not contain.
set -euo pipefail
cd "$(dirname "$0")/.."

envs=()
trap 'rm -rf "${envs[@]}"' EXIT

install() {  # member [extra uv sync args...] -> prints the environment's path
  local env; env=$(mktemp -d)
  envs+=("$env")
  UV_PROJECT_ENVIRONMENT="$env" uv sync --quiet --locked --no-dev --no-editable --package "$@" >&2
  printf '%s' "$env"
}

check() {  # member, python code to run in its environment
  local env; env=$(install "$1")
  "$env/bin/python" -c "$2"
  printf '==> %s installs on its own\n' "$1"
}

check infrahaus-proxmox "import infrahaus_proxmox.client, infrahaus_proxmox.pct"
# The simulator's package data: the vendored PVE schema and the container skeleton.
check infrahaus-pvesim "
import infrahaus_pvesim.command
from infrahaus_pvesim import sandbox, schema
assert schema.load_schema(), 'PVE schema missing'
assert sandbox.SKELETON.is_dir() and sandbox.SKELETON_LINKS.is_file(), 'container skeleton missing'
"
check infrahaus-domain "import infrahaus_domain.models, infrahaus_domain.migrations"
check infrahaus-api "import infrahaus_api.app"
check infrahaus-worker "import infrahaus_worker.actors"

# The production install: the CLI without extras, exactly as deploy/Dockerfile installs it.
env=$(install infrahaus)
"$env/bin/python" -c "
import importlib.util
for name in ('infrahaus_pvesim', 'aiohttp'):
    assert importlib.util.find_spec(name) is None, f'{name} is in the production install'
import infrahaus.commands.api, infrahaus.commands.worker, infrahaus.commands.migrate
"
"$env/bin/infrahaus" --help >/dev/null
if "$env/bin/infrahaus" pvesim 2>"$env/pvesim.err"; then
  echo "infrahaus pvesim ran without the simulator installed" >&2; exit 1
fi
grep -q "simulator is not installed" "$env/pvesim.err"
printf '==> infrahaus (production install) works without the simulator and does not contain it\n'
