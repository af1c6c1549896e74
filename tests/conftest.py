"""Shared fixtures: real models loaded once per test session, a real server on loopback, spoken questions."""

from __future__ import annotations

import shutil
from types import SimpleNamespace
from pathlib import Path
from typing import AsyncIterator, Callable

import numpy as np
import pytest
from aiohttp import web

from parley.server.config import Settings, hook_settings, load_settings
from parley.core.net import free_loopback_port as free_port
from parley.core import aiortc_hooks
from tests.support import hang_dump
from tests.support.audio import have_espeak, read_wav, speak_to_wav

QUESTION = "What is the capital of France?"
QUESTION_ZH = "请用一句话介绍一下北京。"  # Mandarin; asks for a sentence: a reply long enough to hear back
# Whisper tiny.en on espeak's question after Opus sits on a knife edge at "of France": the same
# utterance gives "of France" or "and friends" when 0.5 s of silence is appended (measured, 2026-11-30).
# A call heard the question if it got its subject and at most that one slip.
QUESTION_MAX_WER = 0.34


def heard_question(text: str) -> bool:
    from tests.support.audio import word_error_rate, words

    return word_error_rate(QUESTION, text) <= QUESTION_MAX_WER and "capital" in words(text)
TEST_API_KEY = "test-admin-key-0001"


def _cuda_devices() -> int:
    try:
        import ctranslate2

        return ctranslate2.get_cuda_device_count()
    except Exception:  # no CUDA runtime at all
        return 0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``gpu`` tests need CUDA: skipped (and counted as skipped, not passed) on machines without it."""
    if _cuda_devices() > 0:
        return
    skip = pytest.mark.skip(reason="needs CUDA (GPU profile); none on this machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):  # type: ignore[no-untyped-def]
    """A hung test prints its asyncio tasks' stacks before pytest-timeout ends it (tests/support/hang_dump.py)."""
    timer = hang_dump.arm(item)
    try:
        return (yield)
    finally:
        if timer is not None:
            timer.cancel()


def make_test_settings() -> Settings:
    """Settings for tests: the smallest LLM (fast, fluent, often wrong) and loopback-only ICE."""
    return load_settings(
        overrides={
            "llm": {"model": "smollm2-135m", "max_tokens": 60}, "ice": {"host_addresses": ["127.0.0.1"]},
            "agent": {"capacity": 16},  # tests run agent rooms side by side; admission has its own tests
            "auth": {"dev_mode": True, "api_key": TEST_API_KEY},
        },
        environ={},
    )


@pytest.fixture(scope="session")
def settings() -> Settings:
    settings = make_test_settings()
    aiortc_hooks.install(hook_settings(settings))  # server and test callers share this process
    return settings


@pytest.fixture(scope="session")
async def models(settings: Settings):
    from parley.agents.runtime import AgentModels

    loaded = await AgentModels.load(settings)
    yield loaded
    await loaded.close()


async def serve_app(settings: Settings, models) -> tuple[web.AppRunner, SimpleNamespace]:
    """Start a real Parley app on a free loopback port; return its runner and ``.url`` / ``.app``."""
    from parley.server.app import create_app

    app = create_app(settings, models)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, SimpleNamespace(url=f"http://127.0.0.1:{port}", app=app)


@pytest.fixture(scope="session")
async def parley_app(settings: Settings, models) -> AsyncIterator[SimpleNamespace]:
    """A real Parley app on loopback: ``.url`` and ``.app``."""
    runner, served = await serve_app(settings, models)
    yield served
    await runner.cleanup()


@pytest.fixture(scope="session")
def server_url(parley_app: SimpleNamespace) -> str:
    return parley_app.url


@pytest.fixture(scope="session")
def audio_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("audio")


@pytest.fixture(scope="session")
def question_samples(audio_dir: Path) -> np.ndarray:
    """The question spoken by espeak-ng at 48 kHz (float32 mono)."""
    if not have_espeak():
        pytest.fail("espeak-ng is missing: `make test` installs it")
    samples, rate = read_wav(speak_to_wav(QUESTION, audio_dir / "question.wav"))
    assert rate == 48_000
    return samples


@pytest.fixture(scope="session")
def speak_zh(settings: Settings) -> Callable[[str], np.ndarray]:
    """Mandarin text → 48 kHz float32 speech in another Kokoro voice than the agent's (jm_kumo, a man's;
    the agent speaks with jf_gongitsune). espeak-ng's Mandarin was tried first: Whisper base heard none of it."""
    from parley.agents.tts.kokoro import KokoroTts
    from parley.agents.weights import kokoro_files
    from parley.core.audio import resample

    tts = KokoroTts(*kokoro_files(settings.cache_dir), "jm_kumo", threads=2)
    return lambda text: resample(tts.synthesize(text), tts.sample_rate, 48_000)


@pytest.fixture(scope="session")
def question_zh(speak_zh: Callable[[str], np.ndarray]) -> np.ndarray:
    """``QUESTION_ZH`` spoken (``speak_zh``), then 0.5 s of silence."""
    return np.concatenate([speak_zh(QUESTION_ZH), np.zeros(24_000, np.float32)])


def need_binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is missing: `make test` installs it")
    return path
