"""Live state of containers across a user's nodes: one request per node, all nodes at once, each bounded.

Each node answers `GET /nodes/{node}/lxc` (status and usage of every container in one call). A node that does not
answer within `timeout` seconds, refuses the connection or fails TLS/auth is reported as unreachable with a reason;
it never fails the caller. Answers (and failures) are kept in the Cache port for `cache_ttl` seconds so a burst of
list calls asks each node once. Clients are pooled per node (one TLS session reused across requests) and rebuilt
when the node's settings change.

When an operation changed a guest, `node_changed` drops the node's cached answers in every process: the shared
entry in the Cache port, and through the Invalidation port each process's fetch still in flight (its answer may
predate the change, so it is neither shared with later readers nor cached). Each snapshot says when its fetch began
(`fetched_at`); the listing prefers a container's stored status when its operation finished after that.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar
from urllib.parse import quote
from uuid import UUID

import msgspec

from infrahaus_domain.errors import DomainError
from infrahaus_domain.models.nodes import Node
from infrahaus_domain.nodes.connection import NodeAccess
from infrahaus_domain.ports import Cache, Invalidation
from infrahaus_domain.proxmox_errors import domain_error
from infrahaus_domain.vmids.service import vmids_cache_key
from infrahaus_proxmox import ProxmoxClient
from infrahaus_proxmox.errors import ProxmoxError, ProxmoxNotFound
from infrahaus_proxmox.models import LxcConfig, LxcSummary
from infrahaus_proxmox.parsing import decode_list

logger = logging.getLogger("infrahaus.containers.inventory")

T = TypeVar("T")

_LIVE_STATUSES = frozenset({"running", "stopped", "paused"})
# Invalidation topics: keys are node ids.
INVENTORY_TOPIC = "inventory"
VMIDS_TOPIC = "vmids"


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
    """One node's containers by VMID, or `error` (then `guests` is empty) when the node could not be read.

    `fetched_at` is when the request to the node began (epoch seconds): the answer reflects the node at some moment
    after it. `version` is the node's settings version the answer was fetched with.
    """

    guests: dict[int, LiveGuest] = msgspec.field(default_factory=dict)
    error: str | None = None
    fetched_at: float = 0.0
    version: str = ""

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

    def __init__(
        self,
        access: NodeAccess,
        cache: Cache | None,
        *,
        timeout: float,
        cache_ttl: float,
        invalidation: Invalidation | None = None,
    ) -> None:
        self.access = access
        self.cache = cache
        self.timeout = timeout
        self.cache_ttl = cache_ttl
        self.invalidation = invalidation
        self._listening = False
        self._clients: dict[UUID, tuple[str, ProxmoxClient]] = {}
        self._inflight: dict[tuple[UUID, str], asyncio.Future[NodeSnapshot]] = {}
        # Bumped by every invalidation of the node: a fetch that began under an older generation is not cached.
        self._generation: dict[UUID, int] = {}

    async def snapshots(self, nodes: Sequence[Node]) -> dict[UUID, NodeSnapshot]:
        """Every node's snapshot, fetched concurrently; the whole call takes at most about `timeout`."""
        results = await asyncio.gather(*(self.snapshot(node) for node in nodes))
        return {node.id: snap for node, snap in zip(nodes, results, strict=True)}

    async def snapshot(self, node: Node) -> NodeSnapshot:
        """The node's containers from the cache, or from the node (then cached, failures too).

        Concurrent callers in this process share one request to the node (and a caller that gives up does not
        cancel it for the others).
        """
        self._listen()
        version = node_version(node)
        if self.cache is not None and self.cache_ttl > 0:
            cached = await _cache_get(self.cache, inventory_key(node.id))
            if cached is not None:
                snap = _decode(cached)
                if snap is not None and snap.version == version:
                    return snap
        key = (node.id, version)
        fetch = self._inflight.get(key)
        if fetch is None:
            fetch = asyncio.ensure_future(self._fetch(node, version))
            self._inflight[key] = fetch
            fetch.add_done_callback(
                lambda done: self._inflight.pop(key, None) if self._inflight.get(key) is done else None
            )
        return await asyncio.shield(fetch)

    def forget(self, node_id: str | None) -> None:
        """The node's guests changed (None: any node's may have): later readers must not get an answer fetched
        before. Thread-safe (in embedded mode the worker's thread calls it)."""
        for key in list(self._inflight):
            if node_id is None or str(key[0]) == node_id:
                self._inflight.pop(key, None)
        for known in list(self._generation) if node_id is None else [UUID(node_id)]:
            self._generation[known] = self._generation.get(known, 0) + 1

    def _listen(self) -> None:
        if not self._listening and self.invalidation is not None:
            self._listening = True
            self.invalidation.listen(INVENTORY_TOPIC, self.forget)

    async def _fetch(self, node: Node, version: str) -> NodeSnapshot:
        generation = self._generation.setdefault(node.id, 0)
        fetched_at = time.time()
        try:
            guests = await self.call(node, lambda client: _lxc_list(client, node.pve_node))
            snap = NodeSnapshot(guests={g.vmid: g for g in guests}, fetched_at=fetched_at, version=version)
        except NodeReadError as exc:
            snap = NodeSnapshot(error=exc.error, fetched_at=fetched_at, version=version)
        fresh = self._generation.get(node.id, 0) == generation
        if fresh and self.cache is not None and self.cache_ttl > 0:
            try:
                await self.cache.set(inventory_key(node.id), msgspec.msgpack.encode(snap), ttl=self.cache_ttl)
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
        version = node_version(node)
        pooled = self._clients.get(node.id)
        if pooled is not None and pooled[0] == version:
            return pooled[1]
        if pooled is not None:
            del self._clients[node.id]
            # The node's settings changed: the old client's connections go with it.
            await pooled[1].aclose()
        # The overall timeout bounds the call; a retry would only eat into it.
        client = self.access.client(self.access.endpoint(node), timeout=self.timeout, retries=0)
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


def _decode(data: bytes) -> NodeSnapshot | None:
    try:
        return msgspec.msgpack.decode(data, type=NodeSnapshot)
    except msgspec.DecodeError:  # an entry written by an older release
        return None


def inventory_key(node_id: UUID) -> str:
    """The Cache port key of a node's shared snapshot."""
    return f"inventory:{node_id}"


async def node_changed(cache: Cache, invalidation: Invalidation, node_id: UUID) -> None:
    """An operation changed (created, started, stopped, destroyed ...) a guest of the node: drop the node's cached
    snapshot and VMID list in every process, so the next read asks the node. Best effort: without Redis the
    stored status still keeps reads right (see `containers.listing`), and the cache entries expire on their own."""
    try:
        await cache.delete(inventory_key(node_id), vmids_cache_key(node_id))
        await invalidation.publish(INVENTORY_TOPIC, str(node_id))
        await invalidation.publish(VMIDS_TOPIC, str(node_id))
    except Exception:
        logger.warning("caches of node %s not invalidated (Redis unavailable); they expire on their own", node_id)


def node_version(node: Node) -> str:
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
