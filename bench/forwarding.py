"""The SFU's own cost: rooms of people (no agent) whose Opus packets the server forwards, stream by stream.

Each person plays speech in a loop; each hears the others. The server's CPU over a window, less
its idle CPU, divided by the forwarded streams, is the CPU per forwarded stream. Receivers count
frames and the longest gap, so a server that cannot keep up shows it.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import time
from typing import Any

import av
import numpy as np
from aiortc.codecs.opus import OpusDecoder, OpusEncoder
from aiortc.jitterbuffer import JitterFrame

from parley.signaling.client import ParleyAdmin, ParleyClient
from parley.bench.server_process import cpu_by_process

log = logging.getLogger(__name__)
FRAME = 960


async def _cpu_percent(pid: int, seconds: float) -> float:
    return (await _cpu_split(pid, seconds))[0]


async def _cpu_split(pid: int, seconds: float) -> tuple[float, float, float]:
    """Over ``seconds``: the server tree's CPU, its busiest process's, and this (load generator) process's, in %."""
    before, own0, wall0 = cpu_by_process(pid), time.process_time(), time.monotonic()
    await asyncio.sleep(seconds)
    after, own1, wall = cpu_by_process(pid), time.process_time(), time.monotonic() - wall0
    spent = {p: after[p] - before.get(p, 0.0) for p in after}
    return sum(spent.values()) / wall * 100, max(spent.values(), default=0.0) / wall * 100, (own1 - own0) / wall * 100


async def forwarding_step(
    url: str, api_key: str, pid: int, people: int, room_size: int, clip: np.ndarray, seconds: float, idle_cpu: float,
) -> dict[str, Any]:
    """``people`` callers in rooms of ``room_size``; measure the server while they all talk."""
    rooms = max(1, people // room_size)
    callers: list[ParleyClient] = []
    async with ParleyAdmin(url, api_key) as admin:
        ids = []
        for r in range(rooms):
            room = await admin.create_room(agent={"enabled": False})
            ids.append(room["id"])
            for p in range(room_size):
                token = await admin.token(room["id"], f"r{r}p{p}")
                caller = ParleyClient(url, token=token["token"])
                await caller.start()
                callers.append(caller)
        try:
            deadline = time.monotonic() + 20
            while any(len(c.tracks) < room_size - 1 for c in callers) and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            loops = int(np.ceil((seconds + 4) * 48_000 / clip.size))
            for caller in callers:
                caller.mic.play(np.tile(clip, loops))
            await asyncio.sleep(2.0)
            start = time.monotonic()
            counts0 = [sum(len(r.times) for r in c.mid_recorders.values()) for c in callers]
            cpu, busiest, client_cpu = await _cpu_split(pid, seconds)
            elapsed = time.monotonic() - start
            counts1 = [sum(len(r.times) for r in c.mid_recorders.values()) for c in callers]
            gaps = []
            for caller in callers:
                for recorder in caller.mid_recorders.values():
                    t = np.array([x for x in recorder.times if start <= x <= start + elapsed])
                    if t.size > 1:
                        gaps.append(float(np.diff(t).max()))
        finally:
            for caller in callers:
                await caller.close()
            for room_id in ids:
                await admin.delete_room(room_id)
    streams = rooms * room_size * (room_size - 1)
    received = sum(b - a for a, b in zip(counts0, counts1))
    step = {
        "people": rooms * room_size, "rooms": rooms, "room_size": room_size, "forwarded_streams": streams,
        "server_cpu_percent": cpu, "cpu_per_stream_percent": max(0.0, cpu - idle_cpu) / streams,
        "busiest_process_cpu_percent": busiest, "load_generator_cpu_percent": client_cpu,
        "frames_per_stream_per_s": received / streams / elapsed, "max_gap_ms": max(gaps) * 1000 if gaps else None,
    }
    log.info("forwarding: %d streams, server %.1f %% CPU, %.2f %% per stream, %.1f frames/s per stream, max gap %s ms",
             streams, cpu, step["cpu_per_stream_percent"], step["frames_per_stream_per_s"], step["max_gap_ms"])
    return step


def codec_costs(frames: int = 500) -> dict[str, float]:
    """Opus encode and decode time per 20 ms frame in this process (what forwarding avoids)."""
    encoder, decoder = OpusEncoder(), OpusDecoder()
    t = np.arange(frames * FRAME) / 48_000
    pcm = (np.sin(2 * np.pi * 220 * t) * 8000).astype(np.int16)
    packets: list[tuple[bytes, int]] = []
    started = time.perf_counter()
    for i in range(frames):
        frame = av.AudioFrame.from_ndarray(pcm[i * FRAME : (i + 1) * FRAME].reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = 48_000, i * FRAME, fractions.Fraction(1, 48_000)
        payloads, timestamp = encoder.encode(frame)
        packets += [(p, timestamp) for p in payloads]
    encode_ms = (time.perf_counter() - started) * 1000 / frames
    started = time.perf_counter()
    for payload, timestamp in packets:
        decoder.decode(JitterFrame(data=payload, timestamp=timestamp))
    decode_ms = (time.perf_counter() - started) * 1000 / max(1, len(packets))
    return {
        "encode_ms_per_frame": encode_ms, "decode_ms_per_frame": decode_ms,
        # A decode + re-encode per forwarded stream (an MCU), in % of one core: 50 frames/s.
        "transcode_percent_per_stream": (encode_ms + decode_ms) * 50 / 10,
        # The agent's voice is encoded once per room, whatever the number of listeners.
        "agent_voice_percent_per_room": encode_ms * 50 / 10,
    }


async def forwarding_ramp(
    url: str, api_key: str, pid: int, clip: np.ndarray, steps: list[int], room_size: int = 2, seconds: float = 10.0,
) -> dict[str, Any]:
    """Idle CPU, then each step of ``steps`` people; stops early if a step loses frames."""
    idle = await _cpu_percent(pid, 3.0)
    out: list[dict[str, Any]] = []
    for people in steps:
        step = await forwarding_step(url, api_key, pid, people, room_size, clip, seconds, idle)
        out.append(step)
        if step["frames_per_stream_per_s"] < 45 or (step["max_gap_ms"] or 0) > 200:
            log.info("forwarding ramp stops at %d people: frames are being lost or late", people)
            break
    return {"idle_cpu_percent": idle, "steps": out, "codec": codec_costs()}
