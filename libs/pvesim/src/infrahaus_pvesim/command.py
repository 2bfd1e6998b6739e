"""`infrahaus pvesim` (or `pvesim`, `python -m infrahaus_pvesim`): the simulator on its own, in the foreground, with
the demo defaults."""

import argparse
import asyncio
import contextlib
import signal
import sys
import tempfile
from pathlib import Path

from infrahaus_pvesim import SimNodeConfig, SimToken, Simulator, SimulatorConfig
from infrahaus_pvesim.config import (
    DEMO_LEAST_PASSWORD,
    DEMO_LEAST_TOKEN_ID,
    DEMO_LEAST_TOKEN_SECRET,
    DEMO_LEAST_USER,
    DEMO_NODE,
    DEMO_OSTEMPLATE,
    DEMO_PASSWORD,
    DEMO_ROLE,
    DEMO_ROLE_PATHS,
    DEMO_SSH_USER,
    DEMO_TEMPLATES,
    DEMO_TOKEN_ID,
    DEMO_TOKEN_SECRET,
    DEMO_USER,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument(
        "--port", type=int, default=8006, help="HTTPS API port of the first node (default: %(default)s)"
    )
    parser.add_argument("--ssh-port", type=int, default=2222, help="SSH port of the first node (default: %(default)s)")
    parser.add_argument("--node", default=DEMO_NODE, help="name of the first node (default: %(default)s)")
    parser.add_argument("--nodes", type=int, default=1, help="number of nodes; node i listens on port+i, ssh-port+i")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="where certificates, host keys and container trees live (default: a fresh temporary directory)",
    )
    parser.add_argument("--password", default=DEMO_PASSWORD, help=f"password of {DEMO_USER} and SSH user root")
    parser.add_argument("--token-secret", default=DEMO_TOKEN_SECRET, help=f"secret of API token {DEMO_TOKEN_ID}")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every API answer")
    parser.add_argument("--guests", type=int, default=0, help="guests pre-populated on every node")
    parser.add_argument("--task-duration", type=float, default=0.5, help="seconds a task runs (default: %(default)s)")
    parser.add_argument(
        "--auth-failure-delay",
        type=float,
        default=3.0,
        help="seconds every 401 answer is held, counted from the request's start (Proxmox: %(default)s)",
    )
    parser.add_argument(
        "--lock-timeout",
        type=float,
        default=10.0,
        help="seconds a task waits for a guest's config file lock (Proxmox: %(default)s)",
    )
    parser.add_argument(
        "--dhcp-lease-delay", type=float, default=0.0, help="seconds after a start before a DHCP guest has its address"
    )
    parser.add_argument(
        "--status-interval",
        type=float,
        default=0.0,
        help="seconds between status broadcasts seen by /cluster/resources (Proxmox: 10; 0 = always live)",
    )


def _config(args: argparse.Namespace, data_dir: Path) -> SimulatorConfig:
    nodes = []
    for index in range(args.nodes):
        name = args.node if index == 0 else f"{args.node}{index + 1}"
        nodes.append(
            SimNodeConfig(
                name=name,
                api_port=args.port + index if args.port else 0,
                ssh_port=args.ssh_port + index if args.ssh_port else 0,
                latency=args.latency,
                guests=args.guests,
                ssh_users={DEMO_SSH_USER: args.password},
            )
        )
    return SimulatorConfig(
        data_dir=data_dir,
        nodes=nodes,
        users={DEMO_USER: args.password, DEMO_LEAST_USER: DEMO_LEAST_PASSWORD},
        tokens={
            DEMO_TOKEN_ID: SimToken(secret=args.token_secret),
            DEMO_LEAST_TOKEN_ID: SimToken(secret=DEMO_LEAST_TOKEN_SECRET, privsep=True),
        },
        task_duration=args.task_duration,
        auth_failure_delay=args.auth_failure_delay,
        config_lock_timeout=args.lock_timeout,
        dhcp_lease_delay=args.dhcp_lease_delay,
        status_interval=args.status_interval,
        bind=args.host,
        templates=DEMO_TEMPLATES,
    )


def _banner(sim: Simulator, args: argparse.Namespace) -> str:
    lines = ["Proxmox VE simulator running (Ctrl-C to stop)"]
    for node in sim.nodes:
        lines += [
            f"node {node.name}:",
            f"  API URL:          {node.api_url}/api2/json",
            f"  TLS fingerprint:  {node.fingerprint}",
            f"  SSH:              {args.host}:{node.ssh_port} user {DEMO_SSH_USER} password {args.password}",
            f"  SSH host key:     {node.ssh_host_key}",
        ]
    lines += [
        f"login:              {DEMO_USER} / {args.password}",
        f"API token:          {DEMO_TOKEN_ID} secret {args.token_secret}",
        f"  header:           Authorization: PVEAPIToken={DEMO_TOKEN_ID}={args.token_secret}",
        f"least privilege:    {DEMO_LEAST_TOKEN_ID} secret {DEMO_LEAST_TOKEN_SECRET} (privilege separated)",
        f"  role {DEMO_ROLE} on {', '.join(DEMO_ROLE_PATHS)} for the token and its user {DEMO_LEAST_USER}",
        "storages:           local (vztmpl, iso, backup), local-lvm (rootdir, images); bridge vmbr0",
        f"ostemplate:         {DEMO_OSTEMPLATE}",
    ]
    return "\n".join(lines)


async def _serve(args: argparse.Namespace, data_dir: Path) -> None:
    sim = Simulator(_config(args, data_dir))
    await sim.start()
    try:
        print(_banner(sim, args), flush=True)  # noqa: T201 - the banner is this command's output
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await sim.stop()


def run(args: argparse.Namespace) -> int:
    with contextlib.ExitStack() as stack:
        data_dir = args.data_dir
        if data_dir is None:
            data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pvesim-")))
        try:
            asyncio.run(_serve(args, data_dir))
        except OSError as exc:
            print(f"pvesim: {exc}", file=sys.stderr)  # noqa: T201 - CLI error output
            return 1
    return 0
