"""Fault injection for one simulated node, switched on and off by tests at any time.

The HTTP side reads `latency`, `blackhole`, the queued HTTP failures, task failures and locks;
the SSH side reads `unreachable`, `blackhole` and `ssh_drop_after`.
"""

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from infrahaus_proxmox.simulator.state import SimNode

# Reason phrases pveproxy/AnyEvent::HTTP use for these statuses when no message is given.
DEFAULT_REASONS = {
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    595: "Errors during connection establishment, proxy handshake: Connection refused",
    596: "Connection timed out",
}


@dataclass
class HttpFailure:
    status: int
    remaining: int
    method: str | None
    path_contains: str | None
    reason: str

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method.upper() != method.upper():
            return False
        return self.path_contains is None or self.path_contains in path


@dataclass
class TaskFailure:
    message: str
    vmid: int | None


class NodeFaults:
    """The faults currently injected into one node."""

    def __init__(self, node: SimNode, *, latency: float = 0.0) -> None:
        self._node = node
        self.latency = latency
        self.blackhole = False
        # Seconds after which the SSH host drops a connection that is running a command (None = never).
        self.ssh_drop_after: float | None = None
        # Guests whose init ignores a clean shutdown request (shutdown waits out its timeout).
        self.ignoring_shutdown: set[int] = set()
        self._unreachable = False
        self._http_failures: list[HttpFailure] = []
        self._task_failures: list[TaskFailure] = []
        self._unlock_timers: dict[int, asyncio.TimerHandle] = {}
        self._reachability_listeners: list[Callable[[bool], None]] = []

    @property
    def unreachable(self) -> bool:
        """True while the node refuses connections on its API and SSH ports."""
        return self._unreachable

    @unreachable.setter
    def unreachable(self, value: bool) -> None:
        if value == self._unreachable:
            return
        self._unreachable = value
        for listener in self._reachability_listeners:
            listener(value)

    def on_reachability_change(self, listener: Callable[[bool], None]) -> None:
        """Register a callback run synchronously with the new `unreachable` value (servers close/reopen)."""
        self._reachability_listeners.append(listener)

    def fail_http(
        self,
        status: int,
        times: int = 1,
        method: str | None = None,
        path_contains: str | None = None,
        reason: str | None = None,
    ) -> None:
        """Answer the next ``times`` matching API requests with ``status`` (500, 503, 595, 596, ...)."""
        phrase = reason if reason is not None else DEFAULT_REASONS.get(status, "Simulated failure")
        self._http_failures.append(HttpFailure(status, times, method, path_contains, phrase))

    def take_http_failure(self, method: str, path: str) -> HttpFailure | None:
        """Consume one injected failure matching this request, if any."""
        for failure in self._http_failures:
            if failure.matches(method, path):
                failure.remaining -= 1
                if failure.remaining <= 0:
                    self._http_failures.remove(failure)
                return failure
        return None

    def fail_next_task(self, message: str, vmid: int | None = None) -> None:
        """Make the next task (for ``vmid``, or any guest) end with ``message`` as its exit status."""
        self._task_failures.append(TaskFailure(message, vmid))

    def take_task_failure(self, vmid: int) -> str | None:
        for failure in self._task_failures:
            if failure.vmid is None or failure.vmid == vmid:
                self._task_failures.remove(failure)
                return failure.message
        return None

    def lock(self, vmid: int, kind: str = "create", seconds: float | None = None) -> None:
        """Put a config lock on a guest (as a stuck backup or create would); released after ``seconds`` if given."""
        self._node.guests[vmid].lock = kind
        self._cancel_timer(vmid)
        if seconds is not None:
            loop = asyncio.get_running_loop()
            self._unlock_timers[vmid] = loop.call_later(seconds, self.unlock, vmid)

    def unlock(self, vmid: int) -> None:
        """Remove a guest's config lock (what `pct unlock` does)."""
        self._cancel_timer(vmid)
        guest = self._node.guests.get(vmid)
        if guest is not None:
            guest.lock = None

    def ignore_shutdown(self, vmid: int, ignore: bool = True) -> None:
        """Make a guest ignore clean shutdowns: ``shutdown`` fails after its timeout unless ``forceStop``."""
        if ignore:
            self.ignoring_shutdown.add(vmid)
        else:
            self.ignoring_shutdown.discard(vmid)

    def drop_ssh_after(self, seconds: float | None) -> None:
        """Drop SSH connections ``seconds`` into a running command (None turns the fault off)."""
        self.ssh_drop_after = seconds

    def clear(self) -> None:
        """Remove every injected fault."""
        self.latency = 0.0
        self.blackhole = False
        self.ssh_drop_after = None
        self.unreachable = False
        self._http_failures.clear()
        self._task_failures.clear()
        self.ignoring_shutdown.clear()
        for vmid in list(self._unlock_timers):
            self._cancel_timer(vmid)

    def _cancel_timer(self, vmid: int) -> None:
        timer = self._unlock_timers.pop(vmid, None)
        if timer is not None:
            timer.cancel()
