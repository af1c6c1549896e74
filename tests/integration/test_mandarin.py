"""A Mandarin call, offline: a spoken Mandarin question → a simplified-Chinese transcript → a Chinese
reply → Kokoro's voice, which the STT hears back as most of the reply's characters."""

from __future__ import annotations

import asyncio
import dataclasses

import numpy as np
import pytest

from parley.agents.llm.embedded import EmbeddedLlm
from parley.agents.weights import llm_model_path
from parley.core.audio import resample
from parley.signaling.client import ParleyAdmin, ParleyClient
from tests.conftest import TEST_API_KEY, serve_app
from tests.support.cer import character_error_rate, cjk_share

pytestmark = pytest.mark.slow
QUESTION_ZH = "请用一句话介绍一下北京。"  # asks for a sentence: a reply long enough to hear back


@pytest.fixture(scope="module")
async def mandarin(settings, models):
    """A server whose LLM writes Chinese (Qwen2.5 0.5B; the test default SmolLM2 does not)."""
    path = await asyncio.to_thread(llm_model_path, "qwen2.5-0.5b", settings.cache_dir, print)
    llm = await EmbeddedLlm.start(path, log_dir=settings.cache_dir / "logs", threads=2, parallel=2, max_tokens=60)
    chinese = dataclasses.replace(models, llm=llm)
    chinese.voices, chinese.multilingual = {}, None
    runner, served = await serve_app(settings, chinese)
    async with ParleyAdmin(served.url, TEST_API_KEY) as admin:
        room = await admin.create_room("mandarin", agent={"language": "zh"})
        token = (await admin.token("mandarin", "zh-caller"))["token"]
    yield served, room, token, chinese
    await runner.cleanup()
    await llm.close()


def _speech_spans(samples: np.ndarray, rate: int, gap_s: float = 0.3, margin_s: float = 0.1) -> list[tuple[int, int]]:
    """(start, end) of the stretches of sound separated by more than ``gap_s`` of silence."""
    loud = np.flatnonzero(np.abs(samples) > 0.02)
    if not loud.size:
        return []
    breaks = np.flatnonzero(np.diff(loud) > gap_s * rate)
    starts, ends = [loud[0], *loud[breaks + 1]], [*loud[breaks], loud[-1]]
    pad = int(margin_s * rate)
    return [(max(0, a - pad), min(samples.size, b + pad)) for a, b in zip(starts, ends)]


@pytest.fixture(scope="module")
def question_zh(settings) -> np.ndarray:
    """The question in another Kokoro voice than the agent's (jm_kumo, a man's; the agent speaks with
    jf_gongitsune). espeak-ng's Mandarin was tried first: Whisper base heard none of it."""
    from parley.agents.tts.kokoro import KokoroTts
    from parley.agents.weights import kokoro_files

    tts = KokoroTts(*kokoro_files(settings.cache_dir), "jm_kumo", threads=2)
    speech = resample(tts.synthesize(QUESTION_ZH), tts.sample_rate, 48_000)
    return np.concatenate([speech, np.zeros(24_000, np.float32)])


async def test_a_mandarin_call_hears_thinks_and_speaks_chinese(mandarin, question_zh):
    served, room, token, chinese = mandarin
    assert room["agent"]["language"] == "zh" and room["agent"]["voice"].startswith("kokoro:")
    assert "中文" in room["agent"]["system_prompt"]
    caller = ParleyClient(served.url, token=token, keep_audio=True)
    await caller.start()
    try:
        result = await caller.ask(question_zh, timeout=90)
        print(f"heard {result.user_text!r}, answered {result.agent_text!r}")

        assert result.answered, caller.messages[-10:]
        assert character_error_rate(QUESTION_ZH, result.user_text) <= 0.4, result.user_text
        assert "北京" in result.user_text and not any(ch in result.user_text for ch in "國個對這話紹"), result.user_text
        assert cjk_share(result.agent_text) >= 0.8, result.agent_text  # a Chinese reply
        await asyncio.sleep(1.0)
        heard = caller.recorder.samples()
        loud = np.flatnonzero(np.abs(heard) > 0.02)
        assert loud.size, "no agent audio"
        # The reply arrives chunk by chunk with silences between (Kokoro is slower than real time here):
        # hear each stretch of speech on its own, as the caller does.
        back = ""
        for start, end in _speech_spans(heard, 48_000):
            back += await chinese.transcribe(resample(heard[start:end], 48_000, 16_000), "zh")
        cer = character_error_rate(result.agent_text, back)
        print(f"the agent's voice heard back as {back!r} (CER {cer:.2f})")
        assert cer <= 0.5, (result.agent_text, back)
    finally:
        await caller.close()


async def test_an_english_room_on_the_same_server_stays_english(mandarin, question_samples):
    served, _, _, _ = mandarin
    caller = ParleyClient(served.url, room="english-beside-mandarin")
    await caller.start()
    try:
        result = await caller.ask(question_samples, timeout=90)
        assert result.answered and "capital" in result.user_text.lower(), result.user_text
        assert cjk_share(result.agent_text) < 0.2, result.agent_text
    finally:
        await caller.close()


async def test_without_the_mandarin_weights_zh_rooms_are_refused_and_english_ones_are_not(settings, models):
    missing = settings.model_copy(update={"stt": settings.stt.model_copy(update={"multilingual_model": "/nonexistent/whisper"})})
    lacking = dataclasses.replace(models, settings=missing)
    lacking.voices, lacking.multilingual = {}, None
    runner, served = await serve_app(missing, lacking)
    try:
        async with ParleyAdmin(served.url, TEST_API_KEY) as admin:
            with pytest.raises(Exception) as refused:
                await admin.create_room("zh-without-weights", agent={"language": "zh"})
            assert "nonexistent" in str(refused.value) and "language" in str(refused.value), refused.value
            created = await admin.create_room("en-without-zh-weights")
            assert created["agent"]["language"] == "en"
    finally:
        await runner.cleanup()


def test_a_zh_server_without_its_weights_stops_at_start_with_exit_3(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "PARLEY_CONFIG": "", "PARLEY_AGENT__LANGUAGE": "zh", "PARLEY_LLM__MODEL": "smollm2-135m",
           "PARLEY_STT__MULTILINGUAL_MODEL": str(tmp_path / "no-such-whisper")}
    result = subprocess.run([str(Path(sys.executable).parent / "parley"), "models"], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 3, result.stderr[-2000:]
    assert "STT for zh" in result.stderr and "no-such-whisper" in result.stderr, result.stderr[-2000:]
