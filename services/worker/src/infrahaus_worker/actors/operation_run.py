"""Running one operation: claim it, report through the domain services, heartbeat, finish it.

Each report opens its own short unit of work and commits, so the API, SSE listeners and the
reconciler see progress at once, and no transaction stays open across a Proxmox call.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from redis.exceptions import RedisError
from sqlalchemy import select

from infrahaus_domain.containers.inventory import node_changed
from infrahaus_domain.containers.schemas import ContainerSpec, ServiceInfo
from infrahaus_domain.containers.service import ContainerService
from infrahaus_domain.models.containers import Container, Operation
from infrahaus_domain.models.nodes import Node
from infrahaus_domain.nodes.connection import NodeEndpoint
from infrahaus_domain.operations.schemas import OperationError
from infrahaus_domain.services import Services
from infrahaus_worker.context import WorkerContext
from infrahaus_worker.discovery import DiscoveryFinding
from infrahaus_worker.ownership import CreationWindow, GuestRef
from infrahaus_worker.pipeline.failures import FailureInfo
from infrahaus_worker.pipeline.reporter import Stream

# Seconds a write waits for Redis to come back (a restart) before it fails.
REDIS_WAIT = 15.0
log = logging.getLogger("infrahaus.worker")


@dataclass(frozen=True, kw_only=True)
class Claimed:
    """What a claimed operation works on, loaded once (plain values: the session is gone)."""

    operation_id: UUID
    kind: str
    params: dict[str, Any]
    result: dict[str, Any]
    attempts: int
    container_id: UUID
    node_id: UUID
    vmid: int
    lifecycle: str
    pve_created: bool
    spec: ContainerSpec | None
    pve_node: str
    endpoint: NodeEndpoint
    # The guest on the node and what proves it ours (`infrahaus_worker.ownership`).
    guest: GuestRef


class OperationBusyError(Exception):
    """Another delivery of the same message is still working on the operation (its heartbeat is fresh)."""


async def claim(ctx: WorkerContext, operation_id: str) -> Claimed | None:
    """Take the operation (None when unknown or already finished) and load its container and node.

    Raises `OperationBusyError` while another worker still heart-beats on it: a message redelivered
    too eagerly must not run the same operation twice at once (the actor retries it later; by then
    the operation is finished, or its worker is gone and this delivery takes over).
    """
    op_id = UUID(operation_id)
    async with ctx.unit() as u:
        # Check and claim in one transaction holding the row lock: two deliveries of the same message
        # (a redelivery, or a reconciler re-send racing the original) cannot both pass.
        current = await u.session.scalar(
            select(Operation).where(Operation.id == op_id).with_for_update().execution_options(populate_existing=True)
        )
        if current is not None and current.held:
            # Waits for a free slot of its batch; the batch sends its job again when it releases it.
            return None
        takeover_after = timedelta(seconds=max(3.0, 3 * ctx.timings.heartbeat_interval))
        if (
            current is not None
            and current.status == "running"
            and current.heartbeat_at is not None
            and datetime.now(UTC) - current.heartbeat_at < takeover_after
        ):
            raise OperationBusyError(f"operation {operation_id} is running elsewhere")
        op: Operation | None = await u.operations.claim(op_id, ctx.worker_id)
        if op is None:
            return None
        container = await u.session.get(Container, op.container_id) if op.container_id else None
        node = await u.session.get(Node, container.node_id) if container else None
        if container is None or node is None:
            await u.operations.fail(
                op_id, OperationError(code="not_found", detail="The container of this operation no longer exists.")
            )
            return None
        spec = ContainerService.spec(container) if op.kind == "create" else None
        endpoint = NodeEndpoint.from_node(node, ctx.box)
        guest = GuestRef(
            container_id=container.id,
            node=node.pve_node,
            vmid=container.vmid,
            token_id=endpoint.token_id,
            create_upid=container.pve_create_upid,
            legacy_creation=await _legacy_creation(u, container),
        )
        return Claimed(
            operation_id=op_id,
            kind=op.kind,
            params=dict(op.params or {}),
            result=dict(op.result or {}),
            attempts=op.attempts,
            container_id=container.id,
            node_id=node.id,
            vmid=container.vmid,
            lifecycle=container.lifecycle,
            pve_created=container.pve_created_by_operation is not None,
            spec=spec,
            pve_node=node.pve_node,
            endpoint=endpoint,
            guest=guest,
        )


async def _legacy_creation(u: Services, container: Container) -> CreationWindow | None:
    """When the guest of a record created before infrahaus saved create task ids was created (its creating
    operation's run), for adding its marker; None for every other record."""
    if container.pve_create_upid is not None or container.pve_created_by_operation is None:
        return None
    creator = await u.session.get(Operation, container.pve_created_by_operation)
    if creator is None or creator.started_at is None:
        return None
    finished = creator.finished_at.timestamp() if creator.finished_at is not None else None
    return CreationWindow(started_at=creator.started_at.timestamp(), finished_at=finished)


class DomainReporter:
    """`infrahaus_worker.pipeline.reporter.Reporter` over the domain services."""

    def __init__(self, ctx: WorkerContext, claimed: Claimed) -> None:
        self.ctx = ctx
        self.claimed = claimed
        self.current_step: str | None = None
        self._log_failed = False
        self._report_failed = False
        self._checkpoint: dict[str, Any] = {"created": claimed.pve_created, **claimed.result.get("checkpoint", {})}

    @property
    def operation_id(self) -> UUID:
        return self.claimed.operation_id

    async def _write(self, write: Callable[[Services], Awaitable[object]]) -> None:
        """One unit of work, tried again while Redis (the live channel every write also publishes to) is briefly
        unavailable, e.g. restarting; raises after `REDIS_WAIT` seconds."""
        deadline = time.monotonic() + REDIS_WAIT
        while True:
            try:
                async with self.ctx.unit() as u:
                    await write(u)
                return
            except (RedisError, OSError):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)

    async def _report(self, write: Callable[[Services], Awaitable[object]]) -> None:
        """Progress or an event: when Redis stays down, the report is skipped with a warning instead of failing
        the work it describes."""
        try:
            await self._write(write)
        except (RedisError, OSError):
            if not self._report_failed:
                log.warning("progress of operation %s not recorded (Redis unavailable); continuing", self.operation_id)
            self._report_failed = True

    async def step(self, step: str, progress: int, message: str) -> None:
        self.current_step = step
        await self._report(
            lambda u: u.operations.progress(self.operation_id, step=step, progress=progress, message=message)
        )

    async def progress(self, progress: int, message: str | None = None) -> None:
        step = self.current_step or self.claimed.kind
        await self._report(
            lambda u: u.operations.progress(self.operation_id, step=step, progress=progress, message=message or step)
        )

    async def line(self, text: str, *, stream: Stream, source: str) -> None:
        kind, _, name = source.partition(":")
        try:
            await self.ctx.logbuffer.append(
                self.claimed.container_id,
                self.operation_id,
                step=self.current_step or kind,
                script=name if kind == "script" else None,
                stream=stream,
                line=text,
            )
        except (RedisError, OSError):
            # A lost live-log line is better than a failed creation; the step itself is still recorded.
            if not self._log_failed:
                log.warning("live log of operation %s unavailable; continuing without it", self.operation_id)
            self._log_failed = True

    async def event(self, type: str, message: str, meta: dict[str, Any] | None = None) -> None:
        await self._report(lambda u: u.events.record(self.claimed.container_id, type, message, meta, self.operation_id))

    async def checkpoint(self) -> dict[str, Any]:
        return dict(self._checkpoint)

    async def save_checkpoint(self, **values: Any) -> None:
        self._checkpoint.update(values)
        async with self.ctx.unit() as u:
            if values.get("created"):
                await u.containers.set_runtime(self.claimed.container_id, pve_created_by_operation=self.operation_id)
            if isinstance(upid := values.get("create_upid"), str):
                await u.containers.set_runtime(self.claimed.container_id, pve_create_upid=upid)
            op = await u.session.get(Operation, self.operation_id)
            if op is not None and op.status == "running" and op.attempts == self.claimed.attempts:
                # The running operation's result holds resume markers until `succeed` replaces it.
                op.result = {"checkpoint": {k: v for k, v in self._checkpoint.items() if k != "created"}}

    async def guest_created_by(self, upid: str) -> None:
        async with self.ctx.unit() as u:
            await u.containers.set_runtime(self.claimed.container_id, pve_create_upid=upid)

    async def set_ip(self, ip_address: str | None) -> None:
        if ip_address:
            async with self.ctx.unit() as u:
                await u.containers.set_runtime(self.claimed.container_id, ip_address=ip_address)

    async def services(self, services: Sequence[DiscoveryFinding]) -> None:
        infos = [
            ServiceInfo(
                name=s.name,
                type=s.type,
                port=s.port,
                protocol="tcp" if s.port is not None else None,
                status=s.status,
                is_system=s.is_system,
            )
            for s in services
        ]
        credentials = {s.name: dict(s.credentials) for s in services if s.credentials}
        await self._write(
            lambda u: u.containers.replace_services(
                self.claimed.container_id, infos, credentials, operation_id=self.operation_id
            )
        )


class ClaimLost(Exception):  # noqa: N818 - reads as the condition
    """Another worker claimed the operation (this one was thought lost and the operation was resumed elsewhere):
    this worker stops at once and writes nothing more about it."""


@contextlib.asynccontextmanager
async def heartbeat(ctx: WorkerContext, claimed: Claimed) -> AsyncIterator[None]:
    """Refresh the operation's heartbeat in the background while the block runs.

    When a beat finds the operation claimed by another worker, the block is cancelled and `ClaimLost` raised: two
    workers never keep working on one operation.
    """
    block = asyncio.current_task()
    lost = False

    async def beat() -> None:
        nonlocal lost
        while True:
            await asyncio.sleep(ctx.timings.heartbeat_interval)
            try:
                async with ctx.unit() as u:
                    mine = await u.operations.heartbeat(claimed.operation_id, claimed.attempts)
            except Exception:  # a missed beat is not fatal; the next one may work
                log.warning("heartbeat of operation %s failed", claimed.operation_id, exc_info=True)
                continue
            if not mine:
                lost = True
                if block is not None:
                    block.cancel()
                return

    task = asyncio.create_task(beat())
    try:
        yield
    except asyncio.CancelledError:
        if lost and block is not None and block.uncancel() == 0:
            log.warning("operation %s was resumed by another worker; this one stops", claimed.operation_id)
            raise ClaimLost(str(claimed.operation_id)) from None
        raise
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def to_operation_error(info: FailureInfo) -> OperationError:
    """The domain's error shape; script output lines travel as the task log tail."""
    return OperationError(
        code=info.code,
        detail=info.detail,
        remedy=info.remedy,
        task_log_tail=info.task_log_tail or info.last_lines,
        exit_code=info.exit_code,
        field=info.field,
    )


async def fail(
    ctx: WorkerContext, claimed: Claimed, info: FailureInfo, *, result: dict[str, Any] | None = None
) -> None:
    # Only the code and step: details and output lines go to the operation, never into process logs.
    # No operation_id in `extra`: the log context already stamps it on the record, and logging refuses to
    # overwrite a record attribute (KeyError), which used to abort every failure report inside an actor.
    log.warning("operation %s failed: %s", claimed.operation_id, info.code, extra={"step": info.step})
    async with ctx.unit() as u:
        await u.operations.fail(claimed.operation_id, to_operation_error(info), attempt=claimed.attempts, result=result)
    # A failed operation may have changed the guest half-way.
    await guest_changed(ctx, claimed)


async def succeed(ctx: WorkerContext, claimed: Claimed, result: dict[str, Any]) -> None:
    async with ctx.unit() as u:
        await u.operations.succeed(claimed.operation_id, result, attempt=claimed.attempts)
    await guest_changed(ctx, claimed)


async def guest_changed(ctx: WorkerContext, claimed: Claimed) -> None:
    """After the operation's end is committed: every process drops what it cached about the guest's node, so the
    next read asks the node (the stored status already answers for reads in between)."""
    await node_changed(ctx.ports.cache, ctx.ports.invalidation, claimed.node_id)
