"""What the benchmark measures: the transport floor, single-call turns, and a concurrency ramp."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp
import numpy as np

from parley.signaling.client import ParleyClient, TurnResult
from parley.bench.questions import RATE, Question
from parley.bench.server_process import cpu_seconds, rss_bytes
from parley.bench.stats import summary

log = logging.getLogger(__name__)
PAUSE_BETWEEN_QUESTIONS_S = 0.5


def _burst() -> np.ndarray:
    """0.2 s of a 700 Hz tone between silences: an onset the echo test can time."""
    t = np.arange(int(0.2 * RATE)) / RATE
    tone = 0.3 * np.sin(2 * np.pi * 700 * t).astype(np.float32)
    return np.concatenate([np.zeros(RATE // 10, np.float32), tone, np.zeros(RATE // 2, np.float32)])


async def transport_floor(url: str, rounds: int = 12) -> dict[str, Any]:
    """Echo round trips (caller → server → caller, no agent), in seconds."""
    caller = ParleyClient(url, room="bench-echo")
    await caller.start()
    trips: list[float] = []
    try:
        await asyncio.sleep(1.0)  # let ICE/DTLS settle and jitter buffers fill
        for _ in range(rounds):
            rtt = await caller.echo_round_trip(_burst())
            if rtt is not None:
                trips.append(rtt)
            await asyncio.sleep(0.4)
    finally:
        await caller.close()
    return {"rounds": rounds, "round_trip_s": summary(trips), "samples_s": trips}


async def _ask(caller: ParleyClient, question: Question, timeout: float) -> TurnResult:
    """Ask one question (a timeout counts as unanswered), then pause as a person would."""
    try:
        result = await caller.ask(question.samples, timeout=timeout)
    except TimeoutError:
        result = TurnResult(answered=False, voice_to_voice_s=None)
    await asyncio.sleep(PAUSE_BETWEEN_QUESTIONS_S)
    return result


async def _ask_all(caller: ParleyClient, questions: list[Question], timeout: float) -> list[TurnResult]:
    return [await _ask(caller, question, timeout) for question in questions]


def turns_report(questions: list[Question], results: list[TurnResult]) -> dict[str, Any]:
    v2v = [r.voice_to_voice_s for r in results if r.answered and r.voice_to_voice_s is not None]
    stages: dict[str, list[float]] = {}
    transport: list[float] = []
    for r in results:
        for key, value in r.metrics.items():
            if key.endswith("_ms") and isinstance(value, (int, float)):
                stages.setdefault(key, []).append(value)
        server = r.metrics.get("first_audio_sent_ms")
        if r.answered and r.voice_to_voice_s is not None and isinstance(server, (int, float)):
            transport.append(r.voice_to_voice_s * 1000 - server)
    return {
        "questions": len(questions),
        "answered": sum(r.answered for r in results),
        "voice_to_voice_s": summary(v2v),
        "stages_ms": {k: summary(v) for k, v in stages.items()},
        "transport_and_client_ms": summary(transport),
        "reply_longest_quiet_s": summary([r.longest_quiet_s for r in results if r.longest_quiet_s is not None]),
        "turns": [
            {"question": q.text, **asdict(r)} for q, r in zip(questions, results)
        ],
    }


async def single_call_turns(url: str, questions: list[Question], timeout: float = 90.0) -> dict[str, Any]:
    """One caller asks every question in turn."""
    caller = ParleyClient(url, room="bench-turns")
    await caller.start()
    try:
        await asyncio.sleep(0.5)
        results = await _ask_all(caller, questions, timeout)
    finally:
        await caller.close()
    return turns_report(questions, results)


async def _ask_paused(caller: ParleyClient, question: Question, timeout: float) -> dict[str, Any]:
    """Speak a question with a pause inside; note whether the agent's voice came before its last word."""
    since = len(caller.messages)
    playback = caller.mic.play(question.samples)
    started = await playback.started
    ended = await playback.ended
    early = caller.recorder.first_loud_after(started)
    premature = early is not None and early < ended
    deadline = time.monotonic() + timeout
    settled_since: float | None = None
    while time.monotonic() < deadline:  # the agent has answered (or given up) and is listening again
        states = [m for m in caller.of_type("agent.state", since)]
        if states and states[-1]["state"] == "listening" and any(m["state"] == "thinking" for m in states):
            settled_since = settled_since or time.monotonic()
            if time.monotonic() - settled_since >= 1.0:
                break
        else:
            settled_since = None
        await asyncio.sleep(0.05)
    finals = [m for m in caller.of_type("transcript", since) if m["speaker"] == "agent" and m["final"]]
    users = [m for m in caller.of_type("transcript", since) if m["speaker"] == "user" and m["final"]]
    lines = {m.get("utterance_id") for m in caller.of_type("transcript", since) if m["speaker"] == "user"}
    heard = caller.recorder.first_loud_after(ended)
    await asyncio.sleep(PAUSE_BETWEEN_QUESTIONS_S)
    return {
        "question": question.text, "premature": premature, "answered": bool(finals) and heard is not None,
        "voice_to_voice_s": None if heard is None else heard - ended,
        "user_lines": [m["text"] for m in users], "caller_lines": len(lines), "agent_text": finals[-1]["text"] if finals else "",
    }


async def paused_question_turns(url: str, questions: list[Question], timeout: float = 40.0) -> dict[str, Any]:
    """One caller asks every paused question; the premature-reply rate is what this set measures."""
    caller = ParleyClient(url, room="bench-paused")
    await caller.start()
    try:
        await asyncio.sleep(0.5)
        turns = [await _ask_paused(caller, question, timeout) for question in questions]
    finally:
        await caller.close()
    return {
        "questions": len(turns), "premature": sum(t["premature"] for t in turns),
        "answered": sum(t["answered"] for t in turns),
        "one_user_line": sum(t["caller_lines"] == 1 for t in turns),
        "voice_to_voice_s": summary(t["voice_to_voice_s"] for t in turns if t["answered"] and not t["premature"]),
        "turns": turns,
    }


async def server_stats(url: str, http: aiohttp.ClientSession | None = None) -> dict[str, Any]:
    """The server's /stats (playout, STT batching, early transcriptions)."""
    if http is None:
        async with aiohttp.ClientSession() as own:
            return await server_stats(url, own)
    async with http.get(f"{url}/stats") as resp:
        return await resp.json()


async def _stats(http: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    """The server's playout counters, plus ``stt_utterances`` / ``stt_passes`` (0 without batching)."""
    body = await server_stats(url, http)
    batching = (body.get("inference") or {}).get("stt_batching") or {}
    return {**body["playout"], "stt_utterances": batching.get("utterances", 0), "stt_passes": batching.get("passes", 0)}


async def _caller_loop(url: str, questions: list[Question], offset: int, deadline: float, timeout: float) -> list[TurnResult]:
    caller = ParleyClient(url, room=f"bench-ramp-{offset}")
    results: list[TurnResult] = []
    try:
        await caller.start()
        await asyncio.sleep(0.5)
        i = offset
        while time.monotonic() < deadline:
            results.append(await _ask(caller, questions[i % len(questions)], timeout))
            i += 1
    finally:
        await caller.close()
    return results


@dataclass
class RampLimits:
    p95_s: float = 3.0
    late_frame_ratio: float = 0.01


@dataclass
class RampStep:
    calls: int
    turns: int
    answered: int
    voice_to_voice_s: dict[str, Any]
    frames_sent: int
    late_frames: int
    resyncs: int
    cpu_percent: float | None
    rss_mb: float | None
    rss_per_call_mb: float | None
    sustained: bool
    stt_utterances: int = 0  # transcriptions (finals and interims) the server ran during the step
    stt_passes: int = 0  # model passes they took (fewer than utterances when calls' utterances were batched)
    reasons: list[str] = field(default_factory=list)


async def capacity_ramp(
    url: str, questions: list[Question], steps: list[int], seconds: float, server_pid: int | None,
    limits: RampLimits = RampLimits(), turn_timeout: float = 30.0,
) -> list[RampStep]:
    """Run 1, 2, 4 … concurrent callers asking questions in a loop; stop at the first step that fails."""
    out: list[RampStep] = []
    idle_rss = rss_bytes(server_pid) if server_pid else None
    async with aiohttp.ClientSession() as http:
        for calls in steps:
            log.info("ramp: %d concurrent call(s) for %.0f s", calls, seconds)
            before = await _stats(http, url)
            cpu0, wall0 = (cpu_seconds(server_pid) if server_pid else None), time.monotonic()
            deadline = time.monotonic() + seconds
            peak_rss = 0
            tasks = []
            for index in range(calls):
                tasks.append(asyncio.create_task(_caller_loop(url, questions, index * 5, deadline, turn_timeout)))
                await asyncio.sleep(0.3)  # stagger joins a little, as real callers would
            while not all(t.done() for t in tasks):
                if server_pid:
                    peak_rss = max(peak_rss, rss_bytes(server_pid))
                await asyncio.wait(tasks, timeout=1.0)
            results = [r for t in tasks for r in t.result()]
            after = await _stats(http, url)
            wall = time.monotonic() - wall0
            cpu = (cpu_seconds(server_pid) - cpu0) / wall * 100 if server_pid and cpu0 is not None else None
            v2v = summary(r.voice_to_voice_s for r in results if r.answered)
            sent = after["frames_sent"] - before["frames_sent"]
            late = after["late_frames"] - before["late_frames"]
            resyncs = after["resyncs"] - before["resyncs"]
            reasons = []
            if v2v["p95"] is None or v2v["p95"] > limits.p95_s:
                reasons.append(f"p95 voice-to-voice {_fmt_s(v2v['p95'])} > {limits.p95_s} s")
            if sent and (late + resyncs) / sent > limits.late_frame_ratio:
                reasons.append(f"{late} late frames and {resyncs} resyncs of {sent} sent")
            if results and sum(r.answered for r in results) < len(results):
                reasons.append(f"{len(results) - sum(r.answered for r in results)} of {len(results)} questions unanswered")
            step = RampStep(
                calls=calls, turns=len(results), answered=sum(r.answered for r in results), voice_to_voice_s=v2v,
                frames_sent=sent, late_frames=late, resyncs=resyncs, cpu_percent=cpu,
                rss_mb=peak_rss / 2**20 if server_pid else None,
                rss_per_call_mb=(peak_rss - idle_rss) / 2**20 / calls if server_pid and idle_rss else None,
                sustained=not reasons, reasons=reasons,
                stt_utterances=after["stt_utterances"] - before["stt_utterances"],
                stt_passes=after["stt_passes"] - before["stt_passes"],
            )
            out.append(step)
            if reasons:
                log.info("ramp stops at %d calls: %s", calls, "; ".join(reasons))
                break
    return out


def _fmt_s(value: float | None) -> str:
    return "none answered" if value is None else f"{value:.2f} s"


async def _knock(url: str, stop: asyncio.Event, every_s: float = 2.0) -> dict[str, int]:
    """Try to start one more agent call (a new room) every ``every_s`` until ``stop``; count the answers."""
    outcomes: dict[str, int] = {}
    n = 0
    while not stop.is_set():
        n += 1
        intruder = ParleyClient(url, room=f"bench-intruder-{n}")
        try:
            await intruder.start()
            outcomes["admitted"] = outcomes.get("admitted", 0) + 1
        except RuntimeError as exc:  # "join refused: busy: …"
            code = str(exc).split(":")[1].strip() if ":" in str(exc) else "refused"
            outcomes[code] = outcomes.get(code, 0) + 1
        finally:
            await intruder.close()
        try:
            await asyncio.wait_for(stop.wait(), every_s)
        except TimeoutError:
            pass
    return outcomes


async def admission_turns(url: str, questions: list[Question], timeout: float = 90.0) -> dict[str, Any]:
    """Admission control at work (a server with agent.capacity 1): one caller asks half the questions
    alone, then the other half while another caller tries to start a second agent call every 2 s."""
    half = max(1, len(questions) // 2)
    caller = ParleyClient(url, room="bench-admitted")
    await caller.start()
    try:
        await asyncio.sleep(0.5)
        alone = await _ask_all(caller, questions[:half], timeout)
        stop = asyncio.Event()
        knocking = asyncio.create_task(_knock(url, stop))
        during = await _ask_all(caller, questions[half:], timeout)
        stop.set()
        outcomes = await knocking
    finally:
        await caller.close()
    return {
        "alone": turns_report(questions[:half], alone), "while_refusing": turns_report(questions[half:], during),
        "join_attempts": outcomes,
    }
