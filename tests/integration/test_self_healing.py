"""Self-healing and honest under load: the LLM child is restarted, a crash loop is reported, admission
control says `busy`, and a SIGTERM drains calls before the process exits 0."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from parley.agents.llm.embedded import EmbeddedLlm, RestartPolicy
from parley.agents.weights import llm_model_path
from parley.server.app import drain
from parley.signaling.client import ParleyAdmin, ParleyClient
from tests.conftest import TEST_API_KEY, free_port, serve_app

pytestmark = pytest.mark.slow


CHILD_NICE = 5


async def _own_llm(settings, policy: RestartPolicy) -> EmbeddedLlm:
    path = await asyncio.to_thread(llm_model_path, settings.llm.model, settings.cache_dir, print)
    return await EmbeddedLlm.start(path, log_dir=settings.cache_dir / "logs", threads=1, parallel=2,
                                   max_tokens=settings.llm.max_tokens, nice=CHILD_NICE, policy=policy)


def _niced(pid: int | None) -> bool:
    """Whether the LLM child ``pid`` runs CHILD_NICE nicer than this process (llm.nice)."""
    assert pid is not None
    return os.getpriority(os.PRIO_PROCESS, pid) == min(19, os.getpriority(os.PRIO_PROCESS, 0) + CHILD_NICE)


async def _readyz(url: str) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}/readyz") as response:
            return response.status, await response.json()


async def test_a_killed_llm_child_costs_one_turn_and_is_restarted(settings, models, question_samples):
    llm = await _own_llm(settings, RestartPolicy(first_delay_s=0.2))
    healed = dataclasses.replace(models, llm=llm)
    healed.voices = {}
    runner, served = await serve_app(settings, healed)
    caller = ParleyClient(served.url, room="llm-killed")
    try:
        await caller.start()
        assert (await caller.ask(question_samples, timeout=60)).answered
        assert (await _readyz(served.url))[0] == 200
        first_pid = llm.pid
        assert _niced(first_pid)
        since = len(caller.messages)
        playback = caller.mic.play(question_samples)
        # Killed as the question ends: its words are judged and answered from the pause on (~0.1–0.3 s
        # later). Not at "thinking": the turn may end (500 ms of silence, words that read whole) after the
        # test's fast LLM has already written the whole reply.
        await asyncio.wait_for(playback.ended, 60)
        os.kill(first_pid, signal.SIGKILL)
        seen: list[int] = []
        error = await caller.wait_for(lambda m: m["type"] == "error", 60, since)
        assert error["code"] == "llm_unavailable", error
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            status, body = await _readyz(served.url)
            seen.append(status)
            if status == 503:
                assert body["llm"]["status"] in ("restarting", "ready") and body["reasons"], body
            if status == 200 and 503 in seen:
                break
            await asyncio.sleep(0.1)
        assert 503 in seen and seen[-1] == 200, seen
        assert llm.restarts == 1 and llm.pid not in (None, first_pid)
        assert _niced(llm.pid)  # the restarted child is as nice as the first
        await caller.wait_for(lambda m: m["type"] == "agent.state" and m["state"] == "listening", 30, since)
        result = await caller.ask(question_samples, timeout=60)  # the same call, after the restart
        assert result.answered, caller.messages[-8:]
        assert caller.pc.connectionState == "connected"
    finally:
        await caller.close()
        await runner.cleanup()
        await llm.close()


async def test_a_crash_loop_stops_the_restarts_and_readyz_says_why(settings, models, tmp_path: Path):
    llm = await _own_llm(settings, RestartPolicy(max_restarts=2, window_s=60, first_delay_s=0.1, max_delay_s=0.2))
    # From now on the child dies at start: its model file is gone.
    llm._launch = dataclasses.replace(llm._launch, model_path=tmp_path / "gone.gguf")
    crashing = dataclasses.replace(models, llm=llm)
    crashing.voices = {}
    runner, served = await serve_app(settings, crashing)
    try:
        os.kill(llm.pid, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while (await llm.health()).status != "failed":
            assert time.monotonic() < deadline, await llm.health()
            await asyncio.sleep(0.2)
        health = await llm.health()
        assert health.restarts == 0 and "3 times" in health.detail and "restarts stopped" in health.detail, health
        status, body = await _readyz(served.url)
        assert status == 503 and not body["ready"] and body["llm"]["status"] == "failed", body
        assert any("restarts stopped" in reason for reason in body["reasons"]), body
        await asyncio.sleep(1.0)
        assert (await llm.health()).status == "failed"  # it stays stopped: no more children
        with pytest.raises(Exception, match="restarts stopped"):
            llm.stream([])
    finally:
        await runner.cleanup()
        await llm.close()


async def test_admission_refuses_one_agent_too_many_with_busy(settings, models, question_samples):
    one = settings.model_copy(update={"agent": settings.agent.model_copy(update={"capacity": 1})})
    runner, served = await serve_app(one, models)
    first, second = ParleyClient(served.url, room="admitted"), ParleyClient(served.url, room="turned-away")
    people = None
    try:
        await first.start()
        with pytest.raises(RuntimeError, match="join refused: busy"):
            await second.start()
        [busy] = second.of_type("error")
        assert busy["retry_after_s"] == one.agent.retry_after_s, busy
        # A people-only room is not the agent's capacity.
        async with ParleyAdmin(served.url, TEST_API_KEY) as admin:
            await admin.create_room("people-only", agent={"enabled": False})
            token = (await admin.token("people-only", "u-1"))["token"]
        people = ParleyClient(served.url, token=token)
        await people.start()
        assert (await first.ask(question_samples, timeout=60)).answered  # the call in progress goes on
        status, body = await _readyz(served.url)
        assert status == 200 and body["agents_running"] == 1 and body["agent_capacity"] == 1, body
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{served.url}/metrics") as response:
                text = await response.text()
        assert "parley_admission_refusals_total 1.0" in text and 'parley_errors_total{code="busy"} 1.0' in text
        # The first call ends: its agent's place is free again.
        await first.close()
        await asyncio.sleep(0.5)
        again = ParleyClient(served.url, room="turned-away")
        await again.start()
        await again.close()
    finally:
        for client in (first, second, people):
            if client is not None:
                await client.close()
        await runner.cleanup()


async def test_drain_tells_every_call_and_lets_the_reply_finish(settings, models, question_samples):
    runner, served = await serve_app(settings, models)
    caller = ParleyClient(served.url, room="draining")
    try:
        await caller.start()
        since = len(caller.messages)
        caller.mic.play(question_samples)
        await caller.wait_for(lambda m: m["type"] == "agent.state" and m["state"] == "speaking", 60, since)
        draining = asyncio.create_task(drain(served.app, 20.0))
        notice = await caller.wait_for(lambda m: m["type"] == "error", 5, since)
        told_at = time.monotonic()
        assert notice["code"] == "server_shutdown" and notice["retry_after_s"] == settings.http.shutdown_retry_after_s
        late = ParleyClient(served.url, room="draining-late")
        with pytest.raises(RuntimeError, match="join refused: server_shutdown"):
            await late.start()
        await late.close()
        status, body = await _readyz(served.url)
        assert status == 503 and body["draining"], body
        await asyncio.wait_for(draining, 25)  # returns once the reply has been spoken
        assert caller.recorder.first_loud_after(told_at) is not None  # the reply kept playing after the notice
        final = [m for m in caller.of_type("transcript", since) if m["speaker"] == "agent" and m["final"]]
        assert final and final[-1]["text"], caller.messages[-8:]  # and its line was completed, not cut
        assert caller.pc.connectionState == "connected"
    finally:
        await runner.cleanup()
        closing = [m for m in caller.of_type("error") if m["code"] == "server_shutdown"]
        await caller.close()
    assert len(closing) == 2  # the notice, then the room closing at shutdown


def test_sigterm_drains_and_the_process_exits_0(tmp_path: Path):
    port = free_port()
    env = {**os.environ, "PARLEY_CONFIG": "", "PARLEY_AGENT__MODE": "echo", "PARLEY_HTTP__SHUTDOWN_GRACE_S": "2",
           "PARLEY_ICE__HOST_ADDRESSES": '["127.0.0.1"]', "XDG_CACHE_HOME": str(tmp_path)}
    out = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen([str(Path(sys.executable).parent / "parley"), "serve", "--dev", "--port", str(port)],
                              env=env, stdout=out, stderr=subprocess.STDOUT)

    async def scenario() -> dict:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if (await _readyz(url))[0] == 200:
                    break
            except aiohttp.ClientError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            await asyncio.sleep(0.3)
        caller = ParleyClient(url)
        await caller.start()
        server.send_signal(signal.SIGTERM)
        try:
            return await caller.wait_for(lambda m: m["type"] == "error", 10)
        finally:
            await caller.close()

    try:
        notice = asyncio.run(scenario())
        assert notice["code"] == "server_shutdown" and notice["retry_after_s"] is not None, notice
        assert server.wait(timeout=20) == 0, (tmp_path / "serve.log").read_text()
    finally:
        if server.poll() is None:
            server.kill()
