"""``ClusterRooms``: rooms shared by Parley nodes through Redis — placement, routing, heartbeats, failover.

Each node is one ``parley serve`` process. In Redis (``cluster.key_prefix``, default ``parley``):

- ``parley:node:<id>`` — the node's ``api.Node`` (URL, ICE addresses, load), rewritten every
  ``cluster.heartbeat_s`` with a TTL of ``cluster.node_ttl_s``: a node that stops beating is gone;
- ``parley:room:<id>`` — a room's settings as created (kept until the room is deleted), in ``parley:rooms``;
- ``parley:owner:<id>`` — the node that holds the room, with the same TTL, refreshed by its heartbeat;
  ``parley:node-rooms:<node>`` — the rooms given to a node (it opens one on its first join);
- ``parley:live:<id>`` — who is in the room, as its node last saw it (for listings on other nodes);
- ``parley:deleted:<id>`` — a short-lived tombstone, so the owner closes a room deleted elsewhere.

A join that reaches a node which does not hold the room gets a ``redirect`` to the one that does. When a
room's node is gone, the first node a caller rejoins through takes the room over and opens it afresh.
If Redis cannot be reached, the rooms a node holds go on (joins to them need no Redis); placing,
finding and taking over rooms fail with ``cluster_unavailable`` until it is back, and a Redis that came
back empty is told again about every room its nodes hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Awaitable, Callable, TypeVar

from pydantic import BaseModel, ValidationError

from parley.core.errors import ConflictError, LimitError, NotFoundError, UnavailableError
from parley.core.tasks import cancel_and_wait
from parley.server.config import ClusterSettings
from parley.server.room import Room
from parley.server.rooms import RoomRegistry, new_room_id
from parley.signaling import api_models as api
from parley.signaling.contracts import RoomRecord
from parley.signaling.directory import NodeStatus, origins_of

log = logging.getLogger(__name__)
T = TypeVar("T")
RETRY_AFTER_S = 2.0
TOMBSTONE_S = 60

# Take a room over unless a live node other than us holds it. KEYS: owner key; ARGV: our id, TTL in ms,
# node key prefix. Returns {1, previous owner or ""} when taken, {0, the live owner} when not.
CLAIM = """
local owner = redis.call('GET', KEYS[1])
if owner and owner ~= ARGV[1] and redis.call('EXISTS', ARGV[3] .. owner) == 1 then
  return {0, owner}
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return {1, owner or ''}
"""


class StoredRoom(BaseModel):
    config: api.Room  # as resolved at creation, participants empty
    by_dev: bool = False


class Keys:
    """The Redis key names, under one prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.nodes = f"{prefix}:nodes"
        self.rooms = f"{prefix}:rooms"
        self.node_prefix = f"{prefix}:node:"

    def node(self, node_id: str) -> str:
        return self.node_prefix + node_id

    def node_rooms(self, node_id: str) -> str:
        return f"{self.prefix}:node-rooms:{node_id}"

    def room(self, room_id: str) -> str:
        return f"{self.prefix}:room:{room_id}"

    def owner(self, room_id: str) -> str:
        return f"{self.prefix}:owner:{room_id}"

    def live(self, room_id: str) -> str:
        return f"{self.prefix}:live:{room_id}"

    def deleted(self, room_id: str) -> str:
        return f"{self.prefix}:deleted:{room_id}"


class ClusterRooms:
    """The ``RoomService`` of one node in a cluster: every node's rooms, this node's opened here."""

    def __init__(self, settings: ClusterSettings, registry: RoomRegistry, node: NodeStatus, redis: Any = None) -> None:
        from redis import asyncio as aioredis

        self._settings = settings
        self._registry = registry
        self.node = node
        self._keys = Keys(settings.key_prefix)
        self._ttl_ms = int(settings.node_ttl_s * 1000)
        self._redis = redis or aioredis.Redis.from_url(
            settings.redis_url, socket_timeout=1.0, socket_connect_timeout=1.0, decode_responses=True,
        )
        self._claim = self._redis.register_script(CLAIM)
        self._beating: asyncio.Task[None] | None = None
        self.reachable = True  # whether the last exchange with Redis worked
        self.redirects = 0
        self._origins = origins_of([node.url, node.shared_url])

    # ---- Redis access -----------------------------------------------------------------------------

    async def _ask(self, step: Callable[[], Awaitable[T]]) -> T:
        """Run one exchange with Redis; an unreachable Redis becomes ``cluster_unavailable``."""
        from redis.exceptions import RedisError

        try:
            result = await step()
        except (RedisError, OSError) as exc:
            self._mark(False, exc)
            raise UnavailableError(
                f"the cluster's registry (Redis at {self._settings.redis_url}) cannot be reached: {exc}",
                code="cluster_unavailable", retry_after_s=RETRY_AFTER_S,
            ) from exc
        self._mark(True)
        return result

    def _mark(self, reachable: bool, exc: BaseException | None = None) -> None:
        if reachable != self.reachable:
            if reachable:
                log.info("cluster: Redis at %s is reachable again", self._settings.redis_url)
            else:
                log.warning("cluster: Redis at %s cannot be reached (%s): rooms held here go on; new rooms cannot be placed",
                            self._settings.redis_url, exc)
        self.reachable = reachable

    # ---- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        """Register this node and start its heartbeat (an unreachable Redis is logged, and retried)."""
        with contextlib.suppress(UnavailableError):
            await self.beat()
        log.info("cluster: node %s (%s) registered in %s", self.node.id, self.node.url, self._settings.redis_url)
        self._beating = asyncio.create_task(self._heartbeat())

    async def stop(self) -> None:
        """Leave the cluster: the rooms held here are freed at once, for other nodes to take over."""
        if self._beating is not None:
            with contextlib.suppress(asyncio.CancelledError):  # leave below even if stop itself is cancelled
                await cancel_and_wait(self._beating)
        keys = self._keys

        async def leave() -> None:
            mine = await self._redis.smembers(keys.node_rooms(self.node.id))
            pipe = self._redis.pipeline(transaction=False)
            for room_id in set(mine) | set(self._registry.rooms):
                pipe.delete(keys.owner(room_id), keys.live(room_id))
            pipe.delete(keys.node(self.node.id), keys.node_rooms(self.node.id))
            pipe.srem(keys.nodes, self.node.id)
            await pipe.execute()

        with contextlib.suppress(UnavailableError):
            await self._ask(leave)
        await self._redis.aclose()

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self._settings.heartbeat_s)
            try:
                await self.beat()
            except UnavailableError:
                pass
            except Exception:  # a bug must not stop the heartbeat (the node would be taken for dead)
                log.exception("cluster: heartbeat failed")

    async def beat(self) -> None:
        """Say this node is alive with its load; keep hold of its rooms, close those deleted elsewhere,
        and tell a Redis that lost its data about the rooms open here."""
        keys, me, ttl = self._keys, self.node.id, self._ttl_ms
        mine = await self._ask(lambda: self._redis.smembers(keys.node_rooms(me)))
        local = dict(self._registry.rooms)
        ids = sorted(set(mine) | set(local))
        status = self.node.describe(self._registry.participant_count(), len(ids))

        async def look() -> list[Any]:
            pipe = self._redis.pipeline(transaction=False)
            pipe.set(keys.node(me), status.model_dump_json(), px=ttl)
            pipe.sadd(keys.nodes, me)
            for room_id in ids:
                pipe.exists(keys.room(room_id))
                pipe.get(keys.owner(room_id))
                pipe.exists(keys.deleted(room_id))
            return (await pipe.execute())[2:]

        found = await self._ask(look)
        pipe = self._redis.pipeline(transaction=False)
        for index, room_id in enumerate(ids):
            exists, owner, deleted = found[3 * index: 3 * index + 3]
            room = local.get(room_id)
            if not exists and (deleted or room is None):
                pipe.srem(keys.node_rooms(me), room_id)
                if room is not None:
                    log.info("cluster: room %s was deleted through another node", room_id)
                    await self._registry.delete(room_id)
                continue
            if owner not in (None, me):
                pipe.srem(keys.node_rooms(me), room_id)
                if room is not None:  # taken over while Redis could not be reached from here
                    log.warning("cluster: room %s is held by node %s now: its callers here are sent there", room_id, owner)
                    await self._registry.delete(room_id, reason=f"the room moved to node {owner}", code="room_moved")
                continue
            if not exists and room is not None:  # Redis lost its data (restarted empty): tell it again
                stored = StoredRoom(config=room.config, by_dev=room.created_by_dev)
                pipe.set(keys.room(room_id), stored.model_dump_json(), nx=True)
                pipe.sadd(keys.rooms, room_id)
            pipe.set(keys.owner(room_id), me, px=ttl)
            pipe.sadd(keys.node_rooms(me), room_id)
            if room is not None:
                people = api.RoomList(rooms=[room.info()]).model_dump_json()
                pipe.set(keys.live(room_id), people, px=ttl)
        await self._ask(pipe.execute)
        self._origins = origins_of(url for n in (await self._live_nodes()).values() for url in (n.url, n.shared_url))

    def trusted_origins(self) -> frozenset[str]:
        return self._origins

    # ---- nodes ------------------------------------------------------------------------------------

    async def _live_nodes(self) -> dict[str, api.Node]:
        keys = self._keys
        ids = sorted(await self._ask(lambda: self._redis.smembers(keys.nodes)))
        raw = await self._ask(lambda: self._redis.mget([keys.node(i) for i in ids])) if ids else []
        nodes: dict[str, api.Node] = {}
        gone = []
        for node_id, text in zip(ids, raw):
            if text is None:
                gone.append(node_id)
                continue
            with contextlib.suppress(ValidationError):
                nodes[node_id] = api.Node.model_validate_json(text)
        if gone:
            await self._ask(lambda: self._redis.srem(keys.nodes, *gone))
        return nodes

    async def nodes(self) -> api.NodeList:
        nodes = await self._live_nodes()
        return api.NodeList(cluster=True, nodes=sorted(nodes.values(), key=lambda n: n.id))

    async def _place(self) -> api.Node:
        """The live node with the fewest calls, then rooms, with room to spare (this one on a tie)."""
        nodes = await self._live_nodes()
        nodes.setdefault(self.node.id, self.node.describe(self._registry.participant_count(), len(self._registry.rooms)))

        async def counts() -> list[int]:
            pipe = self._redis.pipeline(transaction=False)
            for node_id in nodes:
                pipe.scard(self._keys.node_rooms(node_id))
            return await pipe.execute()

        rooms = dict(zip(nodes, await self._ask(counts)))
        limit = self._registry.max_rooms
        open_nodes = [n for n in nodes.values() if not n.draining and rooms[n.id] < limit]
        if not open_nodes:
            raise LimitError(f"every node holds its limit of {limit} rooms (or is shutting down)", code="too_many_rooms")
        return min(open_nodes, key=lambda n: (n.calls, rooms[n.id], n.id != self.node.id, n.id))

    # ---- RoomService ------------------------------------------------------------------------------

    async def create(self, request: api.RoomCreate, *, by_dev: bool = False) -> api.Room:
        keys = self._keys
        room_id = request.id or new_room_id()
        config = await self._registry.resolve(request, room_id)
        stored = StoredRoom(config=config, by_dev=by_dev)
        if not await self._ask(lambda: self._redis.set(keys.room(room_id), stored.model_dump_json(), nx=True)):
            raise ConflictError(f"room {room_id!r} already exists", code="room_exists")
        try:
            target = await self._place()

            async def record() -> None:
                pipe = self._redis.pipeline(transaction=False)
                pipe.sadd(keys.rooms, room_id)
                pipe.delete(keys.deleted(room_id))
                pipe.set(keys.owner(room_id), target.id, px=self._ttl_ms)
                pipe.sadd(keys.node_rooms(target.id), room_id)
                await pipe.execute()

            await self._ask(record)
            if target.id == self.node.id:
                return (await self._registry.add(config, by_dev=by_dev)).info()
        except BaseException:
            with contextlib.suppress(Exception):
                await self._redis.delete(keys.room(room_id), keys.owner(room_id))
            raise
        log.info("cluster: room %s placed on node %s (%s)", room_id, target.id, target.url)
        return config

    async def _stored(self, room_id: str) -> StoredRoom:
        text = await self._ask(lambda: self._redis.get(self._keys.room(room_id)))
        if text is None:
            raise NotFoundError(f"no room {room_id!r}", code="room_not_found")
        return StoredRoom.model_validate_json(text)

    async def _owner(self, room_id: str) -> api.Node | None:
        """The live node other than this one that holds the room, if any."""
        keys = self._keys
        owner = await self._ask(lambda: self._redis.get(keys.owner(room_id)))
        if owner is None or owner == self.node.id:
            return None
        text = await self._ask(lambda: self._redis.get(keys.node(owner)))
        return api.Node.model_validate_json(text) if text else None

    async def find(self, room_id: str) -> RoomRecord:
        room = self._registry.rooms.get(room_id)
        if room is not None:  # its tokens point here, not at a port every worker shares
            return RoomRecord(room.info(), room.created_by_dev, self.node.ws_url)
        stored = await self._stored(room_id)
        owner = await self._owner(room_id)
        info = stored.config
        live = await self._ask(lambda: self._redis.get(self._keys.live(room_id))) if owner else None
        if live:
            info = api.RoomList.model_validate_json(live).rooms[0]
        return RoomRecord(info, stored.by_dev, owner.ws_url if owner else None)

    async def list(self) -> list[api.Room]:
        keys = self._keys
        local = {room_id: room.info() for room_id, room in self._registry.rooms.items()}
        others = sorted(set(await self._ask(lambda: self._redis.smembers(keys.rooms))) - set(local))

        async def fetch() -> list[Any]:
            pipe = self._redis.pipeline(transaction=False)
            for room_id in others:
                pipe.get(keys.room(room_id))
                pipe.get(keys.live(room_id))
            return await pipe.execute()

        found = await self._ask(fetch) if others else []
        rooms = list(local.values())
        for index in range(len(others)):
            stored, live = found[2 * index], found[2 * index + 1]
            if live:
                rooms.append(api.RoomList.model_validate_json(live).rooms[0])
            elif stored:
                rooms.append(StoredRoom.model_validate_json(stored).config)
        return sorted(rooms, key=lambda r: r.created_at)

    async def delete(self, room_id: str) -> None:
        keys = self._keys
        local = room_id in self._registry.rooms

        async def remove() -> tuple[Any, ...]:
            pipe = self._redis.pipeline(transaction=True)
            pipe.get(keys.owner(room_id))
            pipe.delete(keys.room(room_id), keys.live(room_id), keys.owner(room_id))
            pipe.srem(keys.rooms, room_id)
            pipe.set(keys.deleted(room_id), self.node.id, ex=TOMBSTONE_S)
            return tuple(await pipe.execute())

        owner, removed, *_ = await self._ask(remove)
        if owner:
            await self._ask(lambda: self._redis.srem(keys.node_rooms(owner), room_id))
        if not removed and not local:
            raise NotFoundError(f"no room {room_id!r}", code="room_not_found")
        if local:
            await self._registry.delete(room_id)
        elif owner:
            log.info("cluster: room %s deleted; node %s closes it on its next heartbeat", room_id, owner)

    async def route(self, room_id: str) -> Room | str:
        room = self._registry.rooms.get(room_id)
        if room is not None:
            return room  # held here: no Redis needed
        stored = await self._stored(room_id)
        keys = self._keys
        for _ in range(3):  # the owner may vanish between the claim and the look at its node
            taken, previous = await self._ask(
                lambda: self._claim(keys=[keys.owner(room_id)], args=[self.node.id, self._ttl_ms, keys.node_prefix]),
            )
            if int(taken):
                break
            owner = await self._ask(lambda: self._redis.get(keys.node(previous)))
            if owner:
                self.redirects += 1
                return api.Node.model_validate_json(owner).ws_url
        else:
            raise UnavailableError(f"room {room_id!r} is changing hands: try again", code="cluster_unavailable", retry_after_s=1.0)
        try:
            room = await self._registry.add(stored.config, by_dev=stored.by_dev)
        except ConflictError:  # opened meanwhile by another join
            return self._registry.get(room_id)
        await self._ask(lambda: self._redis.sadd(keys.node_rooms(self.node.id), room_id))
        if previous and previous != self.node.id:
            log.info("cluster: room %s taken over from node %s, which is gone", room_id, previous)
            with contextlib.suppress(UnavailableError):
                await self._ask(lambda: self._redis.srem(keys.node_rooms(previous), room_id))
        return room

