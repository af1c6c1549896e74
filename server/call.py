"""``Call``: one participant's peer connection with the agent on the other end."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Callable

from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.sdp import candidate_from_sdp

from parley.agents.runtime import AgentModels
from parley.agents.session import AgentSession
from parley.server.config import Settings
from parley.server.echo import EchoSession
from parley.server.errors import SignalingError
from parley.server.logs import CallLogger
from parley.server.playout import PlayoutTrack
from parley.signaling import messages as m

log = logging.getLogger(__name__)


def check_offer_sdp(sdp: str) -> None:
    """Reject what is plainly not an SDP offer with audio, before aiortc sees it."""
    lines = [line.strip() for line in sdp.strip().splitlines()]
    if not lines or lines[0] != "v=0" or not any(line.startswith("m=") for line in lines):
        raise SignalingError("offer.sdp is not an SDP session description", code="invalid_sdp")
    if not any(line.startswith("m=audio") for line in lines):
        raise SignalingError("the offer has no audio m-line: Parley calls need a microphone track", code="no_audio")


def ice_servers(settings: Settings) -> list[m.IceServer]:
    """The ICE servers handed to clients in ``joined``."""
    return [m.IceServer(urls=[url]) for url in settings.ice.stun_urls]


class Call:
    """A participant's ``RTCPeerConnection``, the agent's ``PlayoutTrack`` and the ``AgentSession`` behind it."""

    def __init__(
        self,
        participant_id: str,
        settings: Settings,
        models: AgentModels | None,
        emit: Callable[[m.ServerMessage], None],
        on_failed: Callable[[str], None],
    ) -> None:
        self.participant_id = participant_id
        self._settings = settings
        self._log = CallLogger(log, participant=participant_id)
        self.playout = PlayoutTrack()
        self.agent: AgentSession | EchoSession
        if settings.agent.mode == "echo" or models is None:
            self.agent = EchoSession(self.playout, participant_id)
        else:
            self.agent = AgentSession(models, settings, self.playout, emit, participant_id)
        self._on_failed = on_failed
        self.pc: RTCPeerConnection | None = None
        self._listen_task: asyncio.Task[None] | None = None
        self._closed = False

    def _new_peer_connection(self) -> RTCPeerConnection:
        servers = [RTCIceServer(urls=s.urls, username=s.username, credential=s.credential) for s in ice_servers(self._settings)]
        pc = RTCPeerConnection(RTCConfiguration(iceServers=servers or None))

        @pc.on("track")
        def on_track(track) -> None:
            self._log.info("receiving %s track", track.kind)
            if track.kind == "audio" and self._listen_task is None:
                self._listen_task = asyncio.create_task(self.agent.listen(track), name=f"listen-{self.participant_id}")

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            self._log.info("peer connection %s", pc.connectionState)
            if pc.connectionState == "failed" and not self._closed:
                self._on_failed("ice_failed")

        return pc

    async def answer(self, sdp: str) -> str:
        """Apply the caller's offer and return our answer SDP."""
        check_offer_sdp(sdp)
        first = self.pc is None
        if first:
            self.pc = self._new_peer_connection()
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        except Exception as exc:  # aiortc raises ValueError/KeyError/… on malformed SDP
            raise SignalingError(f"offer.sdp was rejected: {type(exc).__name__}: {exc}", code="invalid_sdp") from exc
        if first:
            self.pc.addTrack(self.playout)
        answer = await self.pc.createAnswer()
        await self.pc.setLocalDescription(answer)
        return self.pc.localDescription.sdp

    async def add_candidate(self, message: m.Candidate) -> None:
        """Add a trickled remote ICE candidate."""
        if self.pc is None:
            raise SignalingError("send an offer before ICE candidates", code="out_of_order")
        if not message.candidate:
            return  # end-of-candidates
        try:
            text = message.candidate.split(":", 1)[1] if message.candidate.startswith("candidate:") else message.candidate
            candidate = candidate_from_sdp(text)
        except Exception as exc:
            raise SignalingError(f"candidate is not an ICE candidate: {exc}", code="invalid_candidate") from exc
        candidate.sdpMid = message.sdpMid
        candidate.sdpMLineIndex = message.sdpMLineIndex
        try:
            await self.pc.addIceCandidate(candidate)
        except Exception as exc:
            raise SignalingError(f"candidate was rejected: {exc}", code="invalid_candidate") from exc

    async def close(self) -> None:
        """Stop the agent and the peer connection; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        await self.agent.close()
        if self._listen_task is not None:
            self._listen_task.cancel()
            with contextlib.suppress(BaseException):
                await self._listen_task
        if self.pc is not None:
            await self.pc.close()
        self.playout.stop()
        self._log.info("call closed")
