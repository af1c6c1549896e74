"""OpenAI's Realtime API on Parley: ``GET /v1/realtime`` (WebSocket), ``POST /v1/realtime/calls`` (WebRTC),
``POST /v1/realtime/client_secrets``.

An app written for the hosted Realtime API talks to Parley by changing its base URL. Each connection
or call is one agent call, counted by admission control. Over the WebSocket the client's
``input_audio_buffer.append`` audio plays into an ``AgentSession`` as a live 24 kHz microphone and the
agent's voice goes back as ``response.output_audio.delta`` events, paced in real time as it would be
played (so a barge-in keeps in the history only what was sent); over WebRTC both travel as media and
the events on the ``oai-events`` data channel. The wire format is ``parley.signaling.realtime_protocol``;
docs/realtime.md maps every event to what Parley does.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiohttp import web
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack

from parley.core.errors import AuthError, LimitError, SignalingError
from parley.core.peer import close_peer
from parley.server.audio_backlog import BoundedAudioTrack
from parley.server.offer_check import check_realtime_offer_sdp
from parley.server.participant import server_ice_servers
from parley.server.playout import PlayoutTrack
from parley.server.realtime_call import RealtimeCall
from parley.server.realtime_transport import DataChannelEvents, WebSocketEvents
from parley.signaling import realtime_protocol as rp
from parley.signaling.auth import check_api_key
from parley.signaling.state import STATE_KEY, ParleyState

log = logging.getLogger(__name__)
SECRET_ROOM = "realtime"  # the "room" claim of client secrets (they open realtime sessions, no room)
SECRET_PREFIX = "ek_"


def _openai_error(status: int, code: str, message: str, state: ParleyState, kind: str = "invalid_request_error") -> web.Response:
    state.count_error(code)
    return web.json_response({"error": {"message": message, "type": kind, "code": code, "param": None}}, status=status)


def _offered_key(request: web.Request) -> str | None:
    """The credential: ``Authorization: Bearer …``, or (browsers cannot set headers on a WebSocket) the
    subprotocol ``openai-insecure-api-key.<key>`` as the hosted API accepts it."""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and given.strip():
        return given.strip()
    for protocol in request.headers.get("Sec-WebSocket-Protocol", "").split(","):
        protocol = protocol.strip()
        if protocol.startswith("openai-insecure-api-key."):
            return protocol.removeprefix("openai-insecure-api-key.")
    return None


def _authorize(state: ParleyState, key: str | None) -> None:
    """The admin key, or a client secret from ``POST /v1/realtime/client_secrets``; none needed in dev mode."""
    if key is None:
        if state.settings.auth.dev_mode:
            return
        raise AuthError("send 'Authorization: Bearer <key>': the admin API key or a client secret", code="unauthorized")
    if key.startswith(SECRET_PREFIX):
        state.tokens.verify(key.removeprefix(SECRET_PREFIX), SECRET_ROOM)
        return
    check_api_key(state.api_key, f"Bearer {key}")


def _refusal(state: ParleyState, request: web.Request) -> web.Response | None:
    """Why a session cannot start here (no models, no valid credential, shutting down), or None."""
    if state.models is None:
        return _openai_error(503, "realtime_unavailable", "this server runs without models (echo mode)", state, "server_error")
    try:
        _authorize(state, _offered_key(request))
    except AuthError as exc:
        return _openai_error(401, exc.code, str(exc), state)
    if state.draining:
        return _openai_error(503, "server_shutdown", "the server is shutting down", state, "server_error")
    return None


def _admit(state: ParleyState, call_id: str) -> web.Response | None:
    """Take an agent place for ``call_id`` (admission control), or the 429 that says the agent is busy."""
    try:
        if state.admission is not None:
            state.admission.acquire(call_id)
    except LimitError as exc:
        return _openai_error(429, exc.code, str(exc), state, "server_error")
    return None


async def realtime_socket(request: web.Request) -> web.StreamResponse:
    """``GET /v1/realtime?model=…``: one Realtime session over a WebSocket."""
    state = request.app[STATE_KEY]
    refused = _refusal(state, request)
    if refused is not None:
        return refused
    admission = state.admission
    call_id = rp.new_id("call")
    refused = _admit(state, call_id)
    if refused is not None:
        return refused
    try:
        protocols = ("realtime",) if "realtime" in request.headers.get("Sec-WebSocket-Protocol", "") else ()
        # Frames up to 4× the append limit are read (an oversized append gets its typed error and the
        # session goes on); larger ones close the socket (1009, message too big).
        ws = web.WebSocketResponse(protocols=protocols, max_msg_size=4 * rp.MAX_APPEND_BYTES, heartbeat=20)
        await ws.prepare(request)
        beta = "realtime=v1" in request.headers.get("OpenAI-Beta", "")
        call = RealtimeCall(WebSocketEvents(ws), state.models, state.settings, beta=beta,  # type: ignore[arg-type]
                            model=request.query.get("model", ""))
        log.info("realtime %s: opened (%s protocol)", call.id, "beta" if beta else "GA")
        await call.run()
        log.info("realtime %s: closed", call.id)
        return ws
    finally:
        if admission is not None:
            admission.release(call_id)


async def client_secret(request: web.Request) -> web.Response:
    """``POST /v1/realtime/client_secrets`` (admin key): a short-lived credential for one browser's sessions."""
    state = request.app[STATE_KEY]
    try:
        check_api_key(state.api_key, request.headers.get("Authorization"))
    except AuthError:
        return _openai_error(401, "unauthorized", "client secrets are minted with the admin API key", state)
    ttl = 600
    if request.can_read_body:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _openai_error(400, "invalid_json", "the body is not valid JSON", state)
        expires = body.get("expires_after") if isinstance(body, dict) else None
        if expires is not None and not isinstance(expires, dict):
            return _openai_error(400, "invalid_value", "expires_after must be an object: {\"seconds\": …}", state)
        seconds = (expires or {}).get("seconds")
        if seconds is not None:
            if not isinstance(seconds, int) or not 10 <= seconds <= 7200:
                return _openai_error(400, "invalid_value", "expires_after.seconds must be 10 … 7200", state)
            ttl = seconds
    token, expires_at = state.tokens.mint(SECRET_ROOM, rp.new_id("client"), ttl_s=ttl)
    config = rp.SessionConfig(instructions=state.settings.agent.system_prompt)
    return web.json_response({"value": SECRET_PREFIX + token, "expires_at": expires_at,
                              "session": rp.session_object(config, rp.new_id("sess"), beta=False)})


class _WebRtcCall:
    """The peer connection of one ``POST /v1/realtime/calls``, and the Realtime session it carries."""

    def __init__(self, state: ParleyState, call_id: str, beta: bool, model: str) -> None:
        self.state, self.id, self.beta, self.model = state, call_id, beta, model
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=server_ice_servers(state.settings) or None))  # type: ignore[arg-type]
        self.playout = PlayoutTrack()
        self._channel: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._microphone: asyncio.Future[MediaStreamTrack] = asyncio.get_running_loop().create_future()
        self.pc.on("datachannel", self._on_channel)
        self.pc.on("track", self._on_track)
        self.pc.on("connectionstatechange", self._on_state)
        self.done = asyncio.Event()

    def _on_channel(self, channel: Any) -> None:
        if channel.label == "oai-events" and not self._channel.done():
            self._channel.set_result(DataChannelEvents(channel))  # listening now: its first events may come at once

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio" and not self._microphone.done():
            self._microphone.set_result(BoundedAudioTrack(track))  # a slow agent drops old audio, never piles it up

    async def _on_state(self) -> None:
        log.info("realtime %s: peer connection %s", self.id, self.pc.connectionState)
        if self.pc.connectionState in ("failed", "closed"):
            self.done.set()

    async def answer(self, offer: str) -> str:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        audio = next(t for t in self.pc.getTransceivers() if t.kind == "audio")
        audio.sender.replaceTrack(self.playout)
        audio.direction = "sendrecv"
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return self.pc.localDescription.sdp

    async def run(self, admission: Any) -> None:
        """Until the call ends: the data channel and the microphone arrive, then the session runs."""
        try:
            setup = asyncio.gather(self._channel, self._microphone)
            waiting = asyncio.create_task(self.done.wait())
            await asyncio.wait({setup, waiting}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
            if not setup.done():
                setup.cancel()
                log.info("realtime %s: no data channel and microphone within 30 s: call dropped", self.id)
                return
            waiting.cancel()
            channel, microphone = setup.result()
            call = RealtimeCall(channel, self.state.models, self.state.settings,  # type: ignore[arg-type]
                                beta=self.beta, model=self.model, microphone=microphone, playout=self.playout)
            session = asyncio.create_task(call.run())
            ended = asyncio.create_task(self.done.wait())
            await asyncio.wait({session, ended}, return_when=asyncio.FIRST_COMPLETED)
            for task in (session, ended):
                task.cancel()
            await asyncio.gather(session, ended, return_exceptions=True)
        finally:
            await close_peer(self.pc)
            if admission is not None:
                admission.release(self.id)
            log.info("realtime %s: WebRTC call ended", self.id)


_CALLS_KEY = web.AppKey("parley-realtime-calls", set)


async def realtime_calls(request: web.Request) -> web.Response:
    """``POST /v1/realtime/calls`` (body: the SDP offer, ``application/sdp``): the SDP answer, 201.

    The hosted API's WebRTC flow: audio both ways on the media track, events on the ``oai-events``
    data channel the client opened. The call runs until the peer connection closes or fails.
    """
    state = request.app[STATE_KEY]
    refused = _refusal(state, request)
    if refused is not None:
        return refused
    if request.content_type != "application/sdp":  # also keeps cross-site "simple" POSTs out (they cannot send it)
        return _openai_error(415, "unsupported_media_type", "send the SDP offer as the body, Content-Type application/sdp", state)
    offer = await request.text()
    try:
        check_realtime_offer_sdp(offer)
    except SignalingError as exc:
        return _openai_error(400, exc.code, str(exc), state)
    call_id = rp.new_id("rtc")
    admission = state.admission
    refused = _admit(state, call_id)
    if refused is not None:
        return refused
    call = _WebRtcCall(state, call_id, "realtime=v1" in request.headers.get("OpenAI-Beta", ""), request.query.get("model", ""))
    try:
        answer = await call.answer(offer)
    except Exception as exc:  # aiortc raises ValueError/KeyError/… on an SDP it cannot take
        await close_peer(call.pc)
        if admission is not None:
            admission.release(call_id)
        return _openai_error(400, "invalid_sdp", f"the offer was rejected: {type(exc).__name__}: {exc}", state)
    calls = request.app[_CALLS_KEY]
    task = asyncio.create_task(call.run(admission), name=f"realtime-{call_id}")
    calls.add(task)
    task.add_done_callback(calls.discard)
    log.info("realtime %s: WebRTC call answered", call_id)
    return web.Response(status=201, text=answer, content_type="application/sdp",
                        headers={"Location": f"/v1/realtime/calls/{call_id}", **_cors(state)})


def _cors(state: ParleyState) -> dict[str, str]:
    """Apps on other origins may call ``/v1/realtime/calls`` with a credential; dev mode (no credential
    needed) answers same-origin pages only."""
    if state.settings.auth.dev_mode:
        return {}
    return {"Access-Control-Allow-Origin": "*", "Access-Control-Expose-Headers": "Location"}


async def calls_preflight(request: web.Request) -> web.Response:
    headers = _cors(request.app[STATE_KEY])
    if headers:
        headers |= {"Access-Control-Allow-Methods": "POST", "Access-Control-Allow-Headers": "Authorization, Content-Type, OpenAI-Beta",
                    "Access-Control-Max-Age": "600"}
    return web.Response(status=204, headers=headers)


async def _end_calls(app: web.Application) -> None:
    for task in list(app.get(_CALLS_KEY, ())):
        task.cancel()
    await asyncio.gather(*app.get(_CALLS_KEY, ()), return_exceptions=True)


def install(app: web.Application) -> None:
    """Register the Realtime routes on ``app`` (and end its WebRTC calls on shutdown)."""
    app[_CALLS_KEY] = set()
    app.router.add_get("/v1/realtime", realtime_socket)
    app.router.add_post("/v1/realtime/calls", realtime_calls)
    app.router.add_route("OPTIONS", "/v1/realtime/calls", calls_preflight)
    app.router.add_post("/v1/realtime/client_secrets", client_secret)
    app.on_shutdown.append(_end_calls)
