"""`infrahaus pvesim`: the Proxmox VE simulator on its own, in the foreground, with the demo defaults."""

import argparse
import asyncio
import contextlib
import signal
import sys
import tempfile
from pathlib import Path

from infrahaus_proxmox.simulator import SimNodeConfig, SimToken, Simulator, SimulatorConfig
from infrahaus_proxmox.simulator.config import (
    DEMO_NODE,
    DEMO_OSTEMPLATE,
    DEMO_PASSWORD,
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
        users={DEMO_USER: args.password},
        tokens={DEMO_TOKEN_ID: SimToken(secret=args.token_secret)},
        task_duration=args.task_duration,
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
