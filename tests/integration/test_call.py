"""A real aiortc caller on loopback asks a spoken question; the agent must hear it and answer by voice."""

import asyncio

import numpy as np
import pytest

from parley.signaling.client import ParleyClient
from parley.core.audio import resample
from tests.conftest import QUESTION, heard_question, serve_app
from tests.support.audio import word_error_rate, words

pytestmark = pytest.mark.slow
METRIC_FIELDS = (
    "endpoint_wait_ms", "stt_ms", "llm_first_token_ms", "llm_first_chunk_ms",
    "tts_first_audio_ms", "playout_wait_ms", "first_audio_sent_ms",
)


def loud_seconds(samples: np.ndarray, rate: int = 48_000, threshold: float = 0.02) -> float:
    blocks = samples[: samples.size - samples.size % (rate // 100)].reshape(-1, rate // 100)
    return float((np.abs(blocks).max(axis=1) > threshold).sum()) / 100


async def test_spoken_question_gets_a_spoken_answer(server_url, question_samples, models):
    caller = ParleyClient(server_url, room="test-one", keep_audio=True)
    await caller.start()
    try:
        result = await caller.ask(question_samples, timeout=60)
    finally:
        await caller.close()

    assert heard_question(result.user_text), result.user_text
    finals = [m["final"] for m in caller.of_type("transcript") if m["speaker"] == "user"]
    assert finals[-1] is True and finals.count(True) == 1  # interim transcripts first, one final
    assert result.answered and result.agent_text.strip()

    metrics = caller.of_type("turn.metrics")
    assert len(metrics) == 1
    for field in METRIC_FIELDS:
        assert isinstance(metrics[0][field], (int, float)) and metrics[0][field] >= 0, field
    states = [m["state"] for m in caller.of_type("agent.state")]
    assert states == ["user_speaking", "thinking", "speaking", "listening"]

    agent_audio = caller.recorder.samples()
    assert loud_seconds(agent_audio) >= 0.5
    heard = models.stt.transcribe(resample(agent_audio, 48_000, 16_000))
    assert len(words(heard)) >= 2, (heard, result.agent_text)
    assert result.voice_to_voice_s is not None and result.voice_to_voice_s > 0  # the answer follows the question


async def test_two_calls_at_once_both_get_answers(server_url, question_samples):
    callers = [ParleyClient(server_url, room=f"test-two-{i}", keep_audio=True) for i in range(2)]
    try:
        for caller in callers:
            await caller.start()
        results = await asyncio.gather(*(c.ask(question_samples, timeout=90) for c in callers))
    finally:
        for caller in callers:
            await caller.close()
    assert all(r.answered for r in results)
    ids = [c.of_type("joined")[0]["participant_id"] for c in callers]
    assert len(set(ids)) == 2
    for caller, pid in zip(callers, ids):
        joined = caller.of_type("joined")[0]
        agent = [p["participant_id"] for p in joined["participants"] if p["kind"] == "agent"]
        assert len(agent) == 1 and joined["participants"][0]["kind"] == "agent"
        # Each room's agent answers its own caller; nobody sees the other room's turns.
        assert {m["participant_id"] for m in caller.of_type("transcript")} == {pid, agent[0]}
        assert loud_seconds(caller.recorder.samples()) >= 0.5


@pytest.fixture
async def app_url(settings, models):
    """Start another app on loopback with modified settings; yields a factory."""
    runners = []

    async def start(**agent_overrides) -> str:
        custom = settings.model_copy(update={"agent": settings.agent.model_copy(update=agent_overrides)})
        runner, served = await serve_app(custom, None if agent_overrides.get("mode") == "echo" else models)
        runners.append(runner)
        return served.url

    yield start
    for runner in runners:
        await runner.cleanup()


async def test_naive_baseline_pipeline_also_answers(app_url, question_samples):
    """The benchmark's baseline (1 s STT chunks, TTS after the whole reply) is a working pipeline too."""
    caller = ParleyClient(await app_url(pipeline="naive"), keep_audio=True)
    await caller.start()
    try:
        result = await caller.ask(question_samples, timeout=60)
    finally:
        await caller.close()
    assert result.answered, caller.messages
    assert word_error_rate(QUESTION, result.user_text) <= 0.4, result.user_text  # chunk edges cut words
    assert len([m for m in caller.of_type("transcript") if m["speaker"] == "agent"]) == 2  # one chunk + final
    assert loud_seconds(caller.recorder.samples()) >= 0.5


async def test_echo_mode_sends_the_callers_audio_back(app_url, question_samples):
    caller = ParleyClient(await app_url(mode="echo"), keep_audio=True)
    await caller.start()
    try:
        rtt = await caller.echo_round_trip(question_samples, timeout=5)
        await asyncio.sleep(0.5)
    finally:
        await caller.close()
    assert rtt is not None and rtt > 0
    echoed = caller.recorder.samples()
    assert loud_seconds(echoed) >= 0.5 * loud_seconds(question_samples)
    assert not caller.of_type("transcript")  # no agent in echo mode
