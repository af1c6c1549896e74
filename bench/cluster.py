"""Scaling past one process: SFU forwarding with 1 worker beside N workers (``parley serve --workers N``),
and the time to set up a call through the node that holds the room beside one that redirects to it."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from parley.bench.forwarding import forwarding_ramp
from parley.bench.server_process import ServerProcess
from parley.bench.stats import summary
from parley.signaling.client import ParleyAdmin, ParleyClient

log = logging.getLogger(__name__)
SUSTAINED_FRAMES_PER_S = 45.0  # of 50: a stream that keeps up
SUSTAINED_MAX_GAP_MS = 100.0


def sustained_streams(ramp: dict[str, Any]) -> int:
    """The most forwarded streams of a step where every stream kept up (≥ 45 frames/s, gaps ≤ 100 ms)."""
    good = [s["forwarded_streams"] for s in ramp["steps"]
            if s["frames_per_stream_per_s"] >= SUSTAINED_FRAMES_PER_S and (s["max_gap_ms"] or 0) <= SUSTAINED_MAX_GAP_MS]
    return max(good, default=0)


async def _wait_for_nodes(url: str, api_key: str, count: int, timeout_s: float = 60) -> list[dict[str, Any]]:
    async with ParleyAdmin(url, api_key) as admin:
        deadline = time.monotonic() + timeout_s
        while len(nodes := await admin.nodes()) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(nodes)} of {count} workers came up")
            await asyncio.sleep(0.3)
        return nodes


async def join_latency(url: str, api_key: str, nodes: list[dict[str, Any]], joins: int) -> dict[str, Any]:
    """Call set-up (WebSocket, join, offer/answer) straight at the room's node and through another node."""
    times: dict[str, list[float]] = {"owner": [], "other": []}
    async with ParleyAdmin(url, api_key) as admin:
        room = (await admin.create_room(agent={"enabled": False}))["id"]
        try:
            for i in range(joins):
                for via in ("owner", "other"):
                    minted = await admin.token(room, f"{via}-{i}")
                    owner = next(n for n in nodes if minted["ws_url"].startswith(n["ws_url"]))
                    entry = owner if via == "owner" else next(n for n in nodes if n is not owner)
                    caller = ParleyClient(entry["url"], token=minted["token"])
                    started = time.perf_counter()
                    await caller.start()
                    times[via].append(time.perf_counter() - started)
                    redirected = any(m["type"] == "redirect" for m in caller.messages)
                    await caller.close()
                    if redirected != (via == "other"):
                        raise RuntimeError(f"a join {via} the owner was {'' if redirected else 'not '}redirected")
        finally:
            await admin.delete_room(room)
    return {via: summary(values) for via, values in times.items()}


async def cluster_bench(
    env: dict[str, str], api_key: str, logs: Path, clip: np.ndarray, workers: list[int], people: list[int], seconds: float,
    joins: int = 10,
) -> dict[str, Any]:
    """Each worker count runs the same forwarding ramp on a fresh server without models; the largest
    also measures join latency through its nodes."""
    out: dict[str, Any] = {"forwarding": {}, "sustained_streams": {}, "join_s": None}
    for count in workers:
        log.info("cluster: forwarding with %d worker(s)", count)
        async with ServerProcess(env, logs / f"workers-{count}.log", workers=count) as server:
            assert server.pid is not None
            nodes = await _wait_for_nodes(server.url, api_key, count) if count > 1 else []
            ramp = await forwarding_ramp(server.url, api_key, server.pid, clip, people, seconds=seconds)
            out["forwarding"][str(count)] = ramp
            out["sustained_streams"][str(count)] = sustained_streams(ramp)
            if count == max(workers) and count > 1:
                out["join_s"] = await join_latency(server.url, api_key, nodes, joins)
    return out
