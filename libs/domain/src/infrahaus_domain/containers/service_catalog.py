"""Containers, discovered services: the list with URLs, credential reveals and service logs."""

from uuid import UUID

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from infrahaus_domain.allowlist import UnsafeValueError, validate_unit_name
from infrahaus_domain.containers.errors import InvalidStateError
from infrahaus_domain.containers.read_schemas import (
    CredentialsRead,
    ServiceList,
    ServiceLogs,
    ServiceRead,
)
from infrahaus_domain.containers.service import ContainerRepository, ContainerService
from infrahaus_domain.errors import FieldError, NotFoundError, RateLimited, ValidationFailed
from infrahaus_domain.events.service import EventService
from infrahaus_domain.models.containers import (
    Container,
    DiscoveredService,
    ServiceCredential,
)
from infrahaus_domain.models.nodes import Node
from infrahaus_domain.nodes.connection import NodeAccess
from infrahaus_domain.nodes.errors import NodeRequestError
from infrahaus_domain.ports import Cache
from infrahaus_domain.proxmox_errors import ssh_domain_error
from infrahaus_domain.service_base import DomainService
from infrahaus_proxmox.errors import ProxmoxNotFound
from infrahaus_proxmox.ssh_types import PctNotRunning, SshError

HTTPS_PORTS = frozenset({443, 8443, 9443})
HTTP_PORTS = frozenset({80, 3000, 3001, 5000, 5601, 8000, 8008, 8080, 8081, 8088, 8888, 9000, 9090, 19999})
MAX_LOG_LINES = 1000
_LOG_TIMEOUT = 20.0


class ServiceCatalog(DomainService[Container, ContainerRepository]):
    """What discovery found in a caller's container. `reveal_credentials` writes an event; the caller commits it."""

    repository_type = ContainerRepository

    def __init__(
        self,
        session: AsyncSession,
        *,
        containers: ContainerService,
        access: NodeAccess,
        events: EventService,
        cache: Cache,
        reveal_limit: int = 30,
        reveal_window: int = 60,
        ssh_timeout: float = 10.0,
    ) -> None:
        super().__init__(session)
        self.containers = containers
        self.access = access
        self.box = access.box
        self.events = events
        self.cache = cache
        self.reveal_limit = reveal_limit
        self.reveal_window = reveal_window
        self.ssh_timeout = ssh_timeout

    async def services(self, container_id: UUID, user_id: UUID) -> ServiceList:
        """Discovered services with URLs and whether credentials exist (never their values)."""
        container = await self.containers.get_for_user(container_id, user_id)
        services = (
            await self.session.scalars(
                select(DiscoveredService)
                .where(DiscoveredService.container_id == container.id)
                .order_by(DiscoveredService.is_system, DiscoveredService.name)
            )
        ).all()
        with_credentials = set(
            (
                await self.session.scalars(
                    select(ServiceCredential.service).where(ServiceCredential.container_id == container.id).distinct()
                )
            ).all()
        )
        return ServiceList(
            services=[
                ServiceRead(
                    name=s.name,
                    type=s.type,
                    port=s.port,
                    protocol=s.protocol,
                    status=s.status,
                    is_system=s.is_system,
                    url=service_url(container.ip_address, s.port, s.protocol),
                    has_credentials=s.name in with_credentials,
                )
                for s in services
            ],
            ip_address=container.ip_address,
            discovered_at=container.services_discovered_at,
        )

    async def reveal_credentials(self, container_id: UUID, user_id: UUID, service: str) -> CredentialsRead:
        """Decrypt the service's saved credentials and record a `credentials_viewed` event (keys, never values).

        Rate limited per user: beyond `reveal_limit` reveals in `reveal_window` seconds raises `RateLimited`.
        A service without credentials is a 404 (nothing is recorded).
        """
        container = await self.containers.get_for_user(container_id, user_id)
        counter = f"credentials-reveal:{user_id}"
        if await self.cache.incr(counter, ttl=self.reveal_window) > self.reveal_limit:
            retry_after = await self.cache.ttl(counter)
            raise RateLimited(
                int(retry_after or self.reveal_window) + 1, "Too many credential reveals; try again later."
            )
        rows = (
            await self.session.scalars(
                select(ServiceCredential)
                .where(ServiceCredential.container_id == container.id, ServiceCredential.service == service)
                .order_by(ServiceCredential.key)
            )
        ).all()
        if not rows:
            raise NotFoundError("This service has no saved credentials.")
        values = {row.key: self.box.decrypt(row.value) for row in rows}
        await self.events.record(
            container.id,
            "credentials_viewed",
            f"Credentials of {service} viewed.",
            {"service": service, "keys": sorted(values), "user_id": str(user_id)},
        )
        return CredentialsRead(service=service, credentials=values)

    async def service_logs(self, container_id: UUID, user_id: UUID, service: str, lines: int) -> ServiceLogs:
        """The last `lines` (1..1000) journal lines of the service's unit, via `pct exec ... journalctl`.

        The unit name is validated (422 otherwise); the container must be running (409 `invalid_state`).
        """
        errors: list[FieldError] = []
        try:
            unit = validate_unit_name(service)
        except UnsafeValueError as exc:
            errors.append(FieldError(field="name", message=str(exc)))
            unit = service
        if not 1 <= lines <= MAX_LOG_LINES:
            errors.append(FieldError(field="lines", message=f"Must be between 1 and {MAX_LOG_LINES}."))
        if errors:
            raise ValidationFailed(errors)
        container = await self.containers.get_for_user(container_id, user_id)
        node = await self.session.get(Node, container.node_id)
        if node is None:
            raise NotFoundError("Container not found.")
        endpoint = self.access.endpoint(node)
        vmid = container.vmid
        await self.end_read()
        argv = ["journalctl", "-u", unit, "-n", str(lines), "--no-pager"]
        runner = self.access.runner(endpoint, connect_timeout=self.ssh_timeout)
        try:
            result = await runner.exec(vmid, argv, timeout=_LOG_TIMEOUT)
        except PctNotRunning:
            raise InvalidStateError("The container is not running; its journal cannot be read.") from None
        except ProxmoxNotFound:
            # Not created yet (or removed behind our back): nothing to read, like a stopped container.
            raise InvalidStateError("The container does not exist on its node; its journal cannot be read.") from None
        except SshError as exc:
            raise ssh_domain_error(exc, action="Reading the journal") from None
        finally:
            await runner.aclose()
        if result.exit_code != 0:
            raise NodeRequestError(f"journalctl exited with status {result.exit_code}.")
        return ServiceLogs(service=service, unit=unit, lines=result.stdout[-lines:])


def service_url(ip_address: str | None, port: int | None, protocol: str | None) -> str | None:
    """`http(s)://ip[:port]` for web ports, `tcp://ip:port` for other TCP ports, else None."""
    if not ip_address or port is None or protocol == "udp":
        return None
    address = ip_address.split("/", 1)[0]
    host = f"[{address}]" if ":" in address else address
    if port in HTTPS_PORTS:
        return f"https://{host}" if port == 443 else f"https://{host}:{port}"
    if port in HTTP_PORTS:
        return f"http://{host}" if port == 80 else f"http://{host}:{port}"
    return f"tcp://{host}:{port}"
