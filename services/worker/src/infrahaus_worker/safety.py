"""Safety points: what a sync (or a creation's `snapshot_before_scripts`) takes before it changes a container, and
restores when a step fails — a Proxmox snapshot, or file backups where the storage cannot snapshot.

- **snapshot**: when Proxmox says the container's volumes can snapshot (``GET …/feature?feature=snapshot``,
  pve-container ``API2/LXC.pm`` ``vm_feature``), ``POST …/snapshot`` named ``ih-<what>-<operation>``; restoring is
  ``…/rollback`` with ``start=1`` when the container ran (Proxmox stops it hard), and the snapshot is deleted when the
  operation ends unless ``INFRAHAUS_KEEP_AUTOMATIC_SNAPSHOTS``. The automatic snapshot is the newest one, so ZFS,
  which rolls back only to the newest, allows it.
- **files**: on directory, NFS, CIFS or thick-LVM storages (Proxmox refuses there with ``snapshot feature is not
  available``), what the operation is about to change is backed up, as the original config manager did: every
  template file it may write is copied (owner, mode and time kept) into ``/var/lib/infrahaus/backups/<operation>``
  inside the container, or noted as absent, in one `pct exec`; the Proxmox config values it may change are kept. On
  failure the files are copied back, files that did not exist are removed and the config values are set again.
  Packages installed meanwhile and whatever scripts changed beyond the template's files are not undone; the result
  says what was restored.

Every call that changes the guest goes through the ownership guard first (`PipelineEnv.require_owned`).
"""

import dataclasses
from typing import Any, Literal

from infrahaus_domain.containers.schemas import SpecFile
from infrahaus_proxmox.errors import ProxmoxError
from infrahaus_worker.pipeline.env import PipelineEnv, run_task
from infrahaus_worker.pipeline.failures import StepError
from infrahaus_worker.pipeline.files import checked_path

BACKUP_ROOT = "/var/lib/infrahaus/backups"
# The config values a sync's config step may change (restored from the backup on failure).
CONFIG_KEYS = ("cores", "memory", "swap", "features", "net0")

# Each path argument: copy it under the backup directory ($1) keeping its attributes, or say it was absent.
_BACKUP = r"""
dir=$1; shift
rm -rf -- "$dir" && mkdir -p -m 700 -- "$dir" || exit 2
for f; do
  if [ -e "$f" ] || [ -L "$f" ]; then
    mkdir -p -- "$dir$(dirname -- "$f")" && cp -a -- "$f" "$dir$f" || exit 3
    printf 'present\t%s\n' "$f"
  else
    printf 'absent\t%s\n' "$f"
  fi
done
"""
# Put back what `_BACKUP` saved: present files copied back, absent ones removed.
_RESTORE = r"""
dir=$1; shift
while [ "$#" -ge 2 ]; do
  state=$1; f=$2; shift 2
  if [ "$state" = present ]; then
    mkdir -p -- "$(dirname -- "$f")" && rm -rf -- "$f" && cp -a -- "$dir$f" "$f" || exit 3
  else
    rm -f -- "$f"
  fi
done
"""

Method = Literal["snapshot", "files"]


@dataclasses.dataclass(kw_only=True)
class SafetyPoint:
    method: Method
    # The snapshot's name (method `snapshot`) or the backup directory inside the container (method `files`).
    name: str
    was_running: bool
    # Method `files`: each backed-up path and whether it existed; the config values before the change.
    files: dict[str, bool] = dataclasses.field(default_factory=dict)
    config: dict[str, str] = dataclasses.field(default_factory=dict)

    def describe(self, **extra: Any) -> dict[str, Any]:
        """The `snapshot` part of an operation's result."""
        info: dict[str, Any] = {"method": self.method}
        if self.method == "snapshot":
            info["name"] = self.name
        else:
            info["files"] = sorted(self.files)
            info["backup_dir"] = self.name
        return {**info, **extra}


class RolledBack(Exception):  # noqa: N818 - names what happened to the operation
    """A step failed (`cause`) and the container was restored, or restoring was attempted: `result` is the
    operation's result (`rolled_back`, `snapshot`, and `rollback_error` when restoring failed too)."""

    def __init__(self, cause: BaseException, result: dict[str, Any]) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.result = result


def short_id(operation_id: str) -> str:
    return operation_id.replace("-", "")[-12:]


async def take(env: PipelineEnv, *, what: str, files: list[SpecFile], step: str) -> SafetyPoint:
    """Snapshot the container, or back up `files` and the config where its storage cannot snapshot."""
    await env.require_owned(step)
    name = f"ih-{what}-{short_id(env.operation_id)}"
    was_running = (await env.client.lxc.status(env.node, env.vmid)).status == "running"
    if await env.client.snapshots.has_feature(env.node, env.vmid):
        existing = {s.name for s in await env.client.snapshots.list(env.node, env.vmid)}
        if name not in existing:
            # (A resumed operation finds the snapshot its earlier attempt took.)
            await run_task(
                env.client,
                lambda: env.client.snapshots.create(
                    env.node, env.vmid, name, description=f"infrahaus: before {what} (operation {env.operation_id})"
                ),
                timeout=env.timings.snapshot,
                lock_wait=env.timings.lock_wait,
            )
        await env.reporter.event(
            "step", f"Snapshot {name} taken", {"step": step, "snapshot": name, "method": "snapshot"}
        )
        return SafetyPoint(method="snapshot", name=name, was_running=was_running)
    directory = f"{BACKUP_ROOT}/{short_id(env.operation_id)}"
    paths = [checked_path(file)[1] for file in files]
    result = await env.runner.exec(
        env.vmid, ["bash", "-c", _BACKUP, "infrahaus-backup", directory, *paths], timeout=120
    )
    if result.exit_code != 0:
        detail = (result.stderr or result.stdout or [""])[-1]
        raise StepError.of("file_failed", f"Backing up the files to change failed: {detail}", step=step)
    states: dict[str, bool] = {}
    for line in result.stdout:
        state, _, path = line.partition("\t")
        states[path] = state == "present"
    config = await env.client.lxc.config(env.node, env.vmid)
    point = SafetyPoint(
        method="files",
        name=directory,
        was_running=was_running,
        files=states,
        config={k: v for k in CONFIG_KEYS if (v := config.get(k)) is not None},
    )
    await env.reporter.event(
        "step",
        f"The storage cannot snapshot: backed up {len(states)} file(s) and the config instead",
        {"step": step, "method": "files", "files": sorted(states), "backup_dir": directory},
    )
    return point


async def restore(env: PipelineEnv, point: SafetyPoint, cause: BaseException, *, keep: bool, step: str) -> RolledBack:
    """Put the container back to `point` after `cause`; returns the `RolledBack` to raise (never raises itself)."""
    await env.reporter.line(f"Restoring the container ({point.method}) after: {cause}", stream="stderr", source=step)
    try:
        await env.require_owned(step)
        if point.method == "snapshot":
            await run_task(
                env.client,
                lambda: env.client.snapshots.rollback(env.node, env.vmid, point.name, start=point.was_running),
                timeout=env.timings.snapshot,
                lock_wait=env.timings.lock_wait,
            )
            restored = ["volumes", "config"]
        else:
            await _restore_files(env, point)
            restored = ["files", "config"]
    except (ProxmoxError, StepError, OSError) as exc:
        await env.reporter.event(
            "step",
            f"Rolling back failed: {exc}",
            {"step": step, "method": point.method, "snapshot": point.name},
        )
        return RolledBack(
            cause, {"rolled_back": False, "snapshot": point.describe(kept=True), "rollback_error": str(exc)}
        )
    kept = await _release(env, point, keep=keep)
    await env.reporter.event(
        "rolled_back",
        f"Rolled back ({'snapshot ' + point.name if point.method == 'snapshot' else 'file backups'}) after a failed "
        f"step",
        {"step": step, "method": point.method, "snapshot": point.name, "restored": restored},
    )
    return RolledBack(cause, {"rolled_back": True, "restored": restored, "snapshot": point.describe(kept=kept)})


async def release(env: PipelineEnv, point: SafetyPoint, *, keep: bool, step: str) -> dict[str, Any]:
    """The operation succeeded: delete the snapshot (unless `keep`) or the backups; the result's `snapshot` part."""
    await env.require_owned(step)
    kept = await _release(env, point, keep=keep)
    return point.describe(kept=kept)


async def _release(env: PipelineEnv, point: SafetyPoint, *, keep: bool) -> bool:
    """True when the snapshot or the backups are kept."""
    if keep:
        return True
    try:
        if point.method == "snapshot":
            await run_task(
                env.client,
                lambda: env.client.snapshots.delete(env.node, env.vmid, point.name),
                timeout=env.timings.snapshot,
                lock_wait=env.timings.lock_wait,
            )
        else:
            await env.runner.exec(env.vmid, ["rm", "-rf", "--", point.name], timeout=60)
    except ProxmoxError as exc:
        await env.reporter.event(
            "step", f"Could not remove {point.name}: {exc}", {"step": "snapshot", "snapshot": point.name}
        )
        return True
    return False


async def _restore_files(env: PipelineEnv, point: SafetyPoint) -> None:
    pairs: list[str] = []
    for path, present in point.files.items():
        pairs += ["present" if present else "absent", path]
    if pairs:
        result = await env.runner.exec(
            env.vmid, ["bash", "-c", _RESTORE, "infrahaus-restore", point.name, *pairs], timeout=120
        )
        if result.exit_code != 0:
            detail = (result.stderr or result.stdout or [""])[-1]
            raise StepError.of("file_failed", f"Restoring the backed-up files failed: {detail}")
    current = await env.client.lxc.config(env.node, env.vmid)
    changed = {k: v for k, v in point.config.items() if current.get(k) != v}
    features = changed.pop("features", None)
    if changed:
        await env.client.lxc.update_config(env.node, env.vmid, changed)
    if features is not None:
        # Feature flags other than nesting are root@pam's only: set over SSH, as the creation does.
        flags = dict(item.split("=", 1) for item in features.split(",") if "=" in item)
        await env.runner.set_features(env.vmid, {k: v == "1" for k, v in flags.items()})
