"""``Reply`` against the server's real paced playout track: an LLM slower than speech does not leave the
caller in silence mid-sentence (a fake LLM and voice: this is the logic of when words go to the voice)."""

from __future__ import annotations

import asyncio
import time

import numpy as np

from parley.agents.reply import Reply
from parley.agents.reply_turn import Turn
from parley.agents.stage_timer import TurnTimer
from parley.core.audio import WEBRTC_RATE
from parley.server.playout import PlayoutTrack

VOICE_RATE = 24_000
SECONDS_PER_WORD = 0.25  # the fake voice speaks a word in this long


async def _synthesize(text: str) -> np.ndarray:
    return np.full(int(len(text.split()) * SECONDS_PER_WORD * VOICE_RATE), 0.2, np.float32)


async def _slow_llm():
    """Four words at once, then a long sentence at 6 words a second (slower than the first chunk plays out)."""
    yield "The capital of France"
    for word in " is Paris, a city of art and light and food and more than two million people who live there.".split(" ")[1:]:
        await asyncio.sleep(1 / 6)
        yield " " + word


async def _played(reply: Reply, playout: PlayoutTrack, stream) -> None:
    """Run ``reply`` on ``stream`` while a player takes ``playout``'s frames as aiortc's sender does."""

    async def play() -> None:  # a frame every 20 ms
        while True:
            await playout.recv()

    player = asyncio.create_task(play())
    try:
        await asyncio.wait_for(reply.run(stream), 20)
    finally:
        player.cancel()


async def test_words_go_to_the_voice_before_the_audio_queued_runs_out():
    playout = PlayoutTrack()
    pushes: list[tuple[int, int]] = []  # (samples still queued when a chunk arrived, its end)
    push = playout.push

    def watched_push(samples: np.ndarray) -> int:
        queued = playout.buffer.pushed - playout.buffer.played
        end = push(samples)
        pushes.append((queued, end))
        return end

    playout.push = watched_push  # type: ignore[method-assign]
    now = time.monotonic()
    turn = Turn(1, TurnTimer(1, now, now), "What is the capital of France?")
    reply = Reply(turn, playout, _synthesize, VOICE_RATE, lambda event: None, lambda turn: None, first_chunk_max_words=4)
    await _played(reply, playout, _slow_llm())
    assert len(pushes) >= 3, pushes  # the long sentence did not wait for its full stop
    # Every chunk after the first arrived while the one before still played: no silence mid-reply.
    assert all(queued > 0 for queued, _ in pushes[1:]), [(q / WEBRTC_RATE, e) for q, e in pushes]
    assert turn.reply.strip().endswith("live there.")
    said = " ".join(turn.reply[s.raw_start:s.raw_end].strip() for s in turn.segments)
    assert said.split() == turn.reply.split()  # every word spoken once, in order


async def test_the_first_chunk_is_voiced_a_token_ahead_and_used_only_for_its_own_text():
    """The first chunk's synthesis starts on the token before its release; a guess the next token proved
    wrong ("eigh" + "t") is not used, and the right one is not synthesized twice."""
    calls: list[str] = []

    async def synthesize(text: str) -> np.ndarray:
        calls.append(text)
        return np.full(VOICE_RATE // 2 + len(text), 0.2, np.float32)  # half a second, told apart by its length

    async def llm():
        for delta in ["Spiders", " have", " eigh", "t", " legs", ".", " Each", " ends", " in", " a", " claw", "."]:
            await asyncio.sleep(0.01)
            yield delta

    playout = PlayoutTrack()
    now = time.monotonic()
    turn = Turn(1, TurnTimer(1, now, now), "How many legs does a spider have?")
    reply = Reply(turn, playout, synthesize, VOICE_RATE, lambda event: None, lambda turn: None, first_chunk_max_words=3)
    await _played(reply, playout, llm())
    assert calls == ["Spiders have eigh", "Spiders have eight", "legs.", "Each ends in a claw."]
    first = turn.segments[0]
    assert turn.reply[first.raw_start:first.raw_end] == "Spiders have eight"
    assert first.end - first.start == (VOICE_RATE // 2 + len("Spiders have eight")) * WEBRTC_RATE // VOICE_RATE
