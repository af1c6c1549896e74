"""A failing STT, TTS or LLM costs one turn: a typed error, back to listening, the call and other calls go on."""

import asyncio
import dataclasses

import pytest
from aiohttp import web

from parley.agents.llm.openai_compat import OpenAICompatibleChat
from parley.signaling.client import ParleyClient
from tests.conftest import free_port, serve_app

pytestmark = pytest.mark.slow


class Faults:
    """Which backend fails now, and how."""

    def __init__(self) -> None:
        self.stt = self.tts = False
        self.llm: str | None = None  # None, "down" (connection refused) or "hang" (accepts, never answers)


class FlakyStt:
    def __init__(self, real, faults: Faults) -> None:
        self.real, self.faults, self.name = real, faults, real.name

    def transcribe(self, samples, language=None, hotwords=None):
        if self.faults.stt:
            raise RuntimeError("injected STT failure")
        return self.real.transcribe(samples, language, hotwords)

    def transcribe_batch(self, requests):  # the batched path (cross-call batching) fails the same way
        if self.faults.stt:
            raise RuntimeError("injected STT failure")
        return self.real.transcribe_batch(requests)


class FlakyTts:
    def __init__(self, real, faults: Faults) -> None:
        self.real, self.faults, self.name, self.sample_rate = real, faults, real.name, real.sample_rate

    def synthesize(self, text):
        if self.faults.tts:
            raise RuntimeError("injected TTS failure")
        return self.real.synthesize(text)


class SwitchableLlm:
    """The real embedded LLM, or a real HTTP client pointed at a dead or a hanging endpoint."""

    def __init__(self, real, faults: Faults, down_url: str, hang_url: str) -> None:
        self.real, self.faults, self.name = real, faults, real.name
        self.down = OpenAICompatibleChat(down_url, "x", timeout_s=2)
        self.hang = OpenAICompatibleChat(hang_url, "x", timeout_s=2)

    def stream(self, messages):
        return {"down": self.down, "hang": self.hang}.get(self.faults.llm, self.real).stream(messages)

    async def close(self) -> None:
        await self.down.close()
        await self.hang.close()


@pytest.fixture(scope="module")
async def hanging_llm():
    async def never(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(3600)
        return web.Response()

    app = web.Application()
    app.router.add_post("/v1/chat/completions", never)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}/v1"
    await runner.cleanup()


@pytest.fixture(scope="module")
async def flaky(settings, models, hanging_llm):
    faults = Faults()
    llm = SwitchableLlm(models.llm, faults, f"http://127.0.0.1:{free_port()}/v1", hanging_llm)
    flaky_models = dataclasses.replace(models, stt=FlakyStt(models.stt, faults), tts=FlakyTts(models.tts, faults), llm=llm)
    flaky_models.voices = {}
    runner, served = await serve_app(settings, flaky_models)
    yield faults, served.url
    await runner.cleanup()
    await llm.close()


async def _ask_expecting_error(caller: ParleyClient, samples, code: str) -> dict:
    since = len(caller.messages)
    caller.mic.play(samples)
    error = await caller.wait_for(lambda m: m["type"] == "error", 60, since)
    assert error["code"] == code, error
    await caller.wait_for(lambda m: m["type"] == "agent.state" and m["state"] == "listening", 30, since)
    return error


@pytest.mark.parametrize(
    ("fault", "code"),
    [("stt", "stt_failed"), ("tts", "tts_failed"), ("llm-down", "llm_unavailable"), ("llm-hang", "llm_unavailable")],
)
async def test_a_failing_backend_costs_one_turn(flaky, question_samples, fault, code):
    faults, url = flaky
    caller, bystander = ParleyClient(url, room=f"faulty-{fault}"), ParleyClient(url, room=f"bystander-{fault}")
    await caller.start()
    await bystander.start()
    try:
        await asyncio.sleep(0.5)
        if fault == "stt":
            faults.stt = True
        elif fault == "tts":
            faults.tts = True
        else:
            faults.llm = fault.removeprefix("llm-")
        try:
            error = await _ask_expecting_error(caller, question_samples, code)
        finally:
            faults.stt = faults.tts = False
            faults.llm = None
        assert error["message"]
        # The call is still up, nobody else saw the failure, and the next turn works.
        assert caller.pc.connectionState == "connected" and not caller.ws.closed
        assert bystander.pc.connectionState == "connected" and not bystander.of_type("error")
        result = await caller.ask(question_samples, timeout=60)
        assert result.answered, caller.messages[-10:]
    finally:
        await caller.close()
        await bystander.close()
