"""Step `config` (sync only, 15-40): bring the container's Proxmox config to the spec — cores, memory, swap, the
network bridge (`PUT …/config` with the API token) and feature flags (`pct set --features` over SSH as root: Proxmox
lets only root@pam change flags other than nesting, pve-container ``LXC.pm`` ``check_ct_modify_config_perm``).

Values already set, or already waiting for the next start, are left alone. On a running container Proxmox applies
cores, memory, swap and the network at once and keeps feature changes pending for the next start
(``LXC/Config.pm`` ``update_pct_config``); an event says so.
"""

from infrahaus_domain.containers.schemas import ContainerSpec
from infrahaus_proxmox.models import LxcConfig
from infrahaus_worker.pipeline.env import PipelineEnv, retry_locked

STEP = "config"
START, END = 15, 40


def wanted_values(spec: ContainerSpec, config: LxcConfig) -> dict[str, str]:
    """The `PUT …/config` values that differ from `config` (which includes pending values)."""
    values: dict[str, str] = {}
    if config.cores != spec.cores:
        values["cores"] = str(spec.cores)
    if config.memory != spec.memory_mb:
        values["memory"] = str(spec.memory_mb)
    if config.swap != spec.swap_mb:
        values["swap"] = str(spec.swap_mb)
    net0 = config.networks.get("net0")
    if net0 is not None and net0.bridge != spec.bridge:
        values["net0"] = _with_bridge(config.get("net0") or "", spec.bridge)
    return values


def _with_bridge(raw: str, bridge: str) -> str:
    """The `netN` property string with another bridge, everything else (MAC address included) as it was."""
    parts = [p if not p.startswith("bridge=") else f"bridge={bridge}" for p in raw.split(",")]
    return ",".join(parts)


def wanted_features(spec: ContainerSpec, config: LxcConfig) -> dict[str, bool] | None:
    features = config.features
    current = {"nesting": bool(features.nesting), "keyctl": bool(features.keyctl), "fuse": bool(features.fuse)}
    wanted = {"nesting": spec.nesting, "keyctl": spec.keyctl, "fuse": spec.fuse}
    return wanted if wanted != current else None


async def run(env: PipelineEnv) -> list[str]:
    """Apply the spec's config; returns the keys changed."""
    await env.reporter.step(STEP, START, "Bringing the Proxmox config in line")
    spec = env.creation
    config = await env.client.lxc.config(env.node, env.vmid)
    values = wanted_values(spec, config)
    features = wanted_features(spec, config)
    changed = sorted(values)
    if values:
        await retry_locked(lambda: env.client.lxc.update_config(env.node, env.vmid, values), wait=env.timings.lock_wait)
    if features is not None:
        await retry_locked(lambda: env.runner.set_features(env.vmid, features), wait=env.timings.lock_wait)
        changed.append("features")
    if changed:
        await env.reporter.event(
            "step", f"Config changed: {', '.join(changed)}", {"step": STEP, "changed": changed, **values}
        )
    pending = [entry.key for entry in await env.client.lxc.pending(env.node, env.vmid) if entry.waiting]
    if pending:
        await env.reporter.event(
            "step",
            f"Changes to {', '.join(pending)} wait for the container's next start",
            {"step": STEP, "pending": pending},
        )
    await env.reporter.progress(END, "Config in line" if not changed else f"Config changed: {', '.join(changed)}")
    return changed
