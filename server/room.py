"""``Room``: people who hear each other (forwarded Opus) and, optionally, the agent who hears each of them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from typing import Callable

from aiortc.mediastreams import MediaStreamTrack

from parley.agents.profile import AgentProfile, LanguageVoice, Speaker
from parley.agents.runtime import AgentModels
from parley.agents.dialogue_state import State
from parley.agents.session import AgentSession
from parley.server.admission import AgentAdmission
from parley.server.agent_voice import AgentVoice
from parley.server.audio_backlog import BoundedAudioTrack
from parley.server.config import Settings
from parley.server.echo import EchoSession
from parley.core.errors import SignalingError
from parley.server.forwarding import AudioPublisher
from parley.core.logs import CallLogger
from parley.server.participant import Participant
from parley.server.playout import PlayoutStats, PlayoutTrack
from parley.signaling import api_models as api
from parley.signaling import messages as m
from parley.signaling.agent_wire import broadcaster

log = logging.getLogger(__name__)


class RoomAgent:
    """The room's agent as a participant: one voice (encoded once, heard by all) and one ear per person."""

    def __init__(self, room: "Room", models: AgentModels | None, profile: AgentProfile | None) -> None:
        self.participant_id = f"agent-{secrets.token_hex(3)}"
        self.joined_at = time.time()
        self.name = room.config.agent.name
        self.playout = PlayoutTrack()
        self.voice = AudioPublisher(self.participant_id)
        echo_mode = room.settings.agent.mode == "echo" or models is None or profile is None
        self.echo = None if echo_mode else models.echo_reference()  # type: ignore[union-attr]
        self._pump = AgentVoice(self.playout, self.voice, self.echo)
        self.session: AgentSession | EchoSession
        if echo_mode:
            self.session = EchoSession(self.playout, self.participant_id)
        else:
            emit = broadcaster(room.broadcast, self.participant_id, lambda: profile.name)
            self.session = AgentSession(models, room.settings, self.playout, emit, self.participant_id, profile, people=room.people)
        self._ears: dict[str, asyncio.Task[None]] = {}
        self._pump.start()

    @property
    def replying(self) -> bool:
        return isinstance(self.session, AgentSession) and self.session.state in (State.THINKING, State.SPEAKING)

    def info(self) -> m.ParticipantInfo:
        return m.ParticipantInfo(
            participant_id=self.participant_id, identity="agent", name=self.name, kind="agent", joined_at=self.joined_at,
        )

    def listen_to(self, participant: Participant, track: MediaStreamTrack) -> None:
        """Decode this person's microphone for the agent, for as long as the agent listens to it."""
        tap = participant.tap
        if tap is not None:
            tap.decode = True
        audio = BoundedAudioTrack(track)  # the agent falling behind drops old audio, never piles it up
        speaker = Speaker(participant.participant_id, participant.name)
        canceller = self.echo.open() if self.echo is not None else None
        task = asyncio.create_task(self.session.listen(audio, speaker, canceller), name=f"listen-{participant.participant_id}")
        self._ears[participant.participant_id] = task

        def stopped(_: asyncio.Task[None]) -> None:  # ended, failed or cancelled: stop decoding for nobody
            if tap is not None:
                tap.decode = False
            audio.stop()
            if canceller is not None and self.echo is not None:
                self.echo.close(canceller)

        task.add_done_callback(stopped)

    async def stop_listening(self, participant_id: str) -> None:
        task = self._ears.pop(participant_id, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task

    async def close(self) -> None:
        for participant_id in list(self._ears):  # first the ears: no new utterance reaches the session
            await self.stop_listening(participant_id)
        await self.session.close()
        await self._pump.close()


class Room:
    """Who is in one room, what each hears, and the agent among them."""

    def __init__(
        self, config: api.Room, settings: Settings, models: AgentModels | None,
        observer: Callable[[m.ServerMessage], None] | None = None, created_by_dev: bool = False,
        admission: AgentAdmission | None = None,
    ) -> None:
        self._admission = admission
        self.config = config
        self.created_by_dev = created_by_dev  # dev mode's token route serves only such rooms
        self._observer = observer
        self.settings = settings
        self._models = models
        self.participants: dict[str, Participant] = {}
        self.agent: RoomAgent | None = None
        self.closed_playout = PlayoutStats()
        self.closed = False
        self._admitting = asyncio.Lock()  # one admission at a time: the identity and size checks hold
        self._log = CallLogger(log, participant=f"room:{config.id}")

    @property
    def id(self) -> str:
        return self.config.id

    def people(self) -> int:
        return len(self.participants)

    def info(self) -> api.Room:
        members = [p.info() for p in self.participants.values()]
        if self.agent is not None:
            members.insert(0, self.agent.info())
        return self.config.model_copy(update={"participants": members})

    def broadcast(self, message: m.ServerMessage, exclude: str | None = None) -> None:
        if self._observer is not None:
            self._observer(message)
        for participant in list(self.participants.values()):
            if participant.participant_id != exclude:
                participant.send(message)

    async def _profile(self) -> AgentProfile | None:
        if self._models is None:
            return None
        agent = self.config.agent
        tts = await self._models.voice(agent.voice)
        replies = {
            language: LanguageVoice(reply.system_prompt, await self._models.voice(reply.voice))
            for language, reply in agent.replies.items()
        }
        return AgentProfile(agent.name, agent.system_prompt, agent.language, agent.reply_policy, tts, replies)

    async def admit(self, participant: Participant) -> list[m.ParticipantInfo]:
        """Add a person: everyone hears them, they hear everyone. Returns who was already there.

        One live participant per identity: a rejoin with the same token replaces the older call, which
        gets ``replaced`` and is disconnected (a reusable token cannot fill the room).
        """
        async with self._admitting:
            return await self._admit(participant)

    async def _admit(self, participant: Participant) -> list[m.ParticipantInfo]:
        if self.closed:
            raise SignalingError(f"room {self.id!r} was closed", code="room_closed")
        for older in [p for p in self.participants.values() if p.identity == participant.identity]:
            self._log.info("%s (%s) replaces %s", participant.participant_id, participant.identity, older.participant_id)
            older.send(m.Error(code="replaced", message="you joined this room again from another connection"))
            older.disconnect()
            await self.remove(older)
        if self.closed:
            raise SignalingError(f"room {self.id!r} was closed", code="room_closed")
        if len(self.participants) >= self.config.max_participants:
            raise SignalingError(
                f"room {self.id!r} is full ({self.config.max_participants} people)", code="room_full"
            )
        if self.agent is None and self.config.agent.enabled:
            if self._admission is not None:
                self._admission.acquire(self.id)  # BusyError: the others keep their latency
            try:
                self.agent = RoomAgent(self, self._models, await self._profile())
            except BaseException:
                if self._admission is not None:
                    self._admission.release(self.id)
                raise
            self._log.info("agent %s joined", self.agent.participant_id)
        present = [p.info() for p in self.participants.values()]
        if self.agent is not None:
            present.insert(0, self.agent.info())
            participant.hear_agent(self.agent.voice)
        for other in self.participants.values():
            participant.hear(other.publisher)
            other.hear(participant.publisher)
        self.broadcast(m.ParticipantJoined(participant=participant.info()))
        self.participants[participant.participant_id] = participant
        participant.on_microphone = self._on_microphone
        self._log.info("%s (%s) joined; %d in the room", participant.participant_id, participant.identity, len(self.participants))
        return present

    def _on_microphone(self, participant: Participant, track: MediaStreamTrack) -> None:
        if self.agent is not None and participant.participant_id in self.participants:
            self.agent.listen_to(participant, track)

    async def remove(self, participant: Participant) -> None:
        """Take a person out (left, vanished or kicked); the others renegotiate and carry on."""
        if self.participants.pop(participant.participant_id, None) is None:
            return
        for other in self.participants.values():
            other.stop_hearing(participant.participant_id)
        self.broadcast(m.ParticipantLeft(participant_id=participant.participant_id))
        if self.agent is not None:
            await self.agent.stop_listening(participant.participant_id)
        await participant.close()
        self._log.info("%s left; %d in the room", participant.participant_id, len(self.participants))
        if not self.participants and self.agent is not None:
            await self._close_agent()

    async def _close_agent(self) -> None:
        agent, self.agent = self.agent, None
        if agent is not None:
            if self._admission is not None:
                self._admission.release(self.id)
            await agent.close()
            self.closed_playout.add(agent.playout.stats)
            self._log.info("agent %s left", agent.participant_id)

    def playout_stats(self) -> PlayoutStats:
        total = PlayoutStats(**vars(self.closed_playout))
        if self.agent is not None:
            total.add(self.agent.playout.stats)
        return total

    def replying(self) -> bool:
        """Whether the agent is answering someone right now (thinking or speaking)."""
        return self.agent is not None and self.agent.replying

    async def close(self, reason: str = "the room was deleted", code: str = "room_closed", retry_after_s: float | None = None) -> None:
        """End the room: every participant gets ``code`` (``room_closed``; ``server_shutdown`` at exit) and is disconnected."""
        self.closed = True
        for participant in list(self.participants.values()):
            participant.send(m.Error(code=code, message=reason, retry_after_s=retry_after_s))
            participant.disconnect()
        for participant in list(self.participants.values()):
            await self.remove(participant)
        await self._close_agent()
