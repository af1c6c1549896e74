"""Where rooms are: ``NodeStatus`` (what this node tells others about itself) and ``LocalRooms`` (the
``RoomService`` of a single process: its rooms are all there is)."""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable
from urllib.parse import urlsplit, urlunsplit

from parley.signaling import api_models as api
from parley.signaling.contracts import Room, RoomDirectory, RoomRecord


def ws_url_of(base_url: str) -> str:
    """``http://h:p`` → ``ws://h:p/ws`` (https → wss)."""
    parts = urlsplit(base_url)
    scheme = "wss" if parts.scheme in ("https", "wss") else "ws"
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + "/ws", "", ""))


def public_url(configured: str, host: str, port: int, tls: bool) -> str:
    """The base URL clients reach this node at: ``configured``, else the listening address (a wildcard
    address is replaced by this machine's name)."""
    if configured:
        return configured.rstrip("/")
    if host in ("0.0.0.0", "::", ""):
        host = socket.getfqdn()
    if ":" in host:
        host = f"[{host}]"
    return f"{'https' if tls else 'http'}://{host}:{port}"


@dataclass
class CpuMeter:
    """This process's CPU use between two readings, in % of one core."""

    _wall: float = field(default_factory=time.monotonic)
    _cpu: float = field(default_factory=time.process_time)

    def read(self) -> float:
        wall, cpu = time.monotonic(), time.process_time()
        spent = (cpu - self._cpu) / max(wall - self._wall, 1e-6)
        self._wall, self._cpu = wall, cpu
        return round(100.0 * spent, 1)


@dataclass
class NodeStatus:
    """This node's identity and load, as ``GET /api/v1/nodes`` and the cluster registry show it."""

    id: str
    url: str
    ice_addresses: list[str]
    draining: Callable[[], bool] = lambda: False
    shared_url: str | None = None  # --workers: the public port every worker of this machine listens on
    started_at: float = field(default_factory=time.time)
    cpu: CpuMeter = field(default_factory=CpuMeter)

    @staticmethod
    def new_id() -> str:
        return f"{socket.gethostname()}-{os.getpid()}"

    @property
    def ws_url(self) -> str:
        return ws_url_of(self.url)

    def describe(self, calls: int, rooms: int) -> api.Node:
        return api.Node(
            id=self.id, pid=os.getpid(), url=self.url, ws_url=self.ws_url, shared_url=self.shared_url, ice_addresses=self.ice_addresses, calls=calls, rooms=rooms,
            cpu_percent=self.cpu.read(), draining=self.draining(), started_at=self.started_at, seen_at=time.time(),
        )


class LocalRooms:
    """One process: the REST API and joins see exactly this node's rooms."""

    def __init__(self, rooms: RoomDirectory, node: NodeStatus) -> None:
        self._rooms = rooms
        self._node = node

    async def create(self, request: api.RoomCreate, *, by_dev: bool = False) -> api.Room:
        return (await self._rooms.create(request, by_dev=by_dev)).info()

    async def find(self, room_id: str) -> RoomRecord:
        room = self._rooms.get(room_id)
        return RoomRecord(room.info(), room.created_by_dev)

    async def list(self) -> list[api.Room]:
        return [room.info() for room in self._rooms.rooms.values()]

    async def delete(self, room_id: str) -> None:
        await self._rooms.delete(room_id)

    async def route(self, room_id: str) -> Room | str:
        return self._rooms.get(room_id)

    async def nodes(self) -> api.NodeList:
        node = self._node.describe(self._rooms.participant_count(), len(self._rooms.rooms))
        return api.NodeList(cluster=False, nodes=[node])

    def trusted_origins(self) -> frozenset[str]:
        return frozenset()


def origins_of(urls: Iterable[str | None]) -> frozenset[str]:
    """The page origins (scheme://host:port) of these node URLs: a page one node serves may open a
    WebSocket to another."""
    found = set()
    for url in urls:
        if url:
            parts = urlsplit(url)
            found.add(f"{parts.scheme}://{parts.netloc}".lower())
    return frozenset(found)
