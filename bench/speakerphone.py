"""A speakerphone in software: a caller whose microphone hears its own questions **and** the agent's
voice it receives, delayed, filtered, attenuated and with room noise — what a phone on a table or a
laptop without headphones sends back when its own echo canceller misses. With it the bench and the
tests count how often the agent interrupts itself, with and without the server's echo cancellation."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import av
import numpy as np

from parley.signaling.client import FRAME, RATE, ParleyClient, QueueMicrophone


@dataclass(frozen=True)
class EchoPath:
    """Loudspeaker → room → microphone."""

    delay_ms: float = 120.0  # on top of the network's own
    gain_db: float = -10.0
    noise_db: float = -55.0  # room noise, dBFS
    reflection_ms: float = 25.0  # a wall a little further away
    reflection_gain: float = 0.3

    def label(self) -> str:
        return f"{self.gain_db:+.0f} dB, {self.delay_ms:.0f} ms"


class SpeakerphoneMicrophone(QueueMicrophone):
    """Plays queued clips like ``QueueMicrophone``, plus whatever ``hear`` was given, through an ``EchoPath``."""

    def __init__(self, path: EchoPath, seed: int = 0) -> None:
        super().__init__()
        self.path = path
        self._line = np.zeros(int(path.delay_ms * RATE / 1000), np.float32)  # what the loudspeaker played, delayed
        self._tail = np.zeros(int(path.reflection_ms * RATE / 1000) + 12, np.float32)
        self._rng = np.random.default_rng(seed)

    def hear(self, pcm: np.ndarray) -> None:
        """The caller's loudspeaker plays this (48 kHz float32): it reaches the microphone after the echo path."""
        path = self.path
        joined = np.concatenate([self._tail, pcm.astype(np.float32)])
        smoothed = np.convolve(joined, np.ones(12, np.float32) / 12, mode="full")[: joined.size]  # a small speaker: no highs
        bounce = int(path.reflection_ms * RATE / 1000)
        echo = smoothed[self._tail.size :] + path.reflection_gain * smoothed[self._tail.size - bounce : joined.size - bounce]
        self._tail = joined[-self._tail.size :]
        self._line = np.concatenate([self._line, echo * 10 ** (path.gain_db / 20)])

    async def recv(self) -> av.AudioFrame:
        frame = await super().recv()
        own = frame.to_ndarray().reshape(-1).astype(np.float32) / 32768.0
        echo = self._line[:FRAME]
        self._line = self._line[FRAME:]
        mixed = own + np.pad(echo, (0, FRAME - echo.size)) + self._rng.standard_normal(FRAME).astype(np.float32) * 10 ** (self.path.noise_db / 20)
        out = av.AudioFrame.from_ndarray((np.clip(mixed, -1, 1) * 32767).astype(np.int16).reshape(1, -1), format="s16", layout="mono")
        out.sample_rate, out.pts, out.time_base = frame.sample_rate, frame.pts, frame.time_base
        return out


def speakerphone_caller(base_url: str, path: EchoPath, **kwargs: Any) -> ParleyClient:
    """A ``ParleyClient`` whose microphone is a speakerphone next to its own loudspeaker."""
    mic = SpeakerphoneMicrophone(path)
    client = ParleyClient(base_url, microphone=mic, **kwargs)
    client.recorder.listeners.append(mic.hear)
    return client


@dataclass
class SpeakerphoneTurn:
    answered: bool  # the agent spoke a reply and went back to listening within the window
    self_interruptions: int  # times the agent stopped (paused or was interrupted) with only its echo to hear
    agent_text: str
    seconds: float


def count_stops(messages: list[dict[str, Any]]) -> int:
    """Times the agent stopped talking (``paused``, or ``agent.interrupted``) once it had begun."""
    stops, stopped, begun = 0, False, False
    for message in messages:
        kind, state = message.get("type"), message.get("state")
        if kind == "agent.state" and state == "speaking":
            begun, stopped = True, False
        elif begun and ((kind == "agent.state" and state == "paused") or kind == "agent.interrupted"):
            stops += 0 if stopped else 1  # a pause and the interruption that follows it are one stop
            stopped = True
    return stops


async def speakerphone_turn(client: ParleyClient, question: np.ndarray, window_s: float = 60.0) -> SpeakerphoneTurn:
    """Ask once, then say nothing more: watch the agent for up to ``window_s`` (an agent that keeps
    interrupting itself never gets back to listening) and count how often it stopped."""
    since = len(client.messages)
    started = time.monotonic()
    await client.mic.play(question).ended
    deadline = started + window_s
    back = False
    while time.monotonic() < deadline:
        turn = client.messages[since:]
        speaking = next((i for i, m in enumerate(turn) if m.get("type") == "agent.state" and m.get("state") == "speaking"), None)
        if speaking is not None and any(m.get("type") == "agent.state" and m.get("state") == "listening" for m in turn[speaking:]):
            back = True
            break
        await asyncio.sleep(0.05)
    # The echo of the reply's last words is still arriving; and the next question starts only once the
    # canceller's hold window (0.5 s after the agent's last sound) is over, so that its ERLE is measured
    # on echo alone, not on the caller's next words (a canceller must leave those as they are).
    await asyncio.sleep(0.8)
    turn = client.messages[since:]
    replies = [m["text"] for m in turn if m.get("type") == "transcript" and m.get("speaker") == "agent" and m.get("final")]
    return SpeakerphoneTurn(back and bool(replies), count_stops(turn), replies[-1] if replies else "", time.monotonic() - started)


LEVELS = [EchoPath(delay_ms=60, gain_db=-6), EchoPath(delay_ms=150, gain_db=-12), EchoPath(delay_ms=250, gain_db=-20)]


async def speakerphone_run(
    url: str, pid: int | None, questions: list[np.ndarray], replies: int, window_s: float, room_prefix: str,
) -> dict[str, Any]:
    """``replies`` questions on a speakerphone at each echo level; self-interruptions, answers, server CPU."""
    from parley.bench.scenarios import server_stats
    from parley.bench.server_process import cpu_seconds

    out: dict[str, Any] = {"levels": []}
    cpu0, wall0 = (cpu_seconds(pid) if pid else 0.0), time.monotonic()
    for index, path in enumerate(LEVELS):
        caller = speakerphone_caller(url, path, room=f"{room_prefix}-{index}")
        await caller.start()
        turns = []
        try:
            for n in range(replies):
                turns.append(await speakerphone_turn(caller, questions[n % len(questions)], window_s))
        finally:
            await caller.close()
        out["levels"].append({
            "echo": path.label(), "gain_db": path.gain_db, "delay_ms": path.delay_ms, "replies": len(turns),
            "answered": sum(t.answered for t in turns), "self_interruptions": sum(t.self_interruptions for t in turns),
            "turns_with_self_interruption": sum(1 for t in turns if t.self_interruptions),
        })
    if pid:
        out["server_cpu_percent"] = (cpu_seconds(pid) - cpu0) / (time.monotonic() - wall0) * 100
    out["echo_cancellation"] = (await server_stats(url)).get("inference", {}).get("echo_cancellation")
    return out


async def barge_in_over_echo(url: str, question: np.ndarray, cut_in: np.ndarray, tries: int) -> dict[str, Any]:
    """A real barge-in spoken over the echo, ``tries`` times: from the cut-in's first sound to ``paused``.
    ``question`` should ask for a long reply; a try whose reply was over before the cut-in began counts
    as neither a stop nor a miss (``reply_over``)."""
    from parley.bench.stats import summary

    stops: list[float] = []
    missed = reply_over = 0
    caller = speakerphone_caller(url, EchoPath(delay_ms=120, gain_db=-10), room="speakerphone-barge-in")
    await caller.start()
    try:
        for _ in range(tries):
            since = len(caller.messages)
            caller.mic.play(question)
            await caller.wait_for(lambda m: m["type"] == "agent.state" and m["state"] == "speaking", 60, since)
            await asyncio.sleep(1.5)  # well into the reply, its echo coming back the whole time
            since = len(caller.messages)
            spoke = await caller.mic.play(cut_in).started
            try:
                stopped = await caller.wait_for(lambda m: m["type"] == "agent.state" and m["state"] in ("paused", "listening"), 5, since)
                if stopped["state"] == "paused":
                    stops.append(time.monotonic() - spoke)
                else:
                    reply_over += 1
            except TimeoutError:
                missed += 1
            await caller.wait_for(lambda m: m["type"] == "agent.state" and m["state"] == "listening", 90, since)
    finally:
        await caller.close()
    return {"stop_s": summary(stops), "missed": missed, "reply_over": reply_over, "tries": tries}
