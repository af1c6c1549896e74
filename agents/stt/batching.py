"""Cross-call STT batching: utterances that end close together, from any call, share one model pass.

The first utterance to arrive opens a batch and waits at most ``window_s`` for company; utterances
that arrive while a pass is running queue up and form the next batch without waiting (continuous
batching), so a busy server batches more and an idle one adds at most ``window_s`` of latency.
One pass runs at a time: on a GPU one large batch beats several small ones, and on a CPU the pass
already uses every thread CTranslate2 was given.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np

from parley.agents.stt.base import BatchSpeechToText, Scored, ScoredBatchSpeechToText, SttRequest
from parley.core.tasks import cancel_and_wait

log = logging.getLogger(__name__)


@dataclass
class BatchStats:
    """Counters since start: utterances in, batches run, model passes (one per prompt group), sizes."""

    utterances: int = 0
    passes: int = 0
    sizes: dict[int, int] = field(default_factory=dict)  # batch size → how many batches had it

    @property
    def batches(self) -> int:
        return sum(self.sizes.values())

    @property
    def largest_batch(self) -> int:
        return max(self.sizes, default=0)

    def as_dict(self) -> dict[str, object]:
        return {
            "utterances": self.utterances, "batches": self.batches, "passes": self.passes,
            "largest_batch": self.largest_batch, "sizes": {str(k): v for k, v in sorted(self.sizes.items())},
        }


@dataclass
class _Pending:
    request: SttRequest
    future: asyncio.Future[Scored]


class SttBatcher:
    """Queue utterances from every call and transcribe them in batched passes on ``executor``."""

    def __init__(self, stt: BatchSpeechToText, executor: Executor, *, window_s: float = 0.01, max_batch: int = 8) -> None:
        self._stt = stt
        self._executor = executor
        self._window_s = window_s
        self._max_batch = max(1, max_batch)
        self._queue: asyncio.Queue[_Pending] | None = None
        self._runner: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.stats = BatchStats()

    async def transcribe(self, samples: np.ndarray, language: str | None = None, hotwords: str | None = None) -> str:
        """Text of one utterance; cancelling the caller drops it from its batch if not yet running."""
        return (await self.transcribe_scored(samples, language, hotwords))[0]

    async def transcribe_scored(self, samples: np.ndarray, language: str | None = None, hotwords: str | None = None) -> Scored:
        """``transcribe``, with the average token log-probability where the model gives one (else ``None``)."""
        loop = asyncio.get_running_loop()
        if self._queue is None or self._runner is None or self._runner.done() or self._loop is not loop:
            self._loop = loop  # models outlive event loops in tests; a queue belongs to one loop
            self._queue = asyncio.Queue()
            self._runner = asyncio.create_task(self._run(self._queue), name="parley-stt-batcher")
        pending = _Pending(SttRequest(samples, language, hotwords), loop.create_future())
        self.stats.utterances += 1
        self._queue.put_nowait(pending)
        return await pending.future

    async def _collect(self, queue: asyncio.Queue[_Pending]) -> list[_Pending]:
        batch = [await queue.get()]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._window_s
        while len(batch) < self._max_batch:
            if not queue.empty():
                batch.append(queue.get_nowait())
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(queue.get(), remaining))
            except TimeoutError:
                break
        return [p for p in batch if not p.future.done()]  # callers that gave up (timeout, barge-in)

    async def _run(self, queue: asyncio.Queue[_Pending]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect(queue)
            if not batch:
                continue
            passes_before = getattr(self._stt, "passes", None)
            try:
                texts = await loop.run_in_executor(self._executor, self._scored_batch, [p.request for p in batch])
            except Exception as exc:  # every caller in the batch gets the failure; the next batch runs
                log.warning("batched transcription of %d utterances failed: %s", len(batch), exc)
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(exc)
                continue
            self._count(len(batch), passes_before)
            for p, text in zip(batch, texts):
                if not p.future.done():
                    p.future.set_result(text)

    def _scored_batch(self, requests: list[SttRequest]) -> list[Scored]:
        """One batched pass (on the executor), scored where the model can say how sure it is."""
        if isinstance(self._stt, ScoredBatchSpeechToText):
            return self._stt.transcribe_batch_scored(requests)
        return [(text, None) for text in self._stt.transcribe_batch(requests)]

    def _count(self, size: int, passes_before: int | None) -> None:
        stats = self.stats
        passes_after = getattr(self._stt, "passes", None)
        stats.passes += (passes_after - passes_before) if passes_before is not None and passes_after is not None else 1
        stats.sizes[size] = stats.sizes.get(size, 0) + 1

    async def close(self) -> None:
        if self._runner is not None:
            await cancel_and_wait(self._runner)
