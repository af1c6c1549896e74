"""A real aiortc caller on loopback asks a spoken question; the agent must hear it and answer by voice."""

import numpy as np
import pytest

from parley.server.audio import resample
from tests.conftest import QUESTION
from tests.support.audio import word_error_rate, words
from tests.support.client import TestCaller

pytestmark = pytest.mark.slow
METRIC_FIELDS = (
    "endpoint_wait_ms", "stt_ms", "llm_first_token_ms", "llm_first_chunk_ms",
    "tts_first_audio_ms", "playout_wait_ms", "first_audio_sent_ms",
)


def loud_seconds(samples: np.ndarray, rate: int = 48_000, threshold: float = 0.02) -> float:
    blocks = samples[: samples.size - samples.size % (rate // 100)].reshape(-1, rate // 100)
    return float((np.abs(blocks).max(axis=1) > threshold).sum()) / 100


async def test_spoken_question_gets_a_spoken_answer(server_url, question_samples, models):
    caller = TestCaller(server_url, question_samples)
    await caller.start()
    try:
        user = await caller.wait_for(lambda m: m["type"] == "transcript" and m["speaker"] == "user", 30)
        done = await caller.wait_for(lambda m: m["type"] == "transcript" and m["speaker"] == "agent" and m["final"], 60)
    finally:
        await caller.close()
    recording = caller.recording

    assert user["final"] is True
    assert word_error_rate(QUESTION, user["text"]) <= 0.2, user["text"]
    assert done["text"].strip()

    metrics = recording.of_type("turn.metrics")
    assert len(metrics) == 1
    for field in METRIC_FIELDS:
        assert isinstance(metrics[0][field], (int, float)) and metrics[0][field] >= 0, field
    states = [m["state"] for m in recording.of_type("agent.state")]
    assert states[:3] == ["thinking", "speaking", "listening"]

    agent_audio = recording.samples()
    assert loud_seconds(agent_audio) >= 0.5
    heard = models.stt.transcribe(resample(agent_audio, 48_000, 16_000))
    assert len(words(heard)) >= 2, heard
    assert recording.first_loud_at is not None and caller.mic.speech_end_at is not None
    assert recording.first_loud_at > caller.mic.speech_end_at  # the answer follows the question


async def test_two_calls_at_once_both_get_answers(server_url, question_samples):
    callers = [TestCaller(server_url, question_samples) for _ in range(2)]
    try:
        for caller in callers:
            await caller.start()
        for caller in callers:
            await caller.wait_for(lambda m: m["type"] == "transcript" and m["speaker"] == "agent" and m["final"], 90)
    finally:
        for caller in callers:
            await caller.close()
    ids = {c.recording.of_type("joined")[0]["participant_id"] for c in callers}
    assert len(ids) == 2
    for caller in callers:
        assert {m["participant_id"] for m in caller.recording.of_type("transcript")} == {caller.recording.of_type("joined")[0]["participant_id"]}
        assert loud_seconds(caller.recording.samples()) >= 0.5
