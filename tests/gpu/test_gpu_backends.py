"""The GPU profile's engines on real hardware. Skipped without CUDA (CI has none).

Point them at the engines with PARLEY_GPU_STT_MODEL (a CTranslate2 Whisper directory; default
tiny.en from PyPI), PARLEY_GPU_LLM_URL (vLLM's /v1) and PARLEY_GPU_TTS_URL (a Fish Speech server).
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor

import pytest

from parley.agents.llm.base import ChatMessage
from parley.agents.llm.openai_compat import OpenAICompatibleChat
from parley.agents.stt.batching import SttBatcher
from parley.agents.stt.faster_whisper import FasterWhisperStt
from parley.agents.tts.fish_speech import FishSpeechTts
from parley.agents.weights import whisper_model_dir
from parley.core.audio import resample
from tests.conftest import QUESTION
from tests.support.audio import word_error_rate

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def cuda_whisper(settings) -> FasterWhisperStt:
    model = whisper_model_dir(os.environ.get("PARLEY_GPU_STT_MODEL", "tiny.en"), settings.cache_dir)
    return FasterWhisperStt(model, device="cuda", compute_type="float16")


async def test_whisper_on_cuda_batches_calls_in_one_pass(cuda_whisper, question_samples):
    utterance = resample(question_samples, 48_000, 16_000)
    with ThreadPoolExecutor(2) as pool:
        batcher = SttBatcher(cuda_whisper, pool, window_s=0.01, max_batch=32)
        texts = await asyncio.gather(*(batcher.transcribe(utterance, "en") for _ in range(16)))
        await batcher.close()
    assert all(word_error_rate(QUESTION, t) <= 0.2 for t in texts), texts
    assert batcher.stats.passes == 1


async def test_vllm_streams_a_reply():
    url = os.environ.get("PARLEY_GPU_LLM_URL") or pytest.skip("PARLEY_GPU_LLM_URL is not set")
    chat = OpenAICompatibleChat(url, os.environ.get("PARLEY_GPU_LLM_MODEL", "Qwen/Qwen3-8B"),
                                extra_body={"chat_template_kwargs": {"enable_thinking": False}})
    try:
        deltas = [d async for d in chat.stream([ChatMessage(role="user", content="Say hello.")])]
    finally:
        await chat.close()
    assert "".join(deltas).strip() and "<think>" not in "".join(deltas)


def test_fish_speech_speaks():
    url = os.environ.get("PARLEY_GPU_TTS_URL") or pytest.skip("PARLEY_GPU_TTS_URL is not set")
    audio = FishSpeechTts(url).synthesize("Hello, how can I help you today?")
    assert audio.size > 0.5 * 44_100
