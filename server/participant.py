"""``Participant``: one person's peer connection in a room — their microphone in, everyone else's audio out.

The client's first offer creates the main audio m-line: the person's microphone goes up on it and
the agent's voice comes down on it. Every other person in the room gets an m-line of its own,
added by a server-side renegotiation (``offer`` → client ``answer``). When someone leaves, their
m-line goes inactive and is reused for the next person who joins.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from typing import Callable

from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCRtpTransceiver, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack
from aiortc.sdp import candidate_from_sdp

from parley.server.config import Settings
from parley.core.errors import SignalingError
from parley.server.candidates import check_candidate_address
from parley.server.forwarding import AudioPublisher, EncodedAudioTap, ForwardingSlot
from parley.core.logs import CallLogger
from parley.core.peer import close_peer
from parley.server.offer_check import check_offer_sdp
from parley.server.sdp_align import RtpNumbering
from parley.signaling import messages as m
from parley.turn.credentials import ice_server_entries

log = logging.getLogger(__name__)
MAX_REMOTE_CANDIDATES = 32  # trickled ICE candidates one client may send (a browser sends a handful)
OnFailed = Callable[[str, str], None]  # (error code, message): the call cannot go on


def server_ice_servers(settings: Settings) -> list[RTCIceServer]:
    """What the server's own peer connections use: STUN, and TURN when ``turn.server_uses_turn``."""
    entries = ice_server_entries(settings.ice.stun_urls, settings.turn, "parley-server")
    if not settings.turn.server_uses_turn:
        entries = [e for e in entries if e.username is None]
    return [RTCIceServer(urls=e.urls, username=e.username, credential=e.credential) for e in entries]


class Participant:
    """A person in a room: their ``RTCPeerConnection``, their published microphone and their slots."""

    live: "weakref.WeakSet[Participant]" = weakref.WeakSet()  # for /metrics and leak checks

    def __init__(
        self,
        participant_id: str,
        identity: str,
        name: str,
        settings: Settings,
        emit: Callable[[m.ServerMessage], None],
        on_failed: OnFailed,
    ) -> None:
        self.participant_id = participant_id
        self.identity = identity
        self.name = name
        self.joined_at = time.time()
        self._settings = settings
        self._emit = emit
        self._on_failed = on_failed
        self.disconnect: Callable[[], None] = lambda: None  # set by the signaling connection: close its socket
        self._log = CallLogger(log, participant=participant_id)
        self.publisher = AudioPublisher(participant_id)  # this person's microphone, for the others
        self.tap: EncodedAudioTap | None = None
        self.microphone: MediaStreamTrack | None = None
        self.on_microphone: Callable[[Participant, MediaStreamTrack], None] | None = None
        self.pc: RTCPeerConnection | None = None
        self._main_slot = ForwardingSlot()  # the agent's voice, on the client's own m-line
        self._slots: list[tuple[RTCRtpTransceiver, ForwardingSlot]] = []  # other people, one m-line each
        self._wanted: dict[str, AudioPublisher] = {}  # other people this participant should hear
        self._negotiated = False
        self._negotiation: asyncio.Task[None] | None = None
        self._dirty = False
        self._pending_answer: asyncio.Future[str] | None = None
        self._numbering: RtpNumbering | None = None  # the client's codec and extension numbers
        self.connected = asyncio.Event()  # ICE and DTLS are up
        self._sdp_lock = asyncio.Lock()  # one offer/answer exchange at a time, whoever offers (no glare)
        self._remote_candidates = 0
        Participant.live.add(self)
        self._closed = False

    def send(self, message: m.ServerMessage) -> None:
        """Send a signaling message to this participant's client."""
        self._emit(message)

    def info(self) -> m.ParticipantInfo:
        return m.ParticipantInfo(
            participant_id=self.participant_id, identity=self.identity, name=self.name, kind="human", joined_at=self.joined_at,
        )

    # ---- what this participant hears ------------------------------------------------------------

    def hear_agent(self, voice: AudioPublisher) -> None:
        self._main_slot.attach(voice)

    def hear(self, publisher: AudioPublisher) -> None:
        """Forward another person's microphone to this participant (renegotiates)."""
        self._wanted[publisher.source_id] = publisher
        self._schedule_renegotiation()

    def stop_hearing(self, source_id: str) -> None:
        if self._wanted.pop(source_id, None) is not None:
            self._schedule_renegotiation()

    def tracks(self) -> dict[str, str]:
        """m-line mid → id of the participant whose audio it carries, for the client."""
        out: dict[str, str] = {}
        for transceiver, slot in self._all_slots():
            if transceiver.mid is not None and slot.source_id is not None:
                out[transceiver.mid] = slot.source_id
        return out

    def _all_slots(self) -> list[tuple[RTCRtpTransceiver, ForwardingSlot]]:
        main = [(t, self._main_slot) for t in (self.pc.getTransceivers() if self.pc else []) if t.sender.track is self._main_slot]
        return main + self._slots

    def _sync_slots(self) -> None:
        """Make the m-lines match ``_wanted``: detach leavers, reuse free m-lines, add new ones."""
        assert self.pc is not None
        attached = {slot.source_id for _, slot in self._slots if slot.source_id}
        for transceiver, slot in self._slots:
            if slot.source_id is not None and slot.source_id not in self._wanted:
                slot.detach()
                transceiver.direction = "inactive"
        for source_id, publisher in self._wanted.items():
            if source_id in attached:
                continue
            free = next(((t, s) for t, s in self._slots if s.source is None), None)
            if free is not None:
                free[1].attach(publisher)
                free[0].direction = "sendonly"
            else:
                slot = ForwardingSlot()
                slot.attach(publisher)
                self._slots.append((self.pc.addTransceiver(slot, direction="sendonly"), slot))

    # ---- negotiation -------------------------------------------------------------------------

    def _new_peer_connection(self) -> RTCPeerConnection:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=server_ice_servers(self._settings) or None))

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind != "audio" or self.microphone is not None:
                return
            receiver = next(t.receiver for t in pc.getTransceivers() if t.receiver.track is track)
            self.tap = EncodedAudioTap(receiver, self.publisher)
            self.microphone = track
            self._log.info("receiving the microphone")
            if self.on_microphone is not None:
                self.on_microphone(self, track)

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            self._log.info("peer connection %s", pc.connectionState)
            if pc.connectionState == "connected":
                self.connected.set()
            if pc.connectionState == "failed" and not self._closed:
                self._on_failed("ice_failed", "the media connection (ICE/DTLS) failed")

        return pc

    async def answer(self, sdp: str) -> m.Answer:
        """Apply the client's offer and return our answer."""
        if self._sdp_lock.locked() or (self.pc is not None and self.pc.signalingState != "stable"):
            raise SignalingError("an offer from the server is waiting for your answer", code="out_of_order")
        async with self._sdp_lock:
            first = self.pc is None
            negotiated = None if first else [t.mid for t in self.pc.getTransceivers() if t.mid is not None]
            check_offer_sdp(sdp, negotiated)
            if first:
                self.pc = self._new_peer_connection()
                self._numbering = RtpNumbering(sdp)
            try:
                await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
                if first:
                    self.pc.addTrack(self._main_slot)
                await self.pc.setLocalDescription(await self.pc.createAnswer())
            except Exception as exc:  # aiortc raises ValueError/KeyError/… on malformed SDP
                if first:  # start afresh on the next offer: a half-set-up connection would never get the agent's track
                    pc, self.pc, self._numbering = self.pc, None, None
                    await close_peer(pc, logger=self._log)
                raise SignalingError(f"offer.sdp was rejected: {type(exc).__name__}: {exc}", code="invalid_sdp") from exc
            self._negotiated = True
        if self._wanted:
            self._schedule_renegotiation()
        return m.Answer(sdp=self.pc.localDescription.sdp, tracks=self.tracks())

    async def accept_answer(self, sdp: str) -> None:
        """Apply the client's answer to our renegotiation offer."""
        if self._pending_answer is None or self._pending_answer.done():
            raise SignalingError("no offer from the server is waiting for an answer", code="out_of_order")
        self._pending_answer.set_result(sdp)

    def _schedule_renegotiation(self) -> None:
        self._dirty = True
        if self._negotiated and not self._closed and (self._negotiation is None or self._negotiation.done()):
            self._negotiation = asyncio.create_task(self._renegotiate(), name=f"renegotiate-{self.participant_id}")

    async def _renegotiate(self) -> None:
        """Offer until the m-lines match who is in the room; one offer in flight at a time."""
        assert self.pc is not None
        # aiortc starts a transceiver's RTP only once DTLS is up, with the parameters of that moment;
        # a re-offer made before then would start the first m-line with aiortc's default numbering.
        # The connection ends the call if ICE does not connect in time (http.connect_timeout_s).
        await self.connected.wait()
        timeout = self._settings.http.renegotiation_timeout_s
        while self._dirty and not self._closed:
            async with self._sdp_lock:
                self._dirty = False
                self._sync_slots()
                offer = await self.pc.createOffer()
                if self._numbering is not None:
                    offer = RTCSessionDescription(sdp=self._numbering.align_offer(offer.sdp), type="offer")
                await self.pc.setLocalDescription(offer)
                loop = asyncio.get_running_loop()
                self._pending_answer = loop.create_future()
                self._emit(m.ServerOffer(sdp=self.pc.localDescription.sdp, tracks=self.tracks()))
                try:
                    sdp = await asyncio.wait_for(self._pending_answer, timeout)
                    await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
                except asyncio.TimeoutError:
                    self._log.warning("no answer to the renegotiation offer in %.0f s: ending the call", timeout)
                    self._on_failed("renegotiation_timeout", f"the server's offer was not answered in {timeout:g} s")
                    return
                except Exception as exc:
                    self._log.warning("renegotiation answer rejected: %s", exc)
                    self._on_failed("invalid_sdp", f"answer.sdp was rejected: {type(exc).__name__}: {exc}")
                    return
                finally:
                    self._pending_answer = None
            self._log.info("renegotiated: %s", self.tracks())

    async def add_candidate(self, message: m.Candidate) -> None:
        """Add a trickled remote ICE candidate."""
        if self.pc is None or self.pc.remoteDescription is None:
            raise SignalingError("send an offer (one the server accepted) before ICE candidates", code="out_of_order")
        if not message.candidate:
            return  # end-of-candidates
        if self._remote_candidates >= MAX_REMOTE_CANDIDATES:
            raise SignalingError(f"no more than {MAX_REMOTE_CANDIDATES} ICE candidates per call", code="too_many_candidates")
        try:
            text = message.candidate.split(":", 1)[1] if message.candidate.startswith("candidate:") else message.candidate
            candidate = candidate_from_sdp(text)
        except Exception as exc:
            raise SignalingError(f"candidate is not an ICE candidate: {exc}", code="invalid_candidate") from exc
        check_candidate_address(candidate.ip, candidate.port)
        self._remote_candidates += 1
        candidate.sdpMid = message.sdpMid
        candidate.sdpMLineIndex = message.sdpMLineIndex
        try:
            await self.pc.addIceCandidate(candidate)
        except Exception as exc:
            raise SignalingError(f"candidate was rejected: {exc}", code="invalid_candidate") from exc

    async def close(self) -> None:
        """Stop forwarding and close the peer connection; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self.publisher.close()
        if self._negotiation is not None:
            self._negotiation.cancel()
            with contextlib.suppress(BaseException):
                await self._negotiation
        if self.pc is not None:
            await close_peer(self.pc, logger=self._log)
        self._main_slot.stop()
        for _, slot in self._slots:
            slot.stop()
        self._log.info("left")
