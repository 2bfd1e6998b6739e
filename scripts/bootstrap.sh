#!/usr/bin/env bash
# Installs what infrahaus needs on a bare Debian/Ubuntu machine, then the Python workspace from uv.lock.
# Used by `make demo`, `make bootstrap` and .ci/run. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*" >&2; }

# Debian packages: static bash and busybox populate the simulator's sandboxed containers; unshare/newuidmap
# confine them in a user namespace; jq and curl drive the README walk-through; wrk is `make bench`'s load generator.
need=()
[ -x /bin/busybox ] || need+=(busybox-static)
[ -x /bin/bash-static ] || need+=(bash-static)
command -v unshare >/dev/null || need+=(util-linux)
command -v newuidmap >/dev/null || need+=(uidmap)
command -v make >/dev/null || need+=(make)
command -v jq >/dev/null || need+=(jq)
command -v curl >/dev/null || need+=(curl)
command -v wrk >/dev/null || need+=(wrk)
if [ "${INFRAHAUS_BOOTSTRAP_SERVICES_CLIENTS:-0}" = 1 ]; then
  command -v pg_isready >/dev/null || need+=(postgresql-client)
  command -v redis-cli >/dev/null || need+=(redis-tools)
  # The real-client tests (tests/clients): Node for the TypeScript tools and playwright-core, Chromium to drive.
  command -v node >/dev/null || need+=(nodejs)
  command -v npm >/dev/null || need+=(npm)
  command -v chromium >/dev/null || need+=(chromium)
fi
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    log "missing Debian packages: ${need[*]} (run as root, or: sudo apt-get install ${need[*]})"
    exit 1
  fi
  log "apt-get install ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi

# Simulated containers map their root to an unprivileged uid range of the user running the simulator.
me=$(id -un)
if ! grep -q "^${me}:" /etc/subuid 2>/dev/null || ! grep -q "^${me}:" /etc/subgid 2>/dev/null; then
  if [ "$(id -u)" -ne 0 ]; then
    log "no subordinate uid range for ${me}: ask root to add '${me}:100000:1000000' to /etc/subuid and /etc/subgid"
    exit 1
  fi
  grep -q "^${me}:" /etc/subuid 2>/dev/null || echo "${me}:100000:1000000" >> /etc/subuid
  grep -q "^${me}:" /etc/subgid 2>/dev/null || echo "${me}:100000:1000000" >> /etc/subgid
fi

if ! command -v uv >/dev/null; then
  log "installing uv"
  python3 -m pip install --quiet uv
fi
log "uv sync --locked"
uv sync --locked
if [ "${INFRAHAUS_BOOTSTRAP_SERVICES_CLIENTS:-0}" = 1 ]; then
  log "npm ci (tests/clients: pinned TypeScript and browser tools)"
  npm ci --prefix tests/clients --no-audit --no-fund --loglevel=error
fi
