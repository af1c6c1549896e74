"""Shared fixtures: real models loaded once per test session, a real server on loopback, spoken questions."""

from __future__ import annotations

import shutil
from types import SimpleNamespace
from pathlib import Path
from typing import AsyncIterator

import numpy as np
import pytest
from aiohttp import web

from parley.server.config import Settings, load_settings
from parley.server.ports import free_loopback_port as free_port
from parley.server.ice import use_host_addresses
from parley.server.jitter import use_audio_jitter_prefetch
from tests.support.audio import have_espeak, read_wav, speak_to_wav

QUESTION = "What is the capital of France?"
TEST_API_KEY = "test-admin-key"


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


def make_test_settings() -> Settings:
    """Settings for tests: the smallest LLM (fast, fluent, often wrong) and loopback-only ICE."""
    return load_settings(
        overrides={
            "llm": {"model": "smollm2-135m", "max_tokens": 60}, "ice": {"host_addresses": ["127.0.0.1"]},
            "auth": {"dev_mode": True, "api_key": TEST_API_KEY},
        },
        environ={},
    )


@pytest.fixture(scope="session")
def settings() -> Settings:
    use_host_addresses(["127.0.0.1"])
    settings = make_test_settings()
    use_audio_jitter_prefetch(settings.media.audio_jitter_prefetch)  # server and test callers share this process
    return settings


@pytest.fixture(scope="session")
async def models(settings: Settings):
    from parley.agents.runtime import AgentModels

    loaded = await AgentModels.load(settings)
    yield loaded
    await loaded.close()


async def serve_app(settings: Settings, models) -> tuple[web.AppRunner, SimpleNamespace]:
    """Start a real Parley app on a free loopback port; return its runner and ``.url`` / ``.app``."""
    from parley.signaling.app import create_app

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


def need_binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is missing: `make test` installs it")
    return path
