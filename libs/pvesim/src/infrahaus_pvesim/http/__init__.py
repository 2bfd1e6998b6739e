"""The HTTPS API of one simulated node, on ``/api2/json`` with Proxmox semantics.

Answers are ``{"data": ...}``; errors carry the message in the HTTP reason phrase as pveproxy
does (400 "Parameter verification failed." with ``errors`` per field, 401, 403 "Permission
check failed (/vms/100, VM.Allocate)", 500 "CT 100 already exists on node 'pve'", 501 for
methods that do not exist).

One module per resource, named like the client's modules (``infrahaus_proxmox.<name>``): ``access``,
``nodes``, ``storage``, ``cluster``, ``lxc``, ``tasks``. Each holds a `ResourceHandlers` subclass whose
``routes()`` maps (method, PVE path template) to its handlers. ``api.NodeApi`` is the plumbing around
them (schema validation, authentication, faults, latency, the request log); ``common`` is what they share.
A new Proxmox call: its handler in the resource's module, its route in that class's ``routes()``.
"""

from infrahaus_pvesim.http.api import NodeApi, RecordedRequest
from infrahaus_pvesim.http.common import ApiError
from infrahaus_pvesim.http.lxc import guest_addresses

__all__ = ["ApiError", "NodeApi", "RecordedRequest", "guest_addresses"]
