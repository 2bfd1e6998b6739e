"""Step `create` (0-20): create the container on Proxmox with a generated root password.

The password is generated here, sent once in the create request and dropped: it is never stored,
logged, queued or put in an exception. A redelivered message whose operation already created the
container (checkpoint) resumes from there instead of creating a second one.
"""

from infrahaus_proxmox import LxcCreate, LxcFeatures, LxcNetwork
from infrahaus_proxmox.errors import ProxmoxNotFound, ProxmoxTaskFailed
from infrahaus_worker.pipeline.env import PipelineEnv, retry_locked
from infrahaus_worker.pipeline.failures import StepError
from infrahaus_worker.pipeline.plan import CreationPlan

STEP = "create"


async def run(env: PipelineEnv) -> None:
    await env.reporter.step(STEP, 0, f"Creating container {env.vmid} on {env.node}")
    checkpoint = await env.reporter.checkpoint()
    if checkpoint.get("created") and await _exists(env):
        await env.reporter.progress(15, "Container already created by this operation; resuming")
        await _clear_stale_create_lock(env)
    elif (upid := checkpoint.get("create_upid")) and await _earlier_task_created(env, str(upid)):
        await env.reporter.save_checkpoint(created=True)
        await env.reporter.progress(15, "The earlier create task finished; resuming")
        await _clear_stale_create_lock(env)
    else:
        await _create(env)
    if env.plan.root_only_features:
        # Proxmox lets only root@pam change feature flags other than nesting; the node's SSH user does it.
        await env.runner.set_features(
            env.vmid, {"nesting": env.plan.nesting, "keyctl": env.plan.keyctl, "fuse": env.plan.fuse}
        )
        await env.reporter.progress(19, "Applied root-only features over SSH")
    await env.reporter.progress(20, "Container created")


async def _create(env: PipelineEnv) -> None:
    ostemplate = await resolve_os_template(env)
    params = create_params(env.plan, ostemplate, password=env.root_password())
    upid = await retry_locked(lambda: env.client.lxc.create(env.node, params), wait=env.limits.lock_wait)
    # Remember the task before waiting: if this worker dies now, the next delivery waits for it.
    await env.reporter.save_checkpoint(create_upid=str(upid))
    await env.reporter.progress(5, "Create task started")
    await env.client.tasks.wait(upid, timeout=env.limits.create_task)
    await env.reporter.save_checkpoint(created=True)
    await env.reporter.progress(15, "Create task finished")


def create_params(plan: CreationPlan, ostemplate: str, *, password: str) -> LxcCreate:
    """The create request for a plan (nesting is the only feature an API token may set)."""
    ip = plan.network.ip_cidr if plan.network.mode == "static" else plan.network.mode
    ip6 = gw6 = None
    if plan.network6 is not None:
        ip6 = plan.network6.ip_cidr if plan.network6.mode == "static" else plan.network6.mode
        gw6 = plan.network6.gateway if plan.network6.mode == "static" else None
    gateway = plan.network.gateway if plan.network.mode == "static" else None
    network = LxcNetwork(name="eth0", bridge=plan.bridge, type="veth", ip=ip, gw=gateway, ip6=ip6, gw6=gw6)
    return LxcCreate(
        vmid=plan.vmid,
        ostemplate=ostemplate,
        rootfs=f"{plan.storage}:{plan.disk_gb}",
        hostname=plan.hostname,
        cores=plan.cores,
        memory=plan.memory_mb,
        swap=plan.swap_mb,
        networks=[network],
        nameserver=plan.nameserver,
        ssh_public_keys=plan.ssh_public_keys,
        unprivileged=plan.unprivileged,
        features=LxcFeatures(nesting=True) if plan.nesting and plan.unprivileged else None,
        onboot=plan.onboot,
        tags=list(plan.tags),
        description=plan.description,
        password=password,
        start=False,
    )


async def resolve_os_template(env: PipelineEnv) -> str:
    """A volid as given, or a short name (``debian-12-standard``) looked up in the node's vztmpl storages."""
    name = env.plan.os_template
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


async def _exists(env: PipelineEnv) -> bool:
    try:
        await env.client.lxc.status(env.node, env.vmid)
    except ProxmoxNotFound:
        return False
    return True


async def _earlier_task_created(env: PipelineEnv, upid: str) -> bool:
    """Wait for the create task an earlier delivery started; True when it left a container behind."""
    try:
        await env.client.tasks.wait(upid, timeout=env.limits.create_task)
    except ProxmoxTaskFailed:
        return await _exists(env)
    except ProxmoxNotFound:
        # The task is unknown to the node (e.g. it was rebooted): trust what exists.
        return await _exists(env)
    return True


async def _clear_stale_create_lock(env: PipelineEnv) -> None:
    """A create task killed half-way leaves ``lock: create``; nothing else will ever clear it."""
    config = await env.client.lxc.config(env.node, env.vmid)
    if config.lock == "create":
        await env.runner.unlock(env.vmid)
        await env.reporter.event("step", "Cleared a stale create lock", {"step": STEP, "vmid": env.vmid})
