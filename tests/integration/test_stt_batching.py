"""Cross-call STT batching with the real Whisper model: right text for every call, fewer passes than calls."""

from __future__ import annotations

import asyncio

import aiohttp
import numpy as np
import pytest

from parley.agents.stt.batching import SttBatcher
from parley.signaling.client import ParleyClient
from parley.core.audio import resample
from tests.conftest import serve_app
from tests.support.audio import read_wav, speak_to_wav, word_error_rate

pytestmark = pytest.mark.slow
# tiny.en on espeak speech, one at a time: 0 errors on these sentences; after Opus, the endpointer,
# a batch or a hotword prompt it sometimes shifts a word ("the train" → "that rain", 2 of 6). A mix-up
# between calls or garbage costs far more: each text must also be nearer its own sentence than any other.
MAX_WER = 0.4


def assert_own_text(index: int, text: str) -> None:
    own = word_error_rate(SENTENCES[index], text)
    assert own <= MAX_WER, (SENTENCES[index], text)
    assert all(own < word_error_rate(other, text) for j, other in enumerate(SENTENCES) if j != index), text
SENTENCES = (  # ones tiny.en gets right from espeak one at a time, so a wrong text means a mix-up
    "What is the weather like in Paris tomorrow?",
    "What is the capital of France?",
    "What time does the train leave?",
    "Remind me to call my mother.",
)


@pytest.fixture(scope="module")
def spoken(audio_dir) -> list[np.ndarray]:
    """The sentences at 48 kHz."""
    return [read_wav(speak_to_wav(text, audio_dir / f"batch{i}.wav"))[0] for i, text in enumerate(SENTENCES)]


@pytest.fixture(scope="module")
def ending_together(spoken) -> list[np.ndarray]:
    """The sentences padded in front with silence so that all of them end at the same moment."""
    longest = max(c.size for c in spoken) + 48_000 // 2
    return [np.concatenate([np.zeros(longest - c.size, np.float32), c]) for c in spoken]


async def test_concurrent_utterances_share_a_model_pass(models, spoken):
    assert models.stt_batcher is not None, "the default faster-whisper backend batches"
    batcher = SttBatcher(models.stt, models.executor, window_s=0.05, max_batch=8)
    utterances = [resample(c, 48_000, 16_000) for c in spoken]
    texts = await asyncio.gather(*(batcher.transcribe(u, "en", None) for u in utterances))
    for i, text in enumerate(texts):
        assert_own_text(i, text)
    assert batcher.stats.passes == 1 and batcher.stats.largest_batch == len(SENTENCES)
    # Different prompts (a hotword) cannot share CTranslate2's decode: two groups, two passes, right texts.
    mixed = await asyncio.gather(*(batcher.transcribe(u, "en", "Parley" if i % 2 else None) for i, u in enumerate(utterances)))
    assert batcher.stats.passes == 3
    for i, text in enumerate(mixed):
        assert_own_text(i, text)
    await batcher.close()


async def test_calls_ending_utterances_together_are_transcribed_in_fewer_passes(settings, models, ending_together):
    # No interim transcripts here, so that every pass counted is a final utterance's.
    quiet = settings.model_copy(update={"vad": settings.vad.model_copy(update={"interim_interval_s": 0.0})})
    runner, served = await serve_app(quiet, models)
    callers = [ParleyClient(served.url, room=f"batch-{i}") for i in range(len(SENTENCES))]
    try:
        await asyncio.gather(*(c.start() for c in callers))
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{served.url}/stats") as response:
                before = (await response.json())["inference"]["stt_batching"]
            for caller, clip in zip(callers, ending_together):
                caller.mic.play(clip)
            finals = await asyncio.gather(*(
                c.wait_for(lambda m: m["type"] == "transcript" and m["speaker"] == "user" and m["final"], 60)
                for c in callers
            ))
            async with http.get(f"{served.url}/stats") as response:
                after = (await response.json())["inference"]["stt_batching"]
    finally:
        await asyncio.gather(*(c.close() for c in callers))
        await runner.cleanup()

    for i, final in enumerate(finals):
        assert_own_text(i, final["text"])  # each call gets its own utterance's text
    utterances = after["utterances"] - before["utterances"]
    passes = after["passes"] - before["passes"]
    assert utterances == len(SENTENCES), (before, after)
    assert passes < utterances, (before, after)


async def test_model_passes_leave_the_event_loop_free(models, spoken):
    """A batch of Whisper passes (seconds of compute) runs off the loop: 20 ms timers keep their pace.

    The bound is loose on purpose (this is not a benchmark): a pass run on the loop would stall it
    for the whole pass, 0.3 s or more per utterance here.
    """
    utterances = [resample(c, 48_000, 16_000) for c in spoken] * 2
    lags: list[float] = []

    async def ticker(stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            started = loop.time()
            await asyncio.sleep(0.02)
            lags.append(loop.time() - started - 0.02)

    stop = asyncio.Event()
    ticking = asyncio.create_task(ticker(stop))
    texts = await asyncio.gather(*(models.transcribe(u, "en") for u in utterances))
    stop.set()
    await ticking
    assert all(texts) and len(lags) >= 20, (texts, len(lags))
    assert max(lags) < 0.15, f"the event loop stalled {max(lags) * 1000:.0f} ms while models ran"
