"""The cross-call STT batcher's logic, with a recording stand-in engine (the real model is tested in
tests/integration/test_stt_batching.py)."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from parley.agents.stt.base import BatchSpeechToText, SttRequest
from parley.agents.stt.batching import SttBatcher


class RecordingEngine:
    """Returns each request's first sample as text; records the batches it was given."""

    def __init__(self, seconds_per_pass: float = 0.05, fail: bool = False) -> None:
        self.batches: list[list[SttRequest]] = []
        self.seconds_per_pass = seconds_per_pass
        self.fail = fail
        self.passes = 0
        self.gate = threading.Event()
        self.gate.set()

    def transcribe_batch(self, requests):
        self.gate.wait(5)
        self.batches.append(list(requests))
        self.passes += 1
        time.sleep(self.seconds_per_pass)
        if self.fail:
            raise RuntimeError("engine broke")
        return [f"utterance {int(r.samples[0])}" for r in requests]


def utterance(n: int) -> np.ndarray:
    return np.full(160, float(n), dtype=np.float32)


@pytest.fixture
def executor():
    with ThreadPoolExecutor(2) as pool:
        yield pool


def test_the_engine_protocol_is_recognised():
    assert isinstance(RecordingEngine(), BatchSpeechToText)
    assert not isinstance(object(), BatchSpeechToText)


async def test_utterances_within_the_window_share_one_pass(executor):
    engine = RecordingEngine()
    batcher = SttBatcher(engine, executor, window_s=0.05, max_batch=8)
    texts = await asyncio.gather(*(batcher.transcribe(utterance(i), "en", None) for i in range(5)))
    assert texts == [f"utterance {i}" for i in range(5)]  # each caller gets its own text back
    assert len(engine.batches) == 1 and len(engine.batches[0]) == 5
    assert batcher.stats.utterances == 5 and batcher.stats.passes == 1 and batcher.stats.largest_batch == 5
    await batcher.close()


async def test_max_batch_splits_and_late_arrivals_queue_behind_a_running_pass(executor):
    engine = RecordingEngine(seconds_per_pass=0.2)
    batcher = SttBatcher(engine, executor, window_s=0.0, max_batch=3)
    first = asyncio.ensure_future(batcher.transcribe(utterance(0)))
    await asyncio.sleep(0.05)  # the first pass (alone: window 0) is running now
    rest = [asyncio.ensure_future(batcher.transcribe(utterance(i))) for i in range(1, 6)]
    texts = await asyncio.gather(first, *rest)
    assert texts == [f"utterance {i}" for i in range(6)]
    assert [len(b) for b in engine.batches] == [1, 3, 2]  # continuous batching, capped at max_batch
    await batcher.close()


async def test_a_failed_pass_fails_its_callers_and_the_next_pass_runs(executor):
    engine = RecordingEngine(fail=True)
    batcher = SttBatcher(engine, executor, window_s=0.02)
    results = await asyncio.gather(*(batcher.transcribe(utterance(i)) for i in range(2)), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)
    engine.fail = False
    assert await batcher.transcribe(utterance(7)) == "utterance 7"
    await batcher.close()


async def test_a_caller_that_gives_up_is_left_out_of_the_pass(executor):
    engine = RecordingEngine()
    engine.gate.clear()  # hold the first pass so the others queue
    batcher = SttBatcher(engine, executor, window_s=0.0, max_batch=8)
    first = asyncio.ensure_future(batcher.transcribe(utterance(0)))
    await asyncio.sleep(0.05)
    gives_up = asyncio.ensure_future(batcher.transcribe(utterance(1)))
    stays = asyncio.ensure_future(batcher.transcribe(utterance(2)))
    await asyncio.sleep(0.01)
    gives_up.cancel()
    engine.gate.set()
    assert await first == "utterance 0" and await stays == "utterance 2"
    assert [[int(r.samples[0]) for r in b] for b in engine.batches] == [[0], [2]]
    await batcher.close()
