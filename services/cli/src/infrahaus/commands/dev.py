"""`infrahaus dev [--demo]`: the embedded default, everything in one process.

SQLite in the data directory, in-memory cache/locks/events/sessions, migrations applied at start, an encryption
key generated into `<data-dir>/encryption.key` (mode 0600) when none is configured. With `--demo` the Proxmox
simulator runs in the same process and is the login server (its certificate fingerprint pinned).
"""

import argparse
import asyncio
import contextlib
import os
import signal
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType

import uvicorn
from sqlalchemy.engine import make_url

from infrahaus.commands import SIMULATOR_MISSING, simulator_available
from infrahaus_api.app import create_app
from infrahaus_domain import migrations
from infrahaus_domain.crypto import format_key, generate_key
from infrahaus_domain.db import create_engine
from infrahaus_domain.errors import SettingsError
from infrahaus_domain.events.logbuffer import MemoryLogStore
from infrahaus_domain.logs import configure_logging, server_logging_config
from infrahaus_domain.settings import AuthServer, Settings
from infrahaus_domain.templates.discovery import discover_into
from infrahaus_domain.templates.schemas import DiscoveryReport
from infrahaus_worker.broker import build_stub_broker
from infrahaus_worker.context import SharedStores
from infrahaus_worker.inprocess import start_inprocess_worker


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--demo", action="store_true", help="start the Proxmox simulator beside the API")
    parser.add_argument("--host", default="127.0.0.1", help="default: %(default)s")
    parser.add_argument("--port", type=int, default=8000, help="default: %(default)s")
    parser.add_argument("--data-dir", type=Path, default=Path(".infrahaus"), help="default: %(default)s")
    demo = parser.add_argument_group("demo simulator")
    demo.add_argument("--sim-api-port", type=int, default=8006, help="default: %(default)s")
    demo.add_argument("--sim-ssh-port", type=int, default=2222, help="default: %(default)s")
    demo.add_argument("--sim-node", default="pve", help="default: %(default)s")


def ensure_key_file(path: Path) -> None:
    """Create a key file with one fresh key, readable by the owner only, unless it exists."""
    if path.exists():
        return
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, stat.S_IRUSR | stat.S_IWUSR)
    with os.fdopen(fd, "w") as handle:
        handle.write(format_key(generate_key("dev1")) + "\n")


def embedded_settings(environ: dict[str, str], data_dir: Path) -> Settings:
    """Settings from the environment with the embedded defaults filled in for `data_dir`."""
    env = dict(environ)
    env["INFRAHAUS_DATA_DIR"] = str(data_dir)  # the flag wins: the key file and the database live there
    env.setdefault("INFRAHAUS_COOKIE_SECURE", "false")
    if not env.get("INFRAHAUS_ENCRYPTION_KEYS") and not env.get("INFRAHAUS_ENCRYPTION_KEY_FILE"):
        key_file = data_dir / "encryption.key"
        ensure_key_file(key_file)
        env["INFRAHAUS_ENCRYPTION_KEY_FILE"] = str(key_file)
    # The embedded mode reaches loopback (the demo's simulator, a node tunnelled to localhost); production allows
    # it only through INFRAHAUS_OUTBOUND_ALLOW.
    return Settings.from_env(env).replace(outbound={"loopback": True})


def run(args: argparse.Namespace) -> int:
    if args.demo and not simulator_available():
        print(f"infrahaus dev --demo: {SIMULATOR_MISSING}", file=sys.stderr)  # noqa: T201
        return 2
    try:
        settings = embedded_settings(dict(os.environ), args.data_dir)
    except SettingsError as exc:
        print(f"infrahaus dev: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    configure_logging(settings.logging.level, settings.logging.format)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(settings, args))
    return 0


async def _prepare_database(settings: Settings) -> DiscoveryReport | None:
    """Apply migrations, then sync the templates directory (the example templates in a checkout)."""
    engine = create_engine(settings.database.url)
    try:
        await migrations.upgrade(engine)
        return await discover_into(engine, settings.templates_dir) if settings.templates_dir else None
    finally:
        await engine.dispose()


# The simulator's documented demo token (the banner shows it too).
_DEMO_ACCOUNTS_TOKEN = "root@pam!infrahaus=demo-token-secret"  # noqa: S105 - the simulator's demo credential


async def _serve(settings: Settings, args: argparse.Namespace) -> None:
    report = await _prepare_database(settings)
    simulator = None
    if args.demo:
        # Imported here: the simulator is a development tool, absent from production installs.
        from infrahaus_pvesim import SimNodeConfig, Simulator, SimulatorConfig

        simulator = Simulator(
            SimulatorConfig(
                data_dir=args.data_dir / "simulator",
                nodes=[SimNodeConfig(name=args.sim_node, api_port=args.sim_api_port, ssh_port=args.sim_ssh_port)],
                # Its guests outlive a restart with the same data directory, like the database beside them.
                persist=True,
            )
        )
        await simulator.start()
        node = simulator.node(args.sim_node)
        # The demo token also re-reads accounts (README, Account re-validation): disabling a simulated user ends
        # its infrahaus sessions and tokens as on a real cluster.
        demo_server = AuthServer(
            name="demo", url=node.api_url, fingerprint=node.fingerprint, accounts_token=_DEMO_ACCOUNTS_TOKEN
        )
        settings = settings.replace(auth={"servers": (demo_server,)})
    # One broker and one set of in-memory stores shared by the API and the worker threads, so jobs, progress
    # events and log lines cross between them.
    broker = build_stub_broker()
    log_store = MemoryLogStore()
    worker = None
    try:
        app = create_app(settings, broker=broker, log_store=log_store)
        worker = start_inprocess_worker(
            settings, broker, shared=SharedStores(ports=app.state.resources.ports, log_store=log_store)
        )
        _print_banner(settings, args, simulator, report)
        server = uvicorn.Server(
            uvicorn.Config(
                app,
                host=args.host,
                port=args.port,
                lifespan="on",
                access_log=False,
                # X-Forwarded-For is read by the app, from INFRAHAUS_TRUSTED_PROXIES only.
                proxy_headers=False,
                # uvicorn's own lines through the product's (redacted) format, not uvicorn's default one.
                log_config=server_logging_config(
                    settings.logging.level, settings.logging.format, server_level="WARNING"
                ),
            )
        )
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, _absorb_replayed_signal(server))
        await server.serve()
    finally:
        if worker is not None:
            # In-flight operations run to a terminal state; queued ones are re-sent at the next start.
            await asyncio.to_thread(worker.stop)
        if simulator is not None:
            await simulator.stop()


def _absorb_replayed_signal(server: uvicorn.Server) -> Callable[[int, FrameType | None], None]:
    """A handler for after uvicorn: it re-raises the signal that stopped it once it has returned, which would
    cancel the shutdown below (worker drain, simulator stop). That replay is absorbed; any other signal interrupts.
    """
    absorbed = False

    def handler(signum: int, frame: FrameType | None) -> None:
        nonlocal absorbed
        if server.should_exit and not absorbed:
            absorbed = True
            return
        raise KeyboardInterrupt

    return handler


def _print_banner(
    settings: Settings, args: argparse.Namespace, simulator: object | None, report: DiscoveryReport | None
) -> None:
    base = f"http://{args.host}:{args.port}"
    lines = [
        "infrahaus (embedded mode)",
        f"  API          {base}/api",
        f"  OpenAPI      {base}/api/schema",
        f"  health       {base}/health/ready",
        f"  database     {make_url(settings.database.url).render_as_string(hide_password=True)}",
        "  worker       in-process threads",
    ]
    if report is not None:
        synced = len(report.created) + len(report.updated) + len(report.unchanged)
        lines.append(f"  templates    {synced} from {settings.templates_dir} ({len(report.errors)} with errors)")
    if simulator is not None:
        lines += [
            f"  simulator    https://127.0.0.1:{args.sim_api_port} (node {args.sim_node})",
            f"  sim SSH      127.0.0.1:{args.sim_ssh_port} (root / demo)",
            "  login        root@pam / demo",
            "    curl -s -c cookies -H 'Content-Type: application/json' \\",
            f'      -d \'{{"username":"root@pam","password":"demo"}}\' {base}/api/auth/login',
            "  node token   root@pam!infrahaus = demo-token-secret",
            "  least-privilege token   infrahaus@pve!provisioner = demo-least-privilege-secret",
        ]
    print("\n".join(lines), flush=True)  # noqa: T201
