"""A real Python aiortc caller for tests: plays a WAV as its microphone and records the agent's audio."""

from __future__ import annotations

import asyncio
import fractions
import json
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import av
import numpy as np
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

RATE = 48_000
FRAME = 960


class WavMicrophone(MediaStreamTrack):
    """Sends ``lead_s`` of silence, the clip, then silence forever, paced in real time."""

    kind = "audio"

    def __init__(self, samples: np.ndarray, lead_s: float = 0.5) -> None:
        super().__init__()
        lead = np.zeros(int(lead_s * RATE), np.float32)
        self._pcm = (np.clip(np.concatenate([lead, samples]), -1, 1) * 32767).astype(np.int16)
        self._speech_end_sample = self._pcm.size
        self._sent = 0
        self._start: float | None = None
        self.speech_end_at: float | None = None  # wall time the last speech sample left

    async def recv(self) -> av.AudioFrame:
        if self._start is None:
            self._start = time.monotonic()
        due = self._start + self._sent / RATE
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        chunk = self._pcm[self._sent : self._sent + FRAME]
        if chunk.size < FRAME:
            chunk = np.concatenate([chunk, np.zeros(FRAME - chunk.size, np.int16)])
        frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = self._sent
        frame.time_base = fractions.Fraction(1, RATE)
        self._sent += FRAME
        if self.speech_end_at is None and self._sent >= self._speech_end_sample:
            self.speech_end_at = time.monotonic()
        return frame


@dataclass
class CallRecording:
    messages: list[dict[str, Any]] = field(default_factory=list)
    audio: list[np.ndarray] = field(default_factory=list)
    first_loud_at: float | None = None

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [msg for msg in self.messages if msg.get("type") == kind]

    def samples(self) -> np.ndarray:
        return np.concatenate(self.audio) if self.audio else np.zeros(0, np.float32)


async def _record(track: MediaStreamTrack, recording: CallRecording) -> None:
    resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
    try:
        while True:
            frame = await track.recv()
            for out in resampler.resample(frame):
                pcm = out.to_ndarray().reshape(-1).astype(np.float32) / 32768.0
                if recording.first_loud_at is None and np.abs(pcm).max() > 0.02:
                    recording.first_loud_at = time.monotonic()
                recording.audio.append(pcm)
    except MediaStreamError:
        pass


class TestCaller:
    """Joins over the WebSocket, offers a call with ``WavMicrophone``, records messages and agent audio."""

    __test__ = False

    def __init__(self, base_url: str, samples: np.ndarray) -> None:
        self.base_url = base_url
        self.mic = WavMicrophone(samples)
        self.recording = CallRecording()
        self.pc = RTCPeerConnection()
        self._session: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def _read(self) -> None:
        assert self.ws is not None
        async for msg in self.ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                self.recording.messages.append(json.loads(msg.data))

    async def wait_for(self, predicate, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for msg in self.recording.messages:
                if predicate(msg):
                    return msg
            await asyncio.sleep(0.05)
        raise TimeoutError(f"no matching message in {timeout} s; got {[m.get('type') for m in self.recording.messages]}")

    async def start(self) -> None:
        self._session = aiohttp.ClientSession()
        self.ws = await self._session.ws_connect(f"{self.base_url}/ws")
        self._tasks.append(asyncio.create_task(self._read()))
        await self.ws.send_json({"type": "join", "room": "test"})
        await self.wait_for(lambda m: m["type"] == "joined", 10)

        @self.pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            self._tasks.append(asyncio.create_task(_record(track, self.recording)))

        self.pc.addTrack(self.mic)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        await self.ws.send_json({"type": "offer", "sdp": self.pc.localDescription.sdp})
        answer = await self.wait_for(lambda m: m["type"] == "answer", 15)
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))

    async def close(self) -> None:
        if self.ws is not None and not self.ws.closed:
            await self.ws.send_json({"type": "leave"})
            await self.ws.close()
        await self.pc.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
