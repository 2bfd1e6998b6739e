"""The `container.create` actor: run the creation pipeline for one operation."""

import logging

from infrahaus_domain.containers.errors import OperationCancelledError
from infrahaus_domain.containers.schemas import ContainerSpec
from infrahaus_domain.nodes.connection import pct_runner, proxmox_client
from infrahaus_worker.actors.runs import Claimed, DomainReporter, claim, fail, heartbeat, succeed
from infrahaus_worker.context import WorkerContext
from infrahaus_worker.pipeline.env import PipelineEnv
from infrahaus_worker.pipeline.failures import classify
from infrahaus_worker.pipeline.plan import CreationPlan, FilePlan, NetworkPlan, PackagePlan, ScriptPlan
from infrahaus_worker.pipeline.run import run_creation

log = logging.getLogger("infrahaus.worker")


def plan_from_spec(spec: ContainerSpec, pve_node: str) -> CreationPlan:
    """The pipeline's plan from the stored creation spec (already resolved and validated by the API)."""
    return CreationPlan(
        pve_node=pve_node,
        vmid=spec.vmid,
        hostname=spec.hostname,
        os_template=spec.os_template,
        cores=spec.cores,
        memory_mb=spec.memory_mb,
        swap_mb=spec.swap_mb,
        disk_gb=spec.disk_gb,
        storage=spec.storage,
        bridge=spec.bridge,
        network=NetworkPlan(mode=spec.network.mode, ip_cidr=spec.network.ip_cidr, gateway=spec.network.gateway),
        network6=None
        if spec.ipv6 is None
        else NetworkPlan(mode=spec.ipv6.mode, ip_cidr=spec.ipv6.ip_cidr, gateway=spec.ipv6.gateway),
        nameserver=spec.nameserver,
        ssh_public_keys=spec.ssh_public_keys,
        unprivileged=spec.unprivileged,
        nesting=spec.nesting,
        keyctl=spec.keyctl,
        fuse=spec.fuse,
        tags=tuple(spec.tags),
        onboot=spec.onboot,
        description=spec.description,
        start_after_create=spec.start_after_create,
        files=tuple(
            FilePlan(name=f.name, target_path=f.target_path, policy=f.policy, mode=int(f.mode, 8), content=f.content)
            for f in spec.files
        ),
        packages=tuple(PackagePlan(name=p.name, manager=p.manager, version=p.version) for p in spec.packages),
        scripts=tuple(ScriptPlan(name=s.name, content=s.content) for s in spec.scripts),
    )


async def create_container(ctx: WorkerContext, operation_id: str) -> None:
    """Create and provision the operation's container; a finished or unknown operation is left alone."""
    claimed = await claim(ctx, operation_id)
    if claimed is None or claimed.spec is None:
        return
    await _run(ctx, claimed, claimed.spec)


async def _run(ctx: WorkerContext, claimed: Claimed, spec: ContainerSpec) -> None:
    reporter = DomainReporter(ctx, claimed)
    try:
        plan = plan_from_spec(spec, claimed.pve_node)
        async with (
            heartbeat(ctx, claimed.operation_id),
            proxmox_client(claimed.endpoint) as client,
        ):
            runner = pct_runner(claimed.endpoint)
            try:
                env = PipelineEnv(
                    operation_id=str(claimed.operation_id),
                    plan=plan,
                    client=client,
                    runner=runner,
                    reporter=reporter,
                    limits=ctx.limits,
                    root_password=ctx.root_password,
                )
                result = await run_creation(env)
            finally:
                await runner.aclose()
    except OperationCancelledError:
        log.info("operation %s was cancelled", claimed.operation_id)
        return
    except Exception as exc:
        await fail(ctx, claimed.operation_id, classify(exc, step=reporter.current_step))
        return
    await succeed(ctx, claimed.operation_id, result)
