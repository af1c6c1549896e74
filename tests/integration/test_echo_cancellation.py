"""Server-side echo cancellation in real calls, with a speakerphone in software (bench/speakerphone.py):
the caller's microphone hears the agent's voice back, delayed, filtered, attenuated, with room noise."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import aiohttp
import numpy as np
import pytest

from parley.bench.speakerphone import EchoPath, speakerphone_caller, speakerphone_turn
from tests.conftest import serve_app
from tests.support.audio import read_wav, speak_to_wav

pytestmark = pytest.mark.slow
ECHO_LEVELS = [EchoPath(delay_ms=60, gain_db=-6), EchoPath(delay_ms=150, gain_db=-12), EchoPath(delay_ms=250, gain_db=-20)]
REPLIES_PER_LEVEL = 2  # `make bench` asks 20 per level
BARGE_IN_STOPS_WITHIN_S = 1.0  # from the cut-in's first sound leaving the microphone to agent.state paused


@pytest.fixture(scope="module")
def story(audio_dir) -> np.ndarray:
    samples, _ = read_wav(speak_to_wav("Tell me a story about a dragon who learns to fly.", audio_dir / "story.wav"))
    return np.concatenate([samples, np.zeros(24_000, np.float32)])


@pytest.fixture(scope="module")
async def without_aec(settings, models):
    off = settings.model_copy(update={"audio": settings.audio.model_copy(update={"echo_cancellation": "off"})})
    runner, served = await serve_app(off, dataclasses.replace(models, echo_cancellation=False))
    yield served
    await runner.cleanup()


async def _echo_stats(url: str) -> dict:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/stats") as response:
        return (await response.json())["inference"]["echo_cancellation"]


async def test_without_server_aec_a_speakerphone_makes_the_agent_interrupt_itself(without_aec, story):
    """The baseline the canceller is measured against: the same echo, no canceller."""
    caller = speakerphone_caller(without_aec.url, ECHO_LEVELS[0], room="speakerphone-off")
    await caller.start()
    try:
        turns = [await speakerphone_turn(caller, story, window_s=30) for _ in range(1)]
    finally:
        await caller.close()
    assert sum(t.self_interruptions for t in turns) >= 1, turns


async def test_with_server_aec_the_agent_never_interrupts_itself_on_a_speakerphone(parley_app, models, story):
    assert models.echo_cancellation  # audio.echo_cancellation = "auto" and the livekit wheel is installed
    for index, path in enumerate(ECHO_LEVELS):
        caller = speakerphone_caller(parley_app.url, path, room=f"speakerphone-on-{index}")
        await caller.start()
        try:
            turns = [await speakerphone_turn(caller, story) for _ in range(REPLIES_PER_LEVEL)]
        finally:
            await caller.close()
        print(f"echo {path.label()}: {[t.self_interruptions for t in turns]} self-interruptions, "
              f"{[round(t.seconds, 1) for t in turns]} s a turn")
        assert all(t.answered for t in turns), turns
        assert sum(t.self_interruptions for t in turns) == 0, (path, turns)
    stats = await _echo_stats(parley_app.url)
    assert stats["far_blocks"] > 0 and stats["erle_db"] > 15, stats


async def test_a_real_barge_in_over_the_echo_still_stops_the_agent(parley_app, story, audio_dir):
    cut_in = read_wav(speak_to_wav("Stop, what is the capital of France?", audio_dir / "cut_in.wav"))[0]
    caller = speakerphone_caller(parley_app.url, EchoPath(delay_ms=120, gain_db=-10), room="speakerphone-barge")
    await caller.start()
    try:
        since = len(caller.messages)
        caller.mic.play(story)
        await caller.wait_for(lambda m: m["type"] == "agent.state" and m["state"] == "speaking", 60, since)
        await asyncio.sleep(1.5)  # well into the reply, its echo coming back the whole time
        since = len(caller.messages)
        playback = caller.mic.play(cut_in)
        spoke = await playback.started
        await caller.wait_for(lambda m: m["type"] == "agent.state" and m["state"] == "paused", 10, since)
        stopped_after = time.monotonic() - spoke
        interrupted = await caller.wait_for(lambda m: m["type"] == "agent.interrupted", 30, since)
        print(f"barge-in over the echo: the agent stopped {stopped_after * 1000:.0f} ms after the caller began")
        assert stopped_after < BARGE_IN_STOPS_WITHIN_S, stopped_after
        assert interrupted["heard_text"], interrupted
        heard = await caller.wait_for(lambda m: m["type"] == "transcript" and m["speaker"] == "user" and m["final"], 30, since)
        assert "capital" in heard["text"].lower(), heard  # the caller's words, not the agent's echo
    finally:
        await caller.close()
