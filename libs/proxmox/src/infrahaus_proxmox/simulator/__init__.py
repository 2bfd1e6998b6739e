"""A faithful Proxmox VE simulator: HTTPS API (``/api2/json``) and SSH host (``pct``) per node.

See `Simulator`, `SimulatorConfig` and `SimNodeConfig`; `schema.validate_request` checks requests
against the PVE API schema.
"""

from infrahaus_proxmox.simulator.config import SimNodeConfig, SimToken, SimulatorConfig
from infrahaus_proxmox.simulator.faults import NodeFaults
from infrahaus_proxmox.simulator.http import RecordedRequest
from infrahaus_proxmox.simulator.schema import SchemaViolation, validate_request
from infrahaus_proxmox.simulator.simulator import RunningNode, Simulator

__all__ = [
    "NodeFaults",
    "RecordedRequest",
    "RunningNode",
    "SchemaViolation",
    "SimNodeConfig",
    "SimToken",
    "Simulator",
    "SimulatorConfig",
    "validate_request",
]
