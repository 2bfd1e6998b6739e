"""Live state of containers across a user's nodes: one request per node, all nodes at once, each bounded.

Each node answers `GET /nodes/{node}/lxc` (status and usage of every container in one call). A node that does not
answer within `timeout` seconds, refuses the connection or fails TLS/auth is reported as unreachable with a reason;
it never fails the caller. Answers (and failures) are kept in the Cache port for `cache_ttl` seconds so a burst of
list calls asks each node once. Clients are pooled per node (one TLS session reused across requests) and rebuilt
when the node's settings change.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar
from urllib.parse import quote
from uuid import UUID

import msgspec

from infrahaus_domain.crypto import SecretBox
from infrahaus_domain.errors import DomainError
from infrahaus_domain.metrics import proxmox_event_hooks
from infrahaus_domain.models.nodes import Node
from infrahaus_domain.nodes.connection import NodeEndpoint, domain_error
from infrahaus_domain.ports import Cache
from infrahaus_proxmox import ProxmoxClient, TokenAuth
from infrahaus_proxmox.errors import ProxmoxError, ProxmoxNotFound
from infrahaus_proxmox.models import LxcConfig, LxcSummary
from infrahaus_proxmox.parsing import decode_list

logger = logging.getLogger("infrahaus.containers.inventory")

T = TypeVar("T")

_LIVE_STATUSES = frozenset({"running", "stopped", "paused"})


class LiveGuest(msgspec.Struct, kw_only=True):
    """What the list needs of one guest (`cpu` is a fraction of its cores, sizes in bytes)."""

    vmid: int
    status: str = "unknown"
    cpu: float = 0.0
    mem: int = 0
    maxmem: int = 0
    disk: int = 0
    maxdisk: int = 0
    uptime: int = 0


class NodeSnapshot(msgspec.Struct, kw_only=True):
    """One node's containers by VMID, or `error` (then `guests` is empty) when the node could not be read."""

    guests: dict[int, LiveGuest] = msgspec.field(default_factory=dict)
    error: str | None = None

    @property
    def reachable(self) -> bool:
        return self.error is None

    def status_of(self, vmid: int) -> str:
        """`running`, `stopped`, `paused`, or `unknown` (node unreachable, or the guest is gone from the node)."""
        guest = self.guests.get(vmid)
        if guest is None or guest.status not in _LIVE_STATUSES:
            return "unknown"
        return guest.status


class NodeReadError(Exception):
    """A node could not be read; `error` is the user-facing reason and `code` the domain error code."""

    def __init__(self, code: str, error: str) -> None:
        super().__init__(error)
        self.code = code
        self.error = error


class LiveInventory:
    """Per-process: pooled Proxmox clients per node and the cached per-node snapshots. Close with `aclose()`."""

    def __init__(self, box: SecretBox, cache: Cache | None, *, timeout: float, cache_ttl: float) -> None:
        self.box = box
        self.cache = cache
        self.timeout = timeout
        self.cache_ttl = cache_ttl
        self._clients: dict[UUID, tuple[str, ProxmoxClient]] = {}
        self._inflight: dict[str, asyncio.Future[NodeSnapshot]] = {}

    async def snapshots(self, nodes: Sequence[Node]) -> dict[UUID, NodeSnapshot]:
        """Every node's snapshot, fetched concurrently; the whole call takes at most about `timeout`."""
        results = await asyncio.gather(*(self.snapshot(node) for node in nodes))
        return {node.id: snap for node, snap in zip(nodes, results, strict=True)}

    async def snapshot(self, node: Node) -> NodeSnapshot:
        """The node's containers from the cache, or from the node (then cached, failures too).

        Concurrent callers in this process share one request to the node (and a caller that gives up does not
        cancel it for the others).
        """
        key = f"inventory:{node.id}:{_version(node)}"
        if self.cache is not None and self.cache_ttl > 0:
            cached = await _cache_get(self.cache, key)
            if cached is not None:
                return msgspec.msgpack.decode(cached, type=NodeSnapshot)
        fetch = self._inflight.get(key)
        if fetch is None:
            fetch = asyncio.ensure_future(self._fetch(node, key))
            self._inflight[key] = fetch
            fetch.add_done_callback(lambda _done: self._inflight.pop(key, None))
        return await asyncio.shield(fetch)

    async def _fetch(self, node: Node, key: str) -> NodeSnapshot:
        try:
            guests = await self.call(node, lambda client: _lxc_list(client, node.pve_node))
            snap = NodeSnapshot(guests={g.vmid: g for g in guests})
        except NodeReadError as exc:
            snap = NodeSnapshot(error=exc.error)
        if self.cache is not None and self.cache_ttl > 0:
            try:
                await self.cache.set(key, msgspec.msgpack.encode(snap), ttl=self.cache_ttl)
            except Exception:  # the cache only spares the nodes: without it, reads go on
                logger.warning("inventory cache unavailable; node %s answer not cached", node.id)
        return snap

    async def config(self, node: Node, vmid: int) -> LxcConfig:
        """The container's Proxmox config (not cached); raises `NodeReadError` (`missing_on_node` when gone)."""
        return await self.call(node, lambda client: client.lxc.config(node.pve_node, vmid))

    async def call(self, node: Node, fn: Callable[[ProxmoxClient], Awaitable[T]]) -> T:
        """Run `fn` with the node's pooled client within `timeout`; every failure becomes `NodeReadError`."""
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout):
                return await fn(await self._client(node))
        except TimeoutError:
            raise NodeReadError("node_unreachable", f"The node did not answer within {self.timeout:g} s.") from None
        except ProxmoxError as exc:
            if isinstance(exc, ProxmoxNotFound):
                raise NodeReadError("missing_on_node", "The node no longer has this container.") from None
            error = domain_error(exc, pinned=node.tls_fingerprint is not None)
            raise NodeReadError(error.code, error.detail) from None
        except DomainError as exc:  # e.g. the node's secrets cannot be decrypted with the current keys
            raise NodeReadError(exc.code, exc.detail) from None
        except ValueError:  # settings the client refuses (an URL it cannot build); never echoed, may hold secrets
            raise NodeReadError("node_error", "The node's connection settings cannot be used.") from None
        finally:
            logger.debug("node %s answered in %.1f ms", node.id, (time.perf_counter() - started) * 1000)

    async def _client(self, node: Node) -> ProxmoxClient:
        version = _version(node)
        pooled = self._clients.get(node.id)
        if pooled is not None and pooled[0] == version:
            return pooled[1]
        if pooled is not None:
            del self._clients[node.id]
            # The node's settings changed: the old client's connections go with it.
            await pooled[1].aclose()
        endpoint = NodeEndpoint.from_node(node, self.box)
        client = ProxmoxClient(
            endpoint.base_url,
            TokenAuth(token_id=endpoint.token_id, secret=endpoint.token_secret),
            tls=endpoint.tls_policy,
            timeout=self.timeout,
            # The overall timeout bounds the call; a retry would only eat into it.
            retries=0,
            event_hooks=proxmox_event_hooks(),
        )
        self._clients[node.id] = (version, client)
        return client

    async def aclose(self) -> None:
        """Close every pooled client (and stop fetches still running)."""
        for fetch in list(self._inflight.values()):
            fetch.cancel()
        clients = [client for _, client in self._clients.values()]
        self._clients.clear()
        for client in clients:
            await client.aclose()


async def _cache_get(cache: Cache, key: str) -> bytes | None:
    try:
        return await cache.get(key)
    except Exception:  # the cache only spares the nodes: without it, reads go on
        logger.warning("inventory cache unavailable; asking the node")
        return None


def _version(node: Node) -> str:
    # Any change of the node (host, token, pin ...) bumps `updated_at`: new client, new cache key.
    return str(node.updated_at.timestamp()) if node.updated_at else "0"


async def _lxc_list(client: ProxmoxClient, pve_node: str) -> list[LiveGuest]:
    """`GET /nodes/{node}/lxc` decoded straight into `LiveGuest`s by msgspec (C speed: a list of hundreds of guests
    stays well under a millisecond); only an answer with odd values takes the client's lenient, slower decoding."""
    data = await client.request("GET", f"/nodes/{quote(pve_node, safe='')}/lxc")
    try:
        return msgspec.convert(data, list[LiveGuest], strict=False)
    except msgspec.ValidationError:
        return [_live(s) for s in decode_list(data, LxcSummary, "container list")]


def _live(summary: LxcSummary) -> LiveGuest:
    return LiveGuest(
        vmid=summary.vmid,
        status=summary.status,
        cpu=summary.cpu,
        mem=summary.mem,
        maxmem=summary.maxmem,
        disk=summary.disk,
        maxdisk=summary.maxdisk,
        uptime=summary.uptime,
    )
