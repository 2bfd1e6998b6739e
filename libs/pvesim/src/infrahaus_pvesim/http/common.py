"""What every resource module of the HTTP layer shares: the error answer, the request context, the `Resource`
base its handler classes extend, and size units."""

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from infrahaus_pvesim.access import AccessControl, Principal
from infrahaus_pvesim.config import SimulatorConfig
from infrahaus_pvesim.faults import NodeFaults
from infrahaus_pvesim.state import SimNode
from infrahaus_pvesim.tasks import TaskRunner

GIB = 1024**3
MIB = 1024**2


class ApiError(Exception):
    """An error answer: ``status`` with ``message`` as reason phrase (and per-field ``errors`` for 400)."""

    def __init__(self, status: int, message: str, errors: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = dict(errors) if errors else None


def param_error(errors: Mapping[str, str]) -> ApiError:
    return ApiError(400, "Parameter verification failed.", errors)


@dataclass
class Ctx:
    """One request as a handler sees it: the last value of each parameter, the path's parameters, the caller."""

    params: dict[str, str]
    path: dict[str, str]
    principal: Principal | None

    @property
    def who(self) -> Principal:
        if self.principal is None:
            raise ApiError(401, "No ticket")
        return self.principal

    def flag(self, name: str, default: bool = False) -> bool:
        value = self.params.get(name)
        return default if value is None else value == "1"

    def integer(self, name: str, default: int | None = None) -> int | None:
        value = self.params.get(name)
        return default if value is None else int(value)

    @property
    def vmid(self) -> int:
        return int(self.path["vmid"])


@dataclass
class WithTotal:
    """A list answer that also carries PVE's top-level ``total`` (task logs)."""

    data: list[dict[str, Any]]
    total: int


Handler = Callable[[Ctx], Awaitable[Any]]
# (method, path template as in the PVE schema) -> handler
Routes = dict[tuple[str, str], Handler]


@dataclass
class ResourceHandlers:
    """The handlers of one API resource for one node, and what they may reach: the node's state and faults,
    access control, the task runner and the simulator's configuration."""

    node: SimNode
    faults: NodeFaults
    access: AccessControl
    tasks: TaskRunner
    config: SimulatorConfig
    fingerprint: str

    def routes(self) -> Routes:
        """The (method, path template) pairs this resource answers."""
        raise NotImplementedError


def size_bytes(size: str) -> int:
    """``8G`` / ``512M`` / ``1T`` / plain bytes -> bytes."""
    units = {"K": 1024, "M": MIB, "G": GIB, "T": 1024**4}
    if size and size[-1].upper() in units:
        return int(float(size[:-1]) * units[size[-1].upper()])
    return int(float(size))
