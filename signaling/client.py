"""Python client for Parley: join a room over the signaling protocol with aiortc, talk, listen, read events.

``ParleyClient`` is a participant: it plays clips (numpy arrays or WAV files) as its microphone,
records what it receives (the agent's voice and every other person's audio), answers the server's
renegotiation offers, and keeps every event. ``ParleyAdmin`` is the REST side a backend uses: rooms
and join tokens. The tests, ``make bench`` and ``examples/bot.py`` all use these classes.

    async with ParleyAdmin("http://127.0.0.1:8080", api_key) as admin:
        room = await admin.create_room(agent={"name": "Ava"})
        token = (await admin.token(room["id"], "bot-1", name="Bot"))["token"]
    client = ParleyClient("http://127.0.0.1:8080", token=token)
    client.on("transcript", lambda m: print(m["name"], m["text"]))
    await client.start()
    result = await client.ask(samples_48k)   # speak, wait for the agent's whole answer
    await client.close()
"""

from __future__ import annotations

import asyncio
import collections
import fractions
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import aiohttp
import av
import numpy as np
from aiortc import RTCConfiguration, RTCIceServer, RTCIceTransportPolicy, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from parley.core.aiortc_hooks import nominated_pair
from parley.core.peer import close_peer

RATE = 48_000
FRAME = 960
LOUD = 0.02  # peak above about -34 dBFS counts as sound
MAX_REDIRECTS = 3  # a join follows at most this many `redirect`s (cluster nodes pointing at the room's node)
MIC_STALL_S = 30.0  # a queued clip that has not left this long after its turn came fails its Playback futures
ADMIN_TIMEOUT_S = 60.0  # an admin REST call unanswered this long raises (aiohttp's default waits 5 minutes)


@dataclass
class Playback:
    """Monotonic times at which a clip's first and last loud samples left the microphone."""

    started: asyncio.Future[float]
    ended: asyncio.Future[float]


class QueueMicrophone(MediaStreamTrack):
    """An audio track that plays queued clips in real time and silence otherwise."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._clips: collections.deque[tuple[np.ndarray, int, int, Playback]] = collections.deque()
        self._offset = 0
        self._start: float | None = None
        self._frames = 0

    def play(self, samples: np.ndarray) -> Playback:
        """Queue a 48 kHz mono float clip; the returned futures say when its speech began and ended leaving."""
        loud = np.flatnonzero(np.abs(samples) > LOUD)
        first, last = (int(loud[0]), int(loud[-1])) if loud.size else (0, samples.size - 1)
        loop = asyncio.get_running_loop()
        handle = Playback(loop.create_future(), loop.create_future())
        pcm = (np.clip(samples, -1, 1) * 32767).astype(np.int16)
        self._clips.append((pcm, first, last, handle))
        waiting = sum(clip.size for clip, *_ in self._clips) / RATE  # this clip and those queued before it
        loop.call_later(waiting + MIC_STALL_S, self._give_up, handle)
        return handle

    def _give_up(self, handle: Playback) -> None:
        """The clip has not left by now: nothing is reading this track (the call ended or its sender stopped)."""
        for future in (handle.started, handle.ended):
            if not future.done():
                future.set_exception(TimeoutError(f"the microphone track was not read for {MIC_STALL_S:g} s: is the call still up?"))
                future.exception()  # retrieved here: an unawaited clip must not log "exception never retrieved"

    async def recv(self) -> av.AudioFrame:
        if self._start is None:
            self._start = time.monotonic()
        await asyncio.sleep(max(0.0, self._start + self._frames * FRAME / RATE - time.monotonic()))
        out = np.zeros(FRAME, np.int16)
        filled = 0
        events: list[asyncio.Future[float]] = []
        while filled < FRAME and self._clips:
            pcm, first, last, handle = self._clips[0]
            take = min(FRAME - filled, pcm.size - self._offset)
            out[filled : filled + take] = pcm[self._offset : self._offset + take]
            if self._offset <= first < self._offset + take:
                events.append(handle.started)
            if self._offset <= last < self._offset + take:
                events.append(handle.ended)
            filled += take
            self._offset += take
            if self._offset >= pcm.size:
                self._clips.popleft()
                self._offset = 0
        frame = av.AudioFrame.from_ndarray(out.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = self._frames * FRAME
        frame.time_base = fractions.Fraction(1, RATE)
        self._frames += 1
        now = time.monotonic()
        for future in events:
            if not future.done():
                future.set_result(now)
        return frame


class AudioRecorder:
    """Receives the agent's track: arrival time and peak of every frame, and optionally the samples."""

    def __init__(self, keep_audio: bool = False) -> None:
        self.times: list[float] = []
        self.peaks: list[float] = []
        self.keep_audio = keep_audio
        self.audio: list[np.ndarray] = []
        self.listeners: list[Callable[[np.ndarray], None]] = []  # each gets every 48 kHz chunk as it arrives

    async def run(self, track: MediaStreamTrack) -> None:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
        try:
            while True:
                frame = await track.recv()
                now = time.monotonic()
                for out in resampler.resample(frame):
                    pcm = out.to_ndarray().reshape(-1).astype(np.float32) / 32768.0
                    self.times.append(now)
                    self.peaks.append(float(np.abs(pcm).max()) if pcm.size else 0.0)
                    if self.keep_audio:
                        self.audio.append(pcm)
                    for listener in self.listeners:
                        listener(pcm)
        except MediaStreamError:
            pass

    def first_loud_after(self, moment: float) -> float | None:
        for at, peak in zip(self.times, self.peaks):
            if at > moment and peak > LOUD:
                return at
        return None

    def longest_quiet_between(self, start: float, end: float) -> float | None:
        """The longest stretch without sound between two loud frames that arrived in [start, end], in
        seconds (``None``: fewer than two loud frames): inside a reply, a stall the caller heard."""
        loud = [at for at, peak in zip(self.times, self.peaks) if start <= at <= end and peak > LOUD]
        return max((b - a for a, b in zip(loud, loud[1:])), default=None)

    def samples(self) -> np.ndarray:
        return np.concatenate(self.audio) if self.audio else np.zeros(0, np.float32)


@dataclass
class TurnResult:
    """One question as the caller experienced it, with the server's per-stage split."""

    answered: bool
    voice_to_voice_s: float | None
    user_text: str = ""
    agent_text: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    longest_quiet_s: float | None = None  # the longest silence inside the reply as heard (a stall, or a pause)


class ParleyClient:
    """Joins a Parley room over its WebSocket, calls with a ``QueueMicrophone``, and records everything it gets.

    Without a ``token`` it asks the server's dev mode for one (``POST /api/v1/dev/token``). It
    answers the server's renegotiation offers and records each incoming track: ``recorder`` is the
    agent's voice, ``recorder_for(participant_id)`` another person's forwarded microphone. In a
    cluster it follows ``redirect`` to the node holding the room (``node_url``); with ``reconnect``
    it rejoins through ``base_url`` when the socket drops (a new peer connection, ``mic`` and
    ``recorder``; ``reconnects`` counts them).
    """

    def __init__(
        self, base_url: str, *, room: str | None = None, token: str | None = None, name: str | None = None,
        identity: str | None = None, keep_audio: bool = False, relay_only: bool = False,
        reconnect: bool = False, reconnect_timeout_s: float = 30.0, microphone: QueueMicrophone | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.room = room
        self.token = token
        self.name = name
        self.identity = identity
        self.keep_audio = keep_audio
        self.relay_only = relay_only  # use only the TURN server from `joined` (iceTransportPolicy relay)
        self.mic = microphone or QueueMicrophone()  # e.g. bench.speakerphone's: it also hears the agent
        self.recorder = AudioRecorder(keep_audio)  # the agent's voice, on our microphone's m-line
        self.mid_recorders: dict[str, AudioRecorder] = {}  # everyone else's audio, by m-line
        self.tracks: dict[str, str] = {}  # mid → participant id, as the server last described it
        self.participant_id: str | None = None
        self.messages: list[dict[str, Any]] = []
        self.pc = RTCPeerConnection()
        self._mic_mid: str | None = None
        self._session: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.renegotiations = 0
        self._negotiated = asyncio.Event()  # server offers wait until our own offer is answered
        self._handlers: dict[str, list[Callable[[dict[str, Any]], None]]] = {}
        self.node_url: str | None = None  # the WebSocket joined (in a cluster, the node holding the room)
        # Rejoin when the socket drops without close() (as the JS SDK does), for up to reconnect_timeout_s.
        self.reconnect = reconnect
        self.reconnect_timeout_s = reconnect_timeout_s
        self.reconnects = 0
        self.reconnected = asyncio.Event()  # set after each successful rejoin
        self._closing = False
        self._reconnecting: asyncio.Task[None] | None = None

    def on(self, kind: str, handler: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
        """Call ``handler(message)`` for every server message of type ``kind`` ("*": all); returns an unsubscribe."""
        self._handlers.setdefault(kind, []).append(handler)
        return lambda: self._handlers[kind].remove(handler)

    def play_wav(self, path: str | Path) -> Playback:
        """Queue a WAV file (any rate, mono or stereo) on the microphone."""
        from parley.core.audio import read_wav, resample

        samples, rate = read_wav(Path(path))
        return self.mic.play(resample(samples, rate, RATE))

    def recorder_for(self, participant_id: str) -> AudioRecorder | None:
        """The recorder of the m-line that carries ``participant_id``'s audio now."""
        mid = next((mid for mid, pid in self.tracks.items() if pid == participant_id), None)
        return self.mid_recorders.get(mid) if mid is not None else None

    def of_type(self, kind: str, since: int = 0) -> list[dict[str, Any]]:
        return [msg for msg in self.messages[since:] if msg.get("type") == kind]

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                data = json.loads(msg.data)
                self.messages.append(data)
                for handler in [*self._handlers.get(str(data.get("type")), ()), *self._handlers.get("*", ())]:
                    handler(data)
                if data.get("type") == "offer":
                    await self._answer_offer(data)
        if ws is self.ws and self.reconnect and not self._closing and self._negotiated.is_set() and self._reconnecting is None:
            self._reconnecting = asyncio.create_task(self._reconnect())

    async def _answer_offer(self, offer: dict[str, Any]) -> None:
        assert self.ws is not None
        await self._negotiated.wait()
        self.tracks = dict(offer.get("tracks", {}))
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type="offer"))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        await self.ws.send_json({"type": "answer", "sdp": self.pc.localDescription.sdp})
        self.renegotiations += 1

    def _on_track(self, track: MediaStreamTrack) -> None:
        mid = next((t.mid for t in self.pc.getTransceivers() if t.receiver.track is track), None)
        if mid is not None and mid == self._mic_mid:
            recorder = self.recorder
        else:
            recorder = self.mid_recorders.setdefault(str(mid), AudioRecorder(self.keep_audio))
        self._tasks.append(asyncio.create_task(recorder.run(track)))

    async def _fetch_dev_token(self) -> str:
        assert self._session is not None
        body = {k: v for k, v in (("room", self.room), ("identity", self.identity), ("name", self.name)) if v}
        async with self._session.post(f"{self.base_url}/api/v1/dev/token", json=body) as response:
            data = await response.json()
            if response.status != 201:
                raise RuntimeError(f"no dev token: {response.status} {data}")
            return str(data["token"])

    async def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float, since: int = 0) -> dict[str, Any]:
        """Return the first message from index ``since`` on that matches, waiting up to ``timeout`` s."""
        deadline = time.monotonic() + timeout
        checked = since
        while True:
            for msg in self.messages[checked:]:
                if predicate(msg):
                    return msg
            checked = max(checked, len(self.messages))
            if time.monotonic() > deadline:
                raise TimeoutError(f"no matching message in {timeout} s; got {[m.get('type') for m in self.messages[since:]]}")
            await asyncio.sleep(0.02)

    async def _join(self, timeout: float) -> dict[str, Any]:
        """Open the WebSocket and join; in a cluster, follow ``redirect`` to the node holding the room."""
        assert self._session is not None
        url = self.base_url.replace("http", "ws", 1) + "/ws" if self.base_url.startswith("http") else self.base_url + "/ws"
        for _ in range(MAX_REDIRECTS + 1):
            since = len(self.messages)
            ws = self.ws = await self._session.ws_connect(f"{url}?token={self.token}")
            self._tasks.append(asyncio.create_task(self._read(ws)))
            await ws.send_json({"type": "join", **({"name": self.name} if self.name else {})})
            reply = await self.wait_for(lambda m: m["type"] in ("joined", "error", "redirect"), timeout, since)
            if reply["type"] != "redirect":
                self.node_url = url
                return reply
            self.ws = None
            await ws.close()
            url = reply["url"]
        raise RuntimeError(f"more than {MAX_REDIRECTS} redirects joining the room")

    async def start(self, timeout: float = 20.0) -> None:
        """Join and complete the offer/answer exchange."""
        self._session = self._session or aiohttp.ClientSession()
        if self.token is None:
            self.token = await self._fetch_dev_token()
        joined = await self._join(timeout)
        if joined["type"] == "error":
            raise RuntimeError(f"join refused: {joined['code']}: {joined['message']}")
        self.participant_id = joined["participant_id"]
        if self.relay_only:
            servers = [RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential"))
                       for s in joined["ice_servers"] if s.get("username")]
            if not servers:
                raise RuntimeError("relay_only, but the server offered no TURN server in `joined`")
            await close_peer(self.pc)
            self.pc = RTCPeerConnection(RTCConfiguration(iceServers=servers, iceTransportPolicy=RTCIceTransportPolicy.RELAY))
        self.pc.on("track", self._on_track)
        self.pc.addTrack(self.mic)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        self._mic_mid = next(t.mid for t in self.pc.getTransceivers() if t.sender.track is self.mic)
        since = len(self.messages)  # after a rejoin, earlier calls' answers are in the log too
        await self.ws.send_json({"type": "offer", "sdp": self.pc.localDescription.sdp})
        answer = await self.wait_for(lambda m: m["type"] in ("answer", "error"), timeout, since)
        if answer["type"] == "error":
            raise RuntimeError(f"offer refused: {answer['code']}: {answer['message']}")
        self.tracks = dict(answer.get("tracks", {}))
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
        self._negotiated.set()

    async def _reconnect(self) -> None:
        """The socket dropped: rejoin through ``base_url`` with a fresh peer connection, with backoff."""
        deadline = time.monotonic() + self.reconnect_timeout_s
        delay = 0.25
        last: BaseException | None = None
        try:
            while not self._closing and time.monotonic() < deadline:
                await close_peer(self.pc)
                self.pc = RTCPeerConnection()
                self.mic = QueueMicrophone()
                self.recorder = AudioRecorder(self.keep_audio)
                self.mid_recorders, self.tracks, self._negotiated = {}, {}, asyncio.Event()
                try:
                    await self.start(timeout=10.0)
                except (aiohttp.ClientError, OSError, RuntimeError, TimeoutError) as exc:
                    if self.ws is not None:
                        await self.ws.close()
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 2.0)
                    last = exc
                    continue
                self.reconnects += 1
                self.reconnected.set()
                return
            if not self._closing:
                self.messages.append({"type": "error", "code": "connection_lost", "message": f"could not rejoin: {last!r}"})
        finally:
            self._reconnecting = None

    def selected_candidate_types(self) -> tuple[str, str] | None:
        """(local, remote) candidate types of the ICE pair in use, e.g. ("relay", "host")."""
        return nominated_pair(self.pc)

    async def ask(self, samples: np.ndarray, timeout: float = 90.0) -> TurnResult:
        """Speak a question and wait until the agent has finished its turn."""
        since = len(self.messages)
        playback = self.mic.play(samples)
        speech_end = await playback.ended
        thinking = await self.wait_for(lambda m: m["type"] == "agent.state" and m["state"] == "thinking", timeout, since)
        after = self.messages.index(thinking, since)
        end = await self.wait_for(lambda m: m["type"] == "agent.state" and m["state"] == "listening", timeout, after)
        ended_at = time.monotonic()
        turn_id = end.get("turn_id")
        users = [m for m in self.of_type("transcript", since) if m["speaker"] == "user"]
        agents = [m for m in self.of_type("transcript", since) if m["speaker"] == "agent" and m["final"]]
        metrics = [m for m in self.of_type("turn.metrics", since) if m["turn_id"] == turn_id]
        heard = self.recorder.first_loud_after(speech_end) if agents else None
        return TurnResult(
            answered=bool(agents) and heard is not None,
            voice_to_voice_s=None if heard is None else heard - speech_end,
            user_text=users[-1]["text"] if users else "",
            agent_text=agents[-1]["text"] if agents else "",
            metrics=metrics[-1] if metrics else {},
            longest_quiet_s=None if heard is None else self.recorder.longest_quiet_between(heard, ended_at + 0.5),
        )

    async def echo_round_trip(self, samples: np.ndarray, timeout: float = 5.0) -> float | None:
        """Against an echo server: time from the clip's first loud sample leaving to its echo arriving."""
        playback = self.mic.play(samples)
        sent = await playback.started
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            heard = self.recorder.first_loud_after(sent)
            if heard is not None:
                await playback.ended
                return heard - sent
            await asyncio.sleep(0.01)
        return None

    async def _release(self) -> None:
        """Close the peer connection, stop every task this client started, close the HTTP session."""
        self._closing = True
        if self._reconnecting is not None:
            self._reconnecting.cancel()
        await close_peer(self.pc)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    async def vanish(self) -> None:
        """Disappear without ``leave``: the socket and the peer connection just drop (a lost phone)."""
        self._closing = True
        if self.ws is not None:
            await self.ws.close()
        await self._release()

    async def close(self) -> None:
        """Leave the room, then release everything."""
        self._closing = True
        if self.ws is not None and not self.ws.closed:
            try:
                await self.ws.send_json({"type": "leave"})
            except ConnectionError:
                pass
            await self.ws.close()
        await self._release()


class ParleyApiError(RuntimeError):
    """A REST call answered with an error: ``status``, and the server's ``code`` and ``message``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"HTTP {status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


class ParleyAdmin:
    """The admin REST API (``/api/v1``, Bearer API key): rooms and join tokens, for your backend."""

    def __init__(self, base_url: str, api_key: str, timeout_s: float = ADMIN_TIMEOUT_S) -> None:
        self.base_url = base_url.rstrip("/")
        self._session = aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {api_key}"}, timeout=aiohttp.ClientTimeout(total=timeout_s),
        )

    async def __aenter__(self) -> "ParleyAdmin":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        async with self._session.request(method, f"{self.base_url}/api/v1{path}", json=body) as response:
            data = await response.json() if response.content_type == "application/json" else None
            if response.status >= 300:
                error = (data or {}).get("error") or {}
                raise ParleyApiError(response.status, error.get("code", "http_error"), error.get("message", ""))
            return data

    async def create_room(self, id: str | None = None, *, agent: dict[str, Any] | None = None,
                          max_participants: int | None = None) -> dict[str, Any]:
        """Create a room (id generated when absent); ``agent`` sets its name, prompt, voice, policy or disables it."""
        body: dict[str, Any] = {k: v for k, v in (("id", id), ("agent", agent), ("max_participants", max_participants)) if v is not None}
        return await self._call("POST", "/rooms", body)

    async def token(self, room: str, identity: str, *, name: str | None = None, ttl_s: int | None = None) -> dict[str, Any]:
        """A join token for ``identity`` in ``room``: ``{"token", "expires_at", "ws_url", …}``."""
        body: dict[str, Any] = {"identity": identity, **({"name": name} if name else {}), **({"ttl_s": ttl_s} if ttl_s else {})}
        return await self._call("POST", f"/rooms/{room}/tokens", body)

    async def room(self, room: str) -> dict[str, Any]:
        return await self._call("GET", f"/rooms/{room}")

    async def rooms(self) -> list[dict[str, Any]]:
        return (await self._call("GET", "/rooms"))["rooms"]

    async def delete_room(self, room: str) -> None:
        """Delete a room; everyone in it is disconnected (``room_closed``)."""
        await self._call("DELETE", f"/rooms/{room}")

    async def nodes(self) -> list[dict[str, Any]]:
        """The nodes serving rooms (a cluster's, or this one), with their URLs and load."""
        return (await self._call("GET", "/nodes"))["nodes"]

    async def close(self) -> None:
        await self._session.close()
