"""Fault injection for one simulated node, switched on and off by tests at any time.

The HTTP side reads `latency`, `blackhole`, the queued HTTP failures, task failures and locks;
the SSH side reads `unreachable`, `blackhole` and `ssh_drop_after`.
"""

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from infrahaus_pvesim.state import SimNode

# Reason phrases when a test gives none. 595-599 are AnyEvent::HTTP's pseudo statuses that pveproxy's
# proxy_request passes through with an empty body (pve-http-server src/PVE/APIServer/AnyEvent.pm): 595 the connect
# failed (nothing was sent), 596 TLS/request/header phase, 597 the body broke off, 599 a garbled answer.
DEFAULT_REASONS = {
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    595: "Connection refused",
    596: "Connection timed out",
    597: "Unexpected end-of-file",
    599: "Invalid server response",
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


@dataclass
class TaskKill:
    vmid: int | None
    type: str | None


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
        self._task_kills: list[TaskKill] = []
        self._unlock_timers: dict[int, asyncio.TimerHandle] = {}
        self._reachability_listeners: list[Callable[[bool], None]] = []
        # Guests whose next `pct push` loses data silently (File::Copy's result is ignored by pct).
        self.corrupting_push: set[int] = set()
        self._lock_holder: Callable[[int, float], None] | None = None

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

    def kill_next_task(self, vmid: int | None = None, type: str | None = None) -> None:
        """Kill the next task (of ``type``, for ``vmid``) mid-way, as a node reboot would: its log gets no last line,
        its exit status is ``unexpected status`` and nothing is cleaned up (a create leaves ``lock: create``)."""
        self._task_kills.append(TaskKill(vmid, type))

    def take_task_kill(self, vmid: int, type: str) -> bool:
        for kill in self._task_kills:
            if (kill.vmid is None or kill.vmid == vmid) and (kill.type is None or kill.type == type):
                self._task_kills.remove(kill)
                return True
        return False

    def on_hold_config_lock(self, holder: Callable[[int, float], None]) -> None:
        self._lock_holder = holder

    def hold_config_lock(self, vmid: int, seconds: float) -> None:
        """Hold guest ``vmid``'s config *file* lock for ``seconds`` (as another task would); whoever needs it
        meanwhile waits up to the lock timeout and then fails ``can't lock file ... - got timeout``."""
        if self._lock_holder is None:
            raise RuntimeError("the node is not started")
        self._lock_holder(vmid, seconds)

    def corrupt_next_push(self, vmid: int) -> None:
        """Make the next `pct push` into ``vmid`` write a short file and still exit 0 without a word."""
        self.corrupting_push.add(vmid)

    def lock(self, vmid: int, kind: str = "create", seconds: float | None = None) -> None:
        """Put a config lock (``lock: <kind>``) on a guest, as a running backup or a stuck create would; released
        after ``seconds`` if given."""
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
        self._task_kills.clear()
        self.corrupting_push.clear()
        self.ignoring_shutdown.clear()
        for vmid in list(self._unlock_timers):
            self._cancel_timer(vmid)

    def _cancel_timer(self, vmid: int) -> None:
        timer = self._unlock_timers.pop(vmid, None)
        if timer is not None:
            timer.cancel()
