"""Helpers for turn-taking tests with a real caller: the agent session behind a call, the agent talking."""

from __future__ import annotations

import asyncio
import time

from parley.signaling.app import STATE_KEY
from parley.signaling.client import ParleyClient


def session_of(parley_app, caller: ParleyClient):
    """The agent session of the room ``caller`` is in (``parley_app``: a served app with ``.app``)."""
    pid = caller.of_type("joined")[0]["participant_id"]
    [conn] = [c for c in parley_app.app[STATE_KEY].connections if c.participant_id == pid]
    return conn.room.agent.session


async def agent_talking_for(caller: ParleyClient, seconds: float, timeout: float = 60) -> float:
    """Wait until the agent has been audible to ``caller`` for ``seconds``; return when it first was."""
    await caller.wait_for(lambda m: m["type"] == "agent.state" and m["state"] == "speaking", timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        first = caller.recorder.first_loud_after(0)
        if first is not None and time.monotonic() - first >= seconds:
            return first
        await asyncio.sleep(0.02)
    raise TimeoutError("agent audio never flowed")
