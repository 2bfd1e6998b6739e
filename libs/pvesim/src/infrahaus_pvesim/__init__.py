"""A faithful Proxmox VE simulator: HTTPS API (``/api2/json``) and SSH host (``pct``) per node.

See `Simulator`, `SimulatorConfig` and `SimNodeConfig`; `schema.validate_request` checks requests
against the PVE API schema (vendored ``pve-openapi.json.gz``, Apache-2.0, see ``pve-openapi.LICENSE``).

Demo defaults (what the README's walk-through and ``infrahaus pvesim`` use): node ``pve``; user ``root@pam`` with
password ``demo``; API token ``root@pam!infrahaus`` with secret ``demo-token-secret`` (no privilege
separation); storages ``local`` (vztmpl, iso, backup; holds
``local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst`` and an Ubuntu 24.04 template) and
``local-lvm`` (rootdir, images); bridge ``vmbr0`` (192.168.100.0/24); SSH user ``root``/``demo``.
Each node's TLS certificate is signed by a simulator CA (``<data_dir>/pve-root-ca.pem``) and kept in
``<data_dir>/<node>/`` so its fingerprint survives restarts.

Faults per node (``sim.node("pve").faults``): ``latency``, ``unreachable``, ``blackhole``,
``fail_http(status, times, method, path_contains, reason)``, ``fail_next_task(message, vmid)``,
``lock(vmid, kind, seconds)`` / ``unlock(vmid)``, ``ignore_shutdown(vmid)``, ``drop_ssh_after(seconds)``,
``clear()``. ``sim.node("pve").requests`` records every API request (passwords masked).
"""

from infrahaus_pvesim.config import SimAcl, SimNodeConfig, SimToken, SimulatorConfig
from infrahaus_pvesim.faults import NodeFaults
from infrahaus_pvesim.http import RecordedRequest
from infrahaus_pvesim.schema import SchemaViolation, validate_request
from infrahaus_pvesim.simulator import RunningNode, Simulator

__all__ = [
    "NodeFaults",
    "RecordedRequest",
    "RunningNode",
    "SchemaViolation",
    "SimAcl",
    "SimNodeConfig",
    "SimToken",
    "Simulator",
    "SimulatorConfig",
    "validate_request",
]
