"""STT batching, measured on the model itself: N utterances that end together, one by one vs batched.

"One by one" is what a server without batching does: every call's utterance goes to the inference
thread pool on its own. "Batched" is :class:`SttBatcher`. Both use the configured STT model (the
profile's), loaded once in this process, with the bench's spoken questions as utterances.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, Awaitable, Callable

from parley.agents.runtime import STT_BACKENDS
from parley.agents.stt.base import BatchSpeechToText
from parley.agents.stt.batching import SttBatcher
from parley.bench.questions import RATE, Question
from parley.bench.stats import summary
from parley.core.audio import resample
from parley.server.config import Settings

log = logging.getLogger(__name__)


async def _latencies(jobs: list[Callable[[], Awaitable[object]]]) -> list[float]:
    """Start every job at once; return each one's seconds from start to result."""
    async def timed(job: Callable[[], Awaitable[object]]) -> float:
        started = time.perf_counter()
        await job()
        return time.perf_counter() - started

    return list(await asyncio.gather(*(timed(job) for job in jobs)))


def _row(mode: str, size: int, wall: float, latencies: list[float], passes: int | None) -> dict[str, Any]:
    lat = summary(latencies)
    return {
        "mode": mode, "utterances": size, "wall_s": wall, "utterances_per_s": size / wall if wall else None,
        "latency_ms": {k: (v * 1000 if isinstance(v, float) else v) for k, v in lat.items()}, "model_passes": passes,
    }


async def stt_batching_bench(settings: Settings, questions: list[Question], sizes: list[int], repeats: int = 2) -> dict[str, Any]:
    """For each size N, N utterances submitted at once, ``repeats`` times, one by one and batched."""
    cfg = settings.stt
    stt = await asyncio.to_thread(STT_BACKENDS[cfg.backend], settings)
    if not isinstance(stt, BatchSpeechToText):
        return {"skipped": f"the STT backend {cfg.backend} cannot batch"}
    utterances = [resample(q.samples, RATE, 16_000) for q in questions]
    executor = ThreadPoolExecutor(settings.inference_threads, thread_name_prefix="bench-stt")
    rows: list[dict[str, Any]] = []
    try:
        await asyncio.get_running_loop().run_in_executor(executor, stt.transcribe, utterances[0], None, None)  # warm
        for size in sizes:
            batch = [utterances[i % len(utterances)] for i in range(size)]
            for mode in ("one by one", "batched"):
                latencies: list[float] = []
                walls: list[float] = []
                passes = 0
                for _ in range(repeats):
                    batcher = SttBatcher(stt, executor, window_s=cfg.batch_window_ms / 1000, max_batch=cfg.max_batch)
                    started = time.perf_counter()
                    if mode == "batched":
                        latencies += await _latencies([partial(batcher.transcribe, u) for u in batch])
                        passes += batcher.stats.passes
                    else:  # what a server without batching does: each utterance its own call on the pool
                        loop = asyncio.get_running_loop()
                        latencies += await _latencies([partial(loop.run_in_executor, executor, stt.transcribe, u) for u in batch])
                        passes += size
                    walls.append(time.perf_counter() - started)
                    await batcher.close()  # its runner task starts only on first use
                row = _row(mode, size, sum(walls) / len(walls), latencies, passes // repeats)
                log.info("STT %s, %d utterances: %.2f s, %.1f utterances/s", mode, size, row["wall_s"], row["utterances_per_s"])
                rows.append(row)
    finally:
        executor.shutdown(wait=False)
    return {
        "model": cfg.model, "device": cfg.device, "compute_type": cfg.compute_type, "threads": cfg.threads,
        "inference_threads": settings.inference_threads, "window_ms": cfg.batch_window_ms, "max_batch": cfg.max_batch,
        "rows": rows,
    }
