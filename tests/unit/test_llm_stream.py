"""The OpenAI-compatible stream parser against the shapes real servers send, and a real embedded stream."""

import asyncio
import math

import pytest
from aiohttp import web

from parley.agents.llm.base import ChatMessage
from parley.agents.llm.openai_compat import OpenAICompatibleChat, parse_sse_line
from parley.core.errors import BackendError


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('data: {"choices":[{"index":0,"delta":{"role":"assistant"}}]}', None),  # llama.cpp's first chunk
        ('data: {"choices":[{"index":0,"delta":{"content":"Hi"}}]}', "Hi"),
        ('data: {"choices":[],"usage":{"total_tokens":9}}', None),  # vLLM's last chunk
        (": ping - 2025-01-01", None),  # sse-starlette keep-alive
        ("", None),
        ("data: [DONE]", None),
        ("data: {broken", None),
        ('data: {"choices":[{"delta":{"content":null}}]}', None),
    ],
)
def test_parse_sse_line(line, expected):
    assert parse_sse_line(line) == expected


async def _serve(handler, **raw) -> tuple[web.AppRunner, str]:
    """Serve ``handler`` at /v1/chat/completions and each of ``raw`` at /<name> (llama.cpp's own endpoints)."""
    app = web.Application()
    app.router.add_post("/v1/chat/completions", handler)
    for name, raw_handler in raw.items():
        app.router.add_post(f"/{name.replace('_', '-')}", raw_handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    return runner, f"http://127.0.0.1:{port}/v1"


async def test_client_reads_a_vllm_shaped_stream():
    async def handler(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        assert body["stream"] is True and body["messages"][0]["role"] == "system"
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for line in [
            ': ping\n\n', 'data: {"choices":[{"delta":{"role":"assistant"}}]}\n\n',
            'data: {"choices":[{"delta":{"content":"Paris"}}]}\n\n', 'data: {"choices":[{"delta":{"content":"."}}]}\n\n',
            'data: {"choices":[],"usage":{}}\n\n', "data: [DONE]\n\n",
        ]:
            await resp.write(line.encode())
        return resp

    runner, url = await _serve(handler)
    client = OpenAICompatibleChat(url, "m")
    try:
        out = [d async for d in client.stream([ChatMessage(role="system", content="s"), ChatMessage(role="user", content="q")])]
        assert "".join(out) == "Paris."
    finally:
        await client.close()
        await runner.cleanup()


async def test_words_a_prime_evaluated_are_judged_without_asking_again():
    """A prime of the caller's words gets their sentence-end probabilities with the evaluation, so judging
    the same words (same rendered prompt) at the pause sends nothing more; other words are asked."""
    asked: list[str] = []

    async def apply_template(request: web.Request) -> web.Response:
        messages = (await request.json())["messages"]
        return web.json_response({"prompt": "".join(f"<{m['role']}>{m['content']}<end>" for m in messages)})

    async def completion(request: web.Request) -> web.Response:
        body = await request.json()
        asked.append(body["prompt"])
        assert body["n_probs"] > 0 and body["cache_prompt"] is True
        ends = 0.9 if body["prompt"].endswith("France") else 0.001
        top = [{"token": "?", "logprob": math.log(ends)}, {"token": " and", "logprob": math.log(1 - ends)}]
        return web.json_response({"completion_probabilities": [{"top_logprobs": top}]})

    async def unused(request: web.Request) -> web.Response:
        raise AssertionError("no chat request expected")

    runner, url = await _serve(unused, apply_template=apply_template, completion=completion)
    client = OpenAICompatibleChat(url, "m")
    ask = lambda words: [ChatMessage(role="system", content="s"), ChatMessage(role="user", content=words)]  # noqa: E731
    try:
        await client.prime(ask("What is the capital of France"), "What is the capital of France")
        assert asked == ["<system>s<end><user>What is the capital of France"]
        assert await client.sentence_end_probability(ask("What is the capital of France"), "What is the capital of France") == pytest.approx(0.9)
        assert len(asked) == 1  # read from the prime
        assert await client.sentence_end_probability(ask("What is the capital of"), "What is the capital of") == pytest.approx(0.001)
        assert len(asked) == 2 and asked[-1].endswith("capital of")
    finally:
        await client.close()
        await runner.cleanup()


async def test_http_error_becomes_backend_error():
    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"error": "model not found"}, status=404)

    runner, url = await _serve(handler)
    client = OpenAICompatibleChat(url, "wrong")
    try:
        with pytest.raises(BackendError, match="404") as info:
            async for _ in client.stream([ChatMessage(role="user", content="q")]):
                pass
        assert info.value.code == "llm_failed"  # reachable, but refusing: not the same as down
    finally:
        await client.close()
        await runner.cleanup()


async def test_unreachable_server_becomes_backend_error():
    client = OpenAICompatibleChat("http://127.0.0.1:9/v1", "m", timeout_s=3)
    with pytest.raises(BackendError) as info:
        async for _ in client.stream([ChatMessage(role="user", content="q")]):
            pass
    assert info.value.code == "llm_unavailable"
    await client.close()


@pytest.mark.slow
async def test_embedded_llm_streams_a_real_answer(models):
    deltas = []
    messages = [ChatMessage(role="system", content="Answer briefly."), ChatMessage(role="user", content="Say hello.")]
    async for delta in models.llm.stream(messages):
        deltas.append(delta)
    assert len(deltas) >= 2 and any(ch.isalpha() for ch in "".join(deltas))


@pytest.mark.slow
async def test_cancelling_a_stream_leaves_the_server_usable(models):
    messages = [ChatMessage(role="user", content="Count from one to one hundred in words.")]

    started = asyncio.Event()

    async def consume():
        async for _ in models.llm.stream(messages):
            started.set()
            await asyncio.sleep(0.05)  # a slow consumer, like a turn waiting on TTS

    task = asyncio.create_task(consume())
    await asyncio.wait_for(started.wait(), 30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    first = None
    async for delta in models.llm.stream([ChatMessage(role="user", content="Say yes.")]):
        first = delta
        break
    assert first


async def test_a_long_reply_written_at_a_steady_pace_outlives_the_total_timeout():
    """The client's timeout bounds a reply's pace, not its length: 4 tokens 0.4 s apart (1.6 s) with a 1 s
    timeout and 4 tokens allowed (0.5 s a token: 2 s) arrive whole."""

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for word in ("One", " two", " three", " four."):
            await asyncio.sleep(0.4)
            await resp.write(f'data: {{"choices":[{{"delta":{{"content":"{word}"}}}}]}}\n\n'.encode())
        await resp.write(b"data: [DONE]\n\n")
        return resp

    runner, url = await _serve(handler)
    client = OpenAICompatibleChat(url, "m", timeout_s=1.0, max_tokens=4)
    try:
        out = [d async for d in client.stream([ChatMessage(role="user", content="Count.")])]
        assert "".join(out) == "One two three four."
    finally:
        await client.close()
        await runner.cleanup()
