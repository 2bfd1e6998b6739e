"""Step `create` (0-20): create the container on Proxmox with a generated root password.

The password is generated here, sent once in the create request and dropped: it is never stored,
logged, queued or put in an exception. A redelivered message whose operation already created the
container (checkpoint) resumes from there instead of creating a second one.

The create request carries the ownership marker (`infrahaus_domain.containers.marker`); nothing is changed on the
guest afterwards (`pct set`, a stale lock cleared, every later step) unless it carries it
(`infrahaus_worker.ownership`).

A create task that died half-way (node reboot, pvedaemon killed: its exit status is ``unexpected status``) leaves a
config holding only ``lock: create``, and maybe a disk (pve-container ``src/PVE/API2/LXC.pm`` ``create_vm``: the
first full config write comes after the template is extracted). That is never taken for a created container. When
the task is this operation's own — its UPID saved as soon as Proxmox answered the create call — the leftover is
unlocked (``pct unlock``), destroyed with its unreferenced disks, and the container created again. Nothing else
proves a leftover ours (it carries no marker yet): a VMID that answers "already exists" is this container's only
when its guest carries this container's marker (a worker died between the create call and saving the task's id,
and the task finished); anything else — anyone's half-created leftover too, even one made with infrahaus's own
token — is never touched, and the creation fails ``vmid_taken``.
"""

from uuid import UUID

from infrahaus_domain.containers.marker import description_with_marker, tags_with_marker
from infrahaus_domain.containers.schemas import ContainerSpec
from infrahaus_proxmox import LxcCreate, LxcFeatures, LxcNetwork, Upid, parse_upid
from infrahaus_proxmox.errors import ProxmoxConflict, ProxmoxNotFound, ProxmoxTaskFailed
from infrahaus_worker import ownership
from infrahaus_worker.pipeline.env import PipelineEnv, retry_locked, run_task
from infrahaus_worker.pipeline.failures import StepError

STEP = "create"
# Create attempts of one operation when the earlier ones' tasks were killed.
MAX_ATTEMPTS = 3


async def run(env: PipelineEnv) -> None:
    await env.reporter.step(STEP, 0, f"Creating container {env.vmid} on {env.node}")
    checkpoint = await env.reporter.checkpoint()
    resumed = False
    if checkpoint.get("created") and await _exists(env):
        # This operation's create task ended OK: the container is complete, whatever lock it shows now.
        await env.reporter.progress(15, "Container already created by this operation; resuming")
        resumed = True
    elif (upid := checkpoint.get("create_upid")) and await _settle(env, parse_upid(str(upid))):
        await env.reporter.progress(15, "The earlier create task finished; resuming")
        resumed = True
    if not resumed:
        await _create(env)
    # From here on the guest is changed: only if it carries this container's marker (written by the create call).
    await env.require_owned(STEP)
    if resumed:
        await _clear_stale_create_lock(env)
    if env.creation.root_only_features:
        # Proxmox lets only root@pam change feature flags other than nesting; the node's SSH user does it, before
        # the first start (changed on a running container they would wait for the next start).
        features = {"nesting": env.creation.nesting, "keyctl": env.creation.keyctl, "fuse": env.creation.fuse}
        await retry_locked(lambda: env.runner.set_features(env.vmid, features), wait=env.timings.lock_wait)
        await env.reporter.progress(19, "Applied root-only features over SSH")
        await _report_pending(env)
    await env.reporter.progress(20, "Container created")


async def _create(env: PipelineEnv) -> None:
    ostemplate = await resolve_os_template(env)
    if env.guest is None:
        raise RuntimeError("the create step ran without the guest's ownership reference")
    try:
        params = create_params(
            env.creation, ostemplate, password=env.root_password(), container_id=env.guest.container_id
        )
    except ValueError as exc:
        # A stored value that would break out of a property string (net0, rootfs, features) is never sent.
        raise StepError.of("validation_failed", str(exc), step=STEP) from None
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            upid = await retry_locked(lambda: env.client.lxc.create(env.node, params), wait=env.timings.lock_wait)
        except ProxmoxConflict:
            # The VMID exists: ours only if the guest carries this container's marker (an earlier attempt of this
            # operation created it and died before saving the task's id); anything else is somebody else's guest,
            # and the creation fails `vmid_taken` without touching it.
            if await _created_by_an_earlier_attempt(env):
                return
            raise
        # Remember the task before waiting: if this worker dies now, the next delivery waits for it.
        await env.remember_create_task(str(upid))
        await env.reporter.progress(
            5, "Create task started" if attempt == 1 else f"Create task started (attempt {attempt})"
        )
        if await _settle(env, upid):
            await env.reporter.progress(15, "Create task finished")
            return
    raise StepError.of(
        "task_failed", f"The create task for {env.vmid} was killed {MAX_ATTEMPTS} times; giving up", step=STEP
    )


async def _settle(env: PipelineEnv, upid: Upid) -> bool:
    """Wait for a create task this operation started: True when it left a complete container. A killed task's
    leftovers are cleaned up (False: create again); any other task failure is raised."""
    try:
        await env.client.tasks.wait(upid, timeout=env.timings.create_task)
    except ProxmoxTaskFailed as exc:
        if not exc.killed:
            raise
        await _discard_leftover(env, f"the create task {upid} was killed ({exc.exitstatus})")
        return False
    except ProxmoxNotFound:
        # The node does not know the task (its log is gone, or another node answered): judge by what exists.
        if await _complete(env):
            await env.reporter.save_checkpoint(created=True)
            return True
        await _discard_leftover(env, f"the create task {upid} is unknown to the node")
        return False
    await env.reporter.save_checkpoint(created=True)
    return True


async def _created_by_an_earlier_attempt(env: PipelineEnv) -> bool:
    """Whether the existing guest is this container's (its marker says so, once its create task wrote the config);
    then its create task is awaited and the creation goes on with it."""
    if env.guest is None:
        return False
    found = await ownership.inspect(env.client, env.guest, env.reporter, lock_wait=env.timings.lock_wait)
    if found.verdict != "ours":
        return False
    tasks = await env.client.tasks.list(env.node, vmid=env.vmid, typefilter="vzcreate", source="all", limit=1)
    if tasks and tasks[0].running:
        await env.remember_create_task(tasks[0].upid)
        await env.client.tasks.wait(tasks[0].upid, timeout=env.timings.create_task)
    await env.reporter.save_checkpoint(created=True)
    await env.reporter.progress(15, "An earlier attempt of this operation created the container; resuming")
    return True


async def _complete(env: PipelineEnv) -> bool:
    """Whether a container with this VMID exists past its create task's first full config write."""
    try:
        config = await env.client.lxc.config(env.node, env.vmid)
    except ProxmoxNotFound:
        return False
    return config.lock != "create"


async def _exists(env: PipelineEnv) -> bool:
    try:
        await env.client.lxc.config(env.node, env.vmid)
    except ProxmoxNotFound:
        return False
    return True


async def _clear_stale_create_lock(env: PipelineEnv) -> None:
    """A `lock: create` on a container whose create task ended OK is stale (that task's first full write dropped
    it; no create runs any more): nothing but `pct unlock` would ever clear it."""
    config = await env.client.lxc.config(env.node, env.vmid)
    if config.lock == "create":
        await env.runner.unlock(env.vmid)
        await env.reporter.event("step", "Cleared a stale create lock", {"step": STEP, "vmid": env.vmid})


async def _discard_leftover(env: PipelineEnv, why: str) -> None:
    """Remove what a killed create task of this operation left (a config with `lock: create`, maybe a disk)."""
    try:
        config = await env.client.lxc.config(env.node, env.vmid)
    except ProxmoxNotFound:
        return
    if config.lock is not None:
        # Proxmox refuses to destroy a locked container, and only `pct unlock` removes a create lock.
        await env.runner.unlock(env.vmid)
    await run_task(
        env.client,
        lambda: env.client.lxc.delete(env.node, env.vmid, purge=True, destroy_unreferenced_disks=True),
        timeout=env.timings.start_stop,
        lock_wait=env.timings.lock_wait,
    )
    await env.reporter.event(
        "step", f"Removed a half-created container: {why}", {"step": STEP, "vmid": env.vmid, "lock": config.lock}
    )


async def _report_pending(env: PipelineEnv) -> None:
    """Config changes Proxmox keeps pending (the container was already running, e.g. a resumed operation) only
    apply at its next start: say so."""
    pending = [entry.key for entry in await env.client.lxc.pending(env.node, env.vmid) if entry.waiting]
    if pending:
        await env.reporter.event(
            "step",
            f"Changes to {', '.join(pending)} wait for the container's next start",
            {"step": STEP, "pending": pending},
        )


def create_params(spec: ContainerSpec, ostemplate: str, *, password: str, container_id: UUID) -> LxcCreate:
    """The create request for a spec (nesting is the only feature an API token may set), carrying the ownership
    marker of `container_id` in its tags and description (`infrahaus_domain.containers.marker`)."""
    ip = spec.network.ip_cidr if spec.network.mode == "static" else spec.network.mode
    ip6 = gw6 = None
    if spec.ipv6 is not None:
        ip6 = spec.ipv6.ip_cidr if spec.ipv6.mode == "static" else spec.ipv6.mode
        gw6 = spec.ipv6.gateway if spec.ipv6.mode == "static" else None
    gateway = spec.network.gateway if spec.network.mode == "static" else None
    network = LxcNetwork(name="eth0", bridge=spec.bridge, type="veth", ip=ip, gw=gateway, ip6=ip6, gw6=gw6)
    return LxcCreate(
        vmid=spec.vmid,
        ostemplate=ostemplate,
        rootfs=f"{spec.storage}:{spec.disk_gb}",
        hostname=spec.hostname,
        cores=spec.cores,
        memory=spec.memory_mb,
        swap=spec.swap_mb,
        networks=[network],
        nameserver=spec.nameserver,
        ssh_public_keys=spec.ssh_public_keys,
        unprivileged=spec.unprivileged,
        features=LxcFeatures(nesting=True) if spec.nesting and spec.unprivileged else None,
        onboot=spec.onboot,
        tags=tags_with_marker(container_id, spec.tags),
        description=description_with_marker(container_id, spec.description),
        password=password,
        start=False,
    )


async def resolve_os_template(env: PipelineEnv) -> str:
    """A volid as given, or a short name (``debian-12-standard``) looked up in the node's vztmpl storages."""
    name = env.creation.os_template
    if ":" in name:
        return name
    candidates: list[str] = []
    for storage in await env.client.storage.list(env.node, content="vztmpl"):
        for volume in await env.client.storage.content(env.node, storage.storage, content="vztmpl"):
            if volume.volid.rsplit("/", 1)[-1].startswith(name):
                candidates.append(volume.volid)
    if not candidates:
        raise StepError.of("template_missing", f"No OS template matching {name!r} on node {env.node}", step=STEP)
    # The newest version sorts last ("debian-12-standard_12.7-1" > "debian-12-standard_12.2-1").
    return sorted(candidates)[-1]
