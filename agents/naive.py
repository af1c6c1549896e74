"""``NaiveListener``: the baseline pipeline's ears (``agent.pipeline = "naive"``, what ``make bench``
compares against): fixed chunks of audio transcribed one after another, no VAD, no end-of-turn model;
a chunk with no words after some words ends the question."""

from __future__ import annotations

import time
from typing import Awaitable, Callable

import numpy as np
from aiortc.mediastreams import MediaStreamTrack

from parley.agents.stage_timer import TurnTimer
from parley.agents.text import has_words
from parley.core.audio import AGENT_RATE, FrameToAgentPcm
from parley.core.errors import BackendError


class NaiveListener:
    """Reads one track until it ends (``MediaStreamError`` goes to the caller) and hands over each question."""

    def __init__(
        self, transcribe: Callable[[np.ndarray], Awaitable[str]], chunk_s: float,
        on_question: Callable[[TurnTimer, str], None], on_failure: Callable[[BackendError], None],
    ) -> None:
        self._transcribe = transcribe
        self._chunk_samples = int(chunk_s * AGENT_RATE)
        self._on_question = on_question  # (its timer, its words)
        self._on_failure = on_failure  # a chunk that could not be transcribed (the next one is tried)

    async def run(self, track: MediaStreamTrack) -> None:
        converter = FrameToAgentPcm()
        pending = np.zeros(0, np.float32)
        heard: list[str] = []
        last_words_at = 0.0
        while True:
            pending = np.concatenate([pending, converter.convert(await track.recv())])
            if pending.size < self._chunk_samples:
                continue
            chunk, pending = pending[: self._chunk_samples], pending[self._chunk_samples :]
            try:
                text = await self._transcribe(chunk)
            except BackendError as exc:
                self._on_failure(exc)
                continue
            now = time.monotonic()
            if has_words(text):
                heard.append(text.strip())
                last_words_at = now
            elif heard:
                timer = TurnTimer(0, last_words_at, now)
                timer.stt_done_at = now
                self._on_question(timer, " ".join(heard))
                heard = []
