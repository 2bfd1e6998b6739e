"""Ownership: infrahaus changes or destroys only guests it made.

`require_owned` is the one check before every call that changes or destroys a guest — start, stop, shutdown,
reboot, delete, `pct set`, `pct push`, `pct exec` of template steps, a resumed or retried creation, and every
operation added later (snapshots, sync, bulk actions): lifecycle actions get it from `actors.lifecycle._run`, the
creation pipeline before each step after `create`, and new work calls it (or `inspect`) before its first change. It
reads the guest's current config and refuses — `StepError` `ownership_mismatch`, nothing on the node touched —
unless the ownership marker (`infrahaus_domain.containers.marker`) names this container.

Two states carry no readable marker, and neither is ever taken for ours by assumption:

- **An unfinished or interrupted create** (the config holds only `lock: create` until the create task's first full
  write, pve-container `API2/LXC.pm` `create_vm`): ours only when the newest `vzcreate` task for the VMID in the
  node's task list is the very task infrahaus started for this container (`Container.pve_create_upid`, saved as
  soon as Proxmox answered the create call). A `lock: create` that cannot be proven ours is waited out for at most
  `lock_wait` (a create of ours whose task id was not saved yet finishes and shows the marker); if the lock stays,
  the guest is not ours.
- **A guest created before infrahaus wrote markers**: when infrahaus next inspects it, the marker is added
  (`PUT …/config` of tags and description) if and only if the newest `vzcreate` task for the VMID ended OK, was
  started by this node's API token, and started while the record's creating operation ran (± `CLOCK_SKEW`): that
  task is the one infrahaus ran, and no guest was created on the VMID since.
"""

import asyncio
import time
from dataclasses import dataclass
from typing import Literal
from uuid import UUID

from infrahaus_domain.containers.marker import (
    description_with_marker,
    ownership,
    read_marker,
    tags_with_marker,
)
from infrahaus_proxmox import ProxmoxClient
from infrahaus_proxmox.errors import ProxmoxNotFound
from infrahaus_proxmox.models import LxcConfig, TaskEntry
from infrahaus_worker.pipeline.failures import StepError
from infrahaus_worker.pipeline.reporter import Reporter

# Seconds by which the node's clock (task start times) and infrahaus's (operation times) may differ.
CLOCK_SKEW = 120.0
# Create tasks of one VMID looked at (newest first); a VMID is rarely created more often.
_TASKS = 50

Verdict = Literal["ours", "creating", "gone", "not_ours"]


@dataclass(frozen=True, kw_only=True)
class CreationWindow:
    """When the operation that created a record's guest ran (epoch seconds); `finished_at` None while it runs."""

    started_at: float
    finished_at: float | None


@dataclass(frozen=True, kw_only=True)
class GuestRef:
    """The guest a container record stands for, and what proves it is ours when its config cannot say."""

    container_id: UUID
    node: str
    vmid: int
    # The node's API token: Proxmox names it as the author of the tasks infrahaus starts.
    token_id: str
    # The create task infrahaus started for this record (`Container.pve_create_upid`).
    create_upid: str | None = None
    # Records from before markers existed (no create task id saved): when their guest was created.
    legacy_creation: CreationWindow | None = None


@dataclass(frozen=True, kw_only=True)
class Inspection:
    """What the node says about the guest: `ours` (marker), `creating` (only `lock: create`, our create task),
    `gone` (no guest with that VMID) or `not_ours` (`detail` says why)."""

    verdict: Verdict
    detail: str
    # `creating`: the create task infrahaus started (running, or ended and left the lock behind).
    create_task: TaskEntry | None = None


async def inspect(client: ProxmoxClient, ref: GuestRef, reporter: Reporter, *, lock_wait: float) -> Inspection:
    """Read the guest's current config and judge it (see the module docstring). Adds the marker to a guest created
    before markers existed when its creation task proves it ours."""
    deadline = time.monotonic() + lock_wait
    delay = 0.2
    while True:
        try:
            config = await client.lxc.config(ref.node, ref.vmid, current=True)
        except ProxmoxNotFound:
            return Inspection(verdict="gone", detail=f"There is no guest {ref.vmid} on node {ref.node}.")
        marker = read_marker(config.tags, config.description)
        if config.lock != "create" or marker.names_anything:
            return await _judge(client, ref, reporter, config)
        task = await _newest_create_task(client, ref)
        if task is not None and ref.create_upid is not None and task.upid == ref.create_upid:
            return Inspection(verdict="creating", detail="Its create task is still being settled.", create_task=task)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return Inspection(
                verdict="not_ours",
                detail=f"Guest {ref.vmid} is held by a create (lock: create) that infrahaus did not start for this "
                "container.",
            )
        await asyncio.sleep(min(delay, remaining))
        delay = min(delay * 2, 2.0)


async def require_owned(
    client: ProxmoxClient, ref: GuestRef, reporter: Reporter, *, lock_wait: float, step: str | None = None
) -> None:
    """Raise unless the guest exists and is ours: `StepError` `ownership_mismatch` (not ours, or a create still
    holds it) or `not_found` (gone). Call it before any call that changes or destroys the guest."""
    found = await inspect(client, ref, reporter, lock_wait=lock_wait)
    if found.verdict == "ours":
        return
    if found.verdict == "gone":
        raise StepError.of("not_found", found.detail, step=step)
    if found.verdict == "creating":
        raise StepError.of("ownership_mismatch", f"Guest {ref.vmid} is still being created (lock: create).", step=step)
    raise StepError.of("ownership_mismatch", found.detail, step=step)


async def _judge(client: ProxmoxClient, ref: GuestRef, reporter: Reporter, config: LxcConfig) -> Inspection:
    marker = read_marker(config.tags, config.description)
    match ownership(marker, ref.container_id):
        case "ours":
            return Inspection(verdict="ours", detail="The guest carries this container's marker.")
        case "other":
            return Inspection(
                verdict="not_ours",
                detail=f"Guest {ref.vmid}'s infrahaus marker names another container (changed outside infrahaus).",
            )
    if ref.legacy_creation is not None and await _backfill(client, ref, reporter, config):
        return Inspection(verdict="ours", detail="The guest's creation task proved it ours; its marker was added.")
    return Inspection(
        verdict="not_ours", detail=f"Guest {ref.vmid} carries no infrahaus marker (made or changed outside infrahaus)."
    )


async def _backfill(client: ProxmoxClient, ref: GuestRef, reporter: Reporter, config: LxcConfig) -> bool:
    """Add the marker to a guest created before markers existed, when its creation task is the one infrahaus ran."""
    window = ref.legacy_creation
    task = await _newest_create_task(client, ref)
    if window is None or task is None or not task.succeeded or task.authid != ref.token_id:
        return False
    until = window.finished_at if window.finished_at is not None else time.time()
    if not window.started_at - CLOCK_SKEW <= task.starttime <= until + CLOCK_SKEW:
        return False
    values = {
        "tags": ";".join(tags_with_marker(ref.container_id, config.tags)),
        "description": description_with_marker(ref.container_id, config.description),
    }
    # The digest makes Proxmox refuse the write if the config changed since it was judged.
    await client.lxc.update_config(ref.node, ref.vmid, values, digest=config.digest)
    await reporter.guest_created_by(task.upid)
    await reporter.event(
        "marker_added",
        f"Ownership marker added to guest {ref.vmid} (created by infrahaus before markers existed).",
        {"vmid": ref.vmid, "create_task": task.upid},
    )
    return True


async def _newest_create_task(client: ProxmoxClient, ref: GuestRef) -> TaskEntry | None:
    tasks = await client.tasks.list(ref.node, vmid=ref.vmid, typefilter="vzcreate", source="all", limit=_TASKS)
    return max(tasks, key=lambda t: t.starttime, default=None)
