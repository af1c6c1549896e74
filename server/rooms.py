"""``RoomRegistry``: the rooms of this process, created through the REST API (or by dev mode)."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import Callable

from parley.agents.runtime import AgentModels
from parley.agents.settings import AUTO_LANGUAGES
from parley.server.admission import AgentAdmission
from parley.server.config import Settings
from parley.core.errors import ConfigError, ConflictError, LimitError, ModelLoadError, NotFoundError
from parley.server.playout import PlayoutStats
from parley.server.room import Room
from parley.signaling import api_models as api
from parley.signaling import messages as m

log = logging.getLogger(__name__)


def new_room_id() -> str:
    return f"room-{secrets.token_hex(4)}"


class RoomRegistry:
    """Creates, finds and deletes rooms within the configured limits."""

    def __init__(
        self, settings: Settings, models: AgentModels | None, observer: Callable[[m.ServerMessage], None] | None = None,
    ) -> None:
        self._settings = settings
        self._observer = observer  # sees every message a room broadcasts (metrics)
        self._models = models
        self.rooms: dict[str, Room] = {}
        self._closed_playout = PlayoutStats()  # agents of deleted rooms
        self._lock = asyncio.Lock()
        self.admission = AgentAdmission(settings.agent.agent_capacity, settings.agent.retry_after_s) if models is not None else None

    def _resolve(self, request: api.RoomCreate, room_id: str) -> api.Room:
        defaults = self._settings.agent
        agent = request.agent
        language = agent.language or defaults.language
        if language != "auto" and not language.startswith(("en", "zh")):
            raise ConfigError(f"agent.language {language!r} is not supported: en, zh or auto")
        auto = language == "auto"
        replies = {lang: self._reply_in(lang, agent, auto) for lang in AUTO_LANGUAGES} if auto else {}
        main = replies.get("en") or self._reply_in(language, agent, auto)
        return api.Room(
            id=room_id,
            created_at=time.time(),
            agent=api.ResolvedAgent(
                enabled=agent.enabled,
                name=agent.name or defaults.name,
                system_prompt=main.system_prompt,
                voice=main.voice,
                language=language,
                reply_policy=agent.reply_policy or defaults.reply_policy,
                replies=replies,
            ),
            max_participants=min(request.max_participants or self._settings.rooms.max_participants,
                                 self._settings.rooms.max_participants),
            participants=[],
        )

    def _reply_in(self, language: str, agent: api.AgentConfig, auto: bool) -> api.LanguageReply:
        """The system prompt and voice of replies in ``language``: the room's own, else the server's for it.
        In an auto room the room's voice is its English one (Mandarin replies take ``tts.zh_voice``)."""
        defaults = self._settings.agent
        chinese = language.startswith("zh")
        prompt = agent.system_prompt or defaults.system_prompts.get(language.split("-")[0]) or defaults.system_prompt
        own_voice = None if chinese and auto else agent.voice
        return api.LanguageReply(
            system_prompt=prompt, voice=own_voice or (self._settings.tts.zh_voice if chinese else self._settings.tts.voice),
        )

    async def create(self, request: api.RoomCreate, *, by_dev: bool = False) -> Room:
        """Create a room; ``ConflictError`` if the id is taken, ``LimitError`` past ``rooms.max_rooms``.

        ``by_dev``: created by dev mode (its default room, or the dev token route), which may then
        hand out tokens for it; rooms made through the admin API are never open to that route.
        """
        room_id = request.id or new_room_id()
        if room_id in self.rooms:
            raise ConflictError(f"room {room_id!r} already exists", code="room_exists")
        return await self.add(await self.resolve(request, room_id), by_dev=by_dev)

    async def resolve(self, request: api.RoomCreate, room_id: str) -> api.Room:
        """The room ``request`` asks for, with this server's defaults filled in and its language and
        voices checked against the models (``ConfigError`` names what cannot be served)."""
        config = self._resolve(request, room_id)
        if self._models is not None and config.agent.enabled:
            try:
                await self._models.prepare_language(config.agent.language)  # Mandarin's STT, once
            except ModelLoadError as exc:
                raise ConfigError(f"agent.language {config.agent.language!r} cannot be served: {exc}") from exc
            for voice in dict.fromkeys([config.agent.voice, *(r.voice for r in config.agent.replies.values())]):
                try:
                    await self._models.voice(voice)  # an unknown voice fails here, not mid-call
                except ModelLoadError as exc:
                    raise ConfigError(f"agent.voice {voice!r} cannot be used: {exc}") from exc
        return config

    async def add(self, config: api.Room, *, by_dev: bool = False) -> Room:
        """Open a room from its resolved settings (``resolve``, or another node's, in a cluster)."""
        async with self._lock:
            if config.id in self.rooms:
                raise ConflictError(f"room {config.id!r} already exists", code="room_exists")
            if len(self.rooms) >= self._settings.rooms.max_rooms:
                raise LimitError(f"the server holds its limit of {self._settings.rooms.max_rooms} rooms", code="too_many_rooms")
            config = config.model_copy(update={"participants": []})
            room = Room(config, self._settings, self._models, self._observer, created_by_dev=by_dev, admission=self.admission)
            self.rooms[config.id] = room
            log.info("room %s created (agent %s)", config.id, "on" if config.agent.enabled else "off")
            return room

    @property
    def max_rooms(self) -> int:
        return self._settings.rooms.max_rooms

    def get(self, room_id: str) -> Room:
        room = self.rooms.get(room_id)
        if room is None:
            raise NotFoundError(f"no room {room_id!r}", code="room_not_found")
        return room

    async def delete(self, room_id: str, *, reason: str = "the room was deleted", code: str = "room_closed") -> None:
        """Close a room; everyone in it gets ``code`` (``room_closed``: the call ends)."""
        room = self.get(room_id)
        del self.rooms[room_id]
        await room.close(reason, code=code)
        self._closed_playout.add(room.playout_stats())
        log.info("room %s deleted", room_id)

    def participant_count(self) -> int:
        return sum(room.people() for room in self.rooms.values())

    def playout_totals(self) -> PlayoutStats:
        """The agents' outgoing 20 ms frame counters (sent, late, resyncs), live and ended."""
        total = PlayoutStats(**vars(self._closed_playout))
        for room in self.rooms.values():
            total.add(room.playout_stats())
        return total

    def replies_in_progress(self) -> int:
        """Rooms whose agent is thinking or speaking right now."""
        return sum(room.replying() for room in self.rooms.values())

    async def close(self, retry_after_s: float | None = None) -> None:
        """End every room at shutdown: participants get ``server_shutdown`` (with the retry hint)."""
        for room in list(self.rooms.values()):
            await room.close("the server is shutting down", code="server_shutdown", retry_after_s=retry_after_s)
