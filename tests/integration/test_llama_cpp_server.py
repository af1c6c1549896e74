"""The OpenAI-compatible LLM backend against a real ``llama_cpp.server`` over HTTP: streaming, a whole
call, and barge-in closing the HTTP stream. (The GPU profile talks to vLLM through the same client.)"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util

import pytest

from parley.agents.llm.base import ChatMessage
from parley.agents.llm.openai_compat import OpenAICompatibleChat
from parley.agents.runtime import _load_llm
from parley.agents.weights import llm_model_path
from parley.signaling.client import ParleyClient
from tests.conftest import heard_question, serve_app
from tests.support.audio import read_wav, speak_to_wav
from tests.support.llama_server import LlamaCppServer, start_llama_cpp_server

pytestmark = pytest.mark.slow
DISCONNECTED = "Disconnected from client"  # what llama_cpp.server prints when a client closes a stream


@pytest.fixture(scope="module")
def llama_server(settings, tmp_path_factory) -> LlamaCppServer:
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.fail("llama-cpp-python is missing: `make test` builds and installs llama-cpp-python[server]")
    model = llm_model_path(settings.llm.model, settings.cache_dir)
    # One thread: slow enough that a long reply is still being generated when the caller cuts in.
    server = start_llama_cpp_server(model, tmp_path_factory.mktemp("llama") / "server.log", threads=1)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def openai_settings(settings, llama_server):
    return settings.model_copy(update={
        "llm": settings.llm.model_copy(update={"backend": "openai", "url": llama_server.url, "max_tokens": 300}),
    })


async def test_stream_from_llama_cpp_server(llama_server):
    chat = OpenAICompatibleChat(llama_server.url, "smollm2", max_tokens=40)
    try:
        deltas = [d async for d in chat.stream([ChatMessage(role="user", content="Say hello to Ada.")])]
    finally:
        await chat.close()
    assert len(deltas) >= 2 and "".join(deltas).strip()  # streamed in pieces, not one blob


async def test_closing_the_stream_stops_generation_on_the_server(llama_server):
    chat = OpenAICompatibleChat(llama_server.url, "smollm2", max_tokens=400)
    before = llama_server.log().count(DISCONNECTED)
    stream = chat.stream([ChatMessage(role="user", content="Write a very long story about a dragon.")])
    try:
        got = [await anext(stream) for _ in range(3)]
        await stream.aclose()
        assert all(got)
        assert await asyncio.to_thread(llama_server.wait_for_log, DISCONNECTED, before), (
            "the server kept generating after the client closed the stream"
        )
        # The server is free again at once: the next request answers.
        again = [d async for d in chat.stream([ChatMessage(role="user", content="Say yes.")])]
        assert "".join(again).strip()
    finally:
        await chat.close()


@pytest.fixture(scope="module")
async def llama_app(openai_settings, models):
    llm = await _load_llm(openai_settings)  # the same factory `parley serve` uses for llm.backend = "openai"
    assert isinstance(llm, OpenAICompatibleChat)
    via_http = dataclasses.replace(models, llm=llm)
    via_http.voices = {}
    runner, served = await serve_app(openai_settings, via_http)
    yield served
    await runner.cleanup()
    await llm.close()


async def test_a_call_answered_through_llama_cpp_server(llama_app, llama_server, question_samples):
    requests_before = llama_server.log().count("POST /v1/chat/completions")
    caller = ParleyClient(llama_app.url, room="via-llama-cpp", keep_audio=True)
    await caller.start()
    try:
        result = await caller.ask(question_samples, timeout=90)
    finally:
        await caller.close()
    assert heard_question(result.user_text), result.user_text
    assert result.answered and result.agent_text.strip()
    assert llama_server.log().count("POST /v1/chat/completions") > requests_before  # it really went over HTTP


async def test_barge_in_closes_the_llm_stream(llama_app, llama_server, audio_dir):
    story = read_wav(speak_to_wav("Tell me a very long story about a dragon.", audio_dir / "story.wav"))[0]
    cut_in = read_wav(speak_to_wav("Stop, what is the capital of France?", audio_dir / "cut_in.wav"))[0]
    disconnects_before = llama_server.log().count(DISCONNECTED)
    caller = ParleyClient(llama_app.url, room="via-llama-cpp-barge", keep_audio=True)
    await caller.start()
    try:
        caller.mic.play(story)
        await caller.wait_for(lambda m: m["type"] == "agent.state" and m["state"] == "speaking", 60)
        await asyncio.sleep(1.0)
        caller.mic.play(cut_in)
        interrupted = await caller.wait_for(lambda m: m["type"] == "agent.interrupted", 15)
        # Checked while the caller is still in the call: hanging up would close the stream anyway.
        closed_by_barge_in = await asyncio.to_thread(llama_server.wait_for_log, DISCONNECTED, disconnects_before)
    finally:
        await caller.close()
    assert interrupted["heard_text"] is not None
    assert closed_by_barge_in, "barge-in did not close the HTTP stream of the reply being generated"


def _pool_settings(settings, urls: list[str]):
    return settings.model_copy(update={
        "llm": settings.llm.model_copy(update={"backend": "openai", "urls": urls, "max_tokens": 40, "pool_retry_after_s": 30}),
    })


async def test_a_pool_sends_turns_past_a_dead_backend_and_sets_it_aside(settings, llama_server, models, question_samples):
    from parley.agents.llm.pool import LlmPool
    from parley.core.net import free_loopback_port

    dead = f"http://127.0.0.1:{free_loopback_port()}/v1"  # nothing listens there
    pool = await _load_llm(_pool_settings(settings, [dead, llama_server.url]))
    assert isinstance(pool, LlmPool)
    via_pool = dataclasses.replace(models, llm=pool)
    via_pool.voices = {}
    requests_before = llama_server.log().count("POST /v1/chat/completions")
    runner, served = await serve_app(_pool_settings(settings, [dead, llama_server.url]), via_pool)
    caller = ParleyClient(served.url, room="via-llm-pool")
    try:
        await caller.start()
        for _ in range(2):
            result = await caller.ask(question_samples, timeout=90)
            assert result.answered and result.agent_text.strip(), result
        assert not [m for m in caller.messages if m["type"] == "error"], caller.messages
    finally:
        await caller.close()
        await runner.cleanup()
        await pool.close()
    dead_backend, live_backend = pool.backends
    assert dead_backend.failures == 1  # tried once, then set aside: the second turn went straight to the live one
    assert live_backend.failures == 0
    assert llama_server.log().count("POST /v1/chat/completions") >= requests_before + 2


async def test_a_pool_spreads_replies_and_fails_only_when_every_backend_is_dead(llama_server):
    from parley.agents.llm.pool import LlmPool
    from parley.core.errors import BackendError
    from parley.core.net import free_loopback_port

    # Two entries for one real server: a reply in progress on one sends the next to the other.
    pool = LlmPool([OpenAICompatibleChat(llama_server.url, "smollm2", max_tokens=200) for _ in range(2)])
    long = pool.stream([ChatMessage(role="user", content="Write a long story about a dragon.")])
    try:
        assert await anext(long)
        busy = [b for b in pool.backends if b.outstanding == 1]
        assert len(busy) == 1
        short = [d async for d in pool.stream([ChatMessage(role="user", content="Say yes.")])]
        assert "".join(short).strip()
        assert pool.order()[0] is not busy[0]  # the idle one comes first
    finally:
        await long.aclose()
        await pool.close()
    assert all(b.outstanding == 0 for b in pool.backends)

    dead = LlmPool([OpenAICompatibleChat(f"http://127.0.0.1:{free_loopback_port()}/v1", "m") for _ in range(2)])
    try:
        with pytest.raises(BackendError) as failed:
            async for _ in dead.stream([ChatMessage(role="user", content="Hello?")]):
                pass
        assert failed.value.code == "llm_unavailable"
        assert all(b.failures == 1 for b in dead.backends)
        assert (await dead.health()).status == "unreachable"
    finally:
        await dead.close()
