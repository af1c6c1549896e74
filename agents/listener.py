"""``Listener``: one person's decoded audio → endpoint events (speech started, paused, resumed, utterances…).

It resamples frames to the agent's 16 kHz, groups them into VAD windows and runs the endpointer (VAD
and end-of-turn model) on the VAD's own thread, so a long transcription never stalls endpointing.
What the events mean for the conversation is the turn controller's business (``AgentSession``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from concurrent.futures import Executor
from typing import Callable

import numpy as np
from aiortc.mediastreams import MediaStreamTrack

from parley.agents.echo_cancel import EchoCanceller
from parley.agents.endpointer import EndpointEvent, Endpointer, SpeechStarted
from parley.agents.runtime import AgentModels
from parley.core.audio import FrameToAgentPcm, arrival_of
from parley.agents.settings import VadSettings


def new_endpointer(models: AgentModels, vad: VadSettings, *, words_judged: bool = True) -> Endpointer:
    """An endpointer over a fresh VAD stream, with the end-of-turn model when one is loaded;
    ``words_judged``: each pause's words are transcribed and judged as it begins (the model waits for them,
    ``vad.words_first_ms``)."""
    end_of_turn = models.end_of_turn
    return Endpointer(
        models.vad.open_stream(), threshold=vad.threshold, min_speech_ms=vad.min_speech_ms,
        endpoint_silence_ms=vad.endpoint_silence_ms, preroll_ms=vad.preroll_ms, max_utterance_s=vad.max_utterance_s,
        discard_silence_ms=vad.discard_silence_ms, interim_ms=int(vad.interim_interval_s * 1000),
        end_of_turn=end_of_turn.probability if end_of_turn is not None else None,
        turn_check_silence_ms=vad.turn_check_silence_ms, turn_max_silence_ms=vad.turn_max_silence_ms,
        turn_threshold=vad.turn_threshold, turn_recheck_ms=vad.turn_recheck_ms, tail_ms=vad.tail_ms,
        words_done_silence_ms=vad.text_turn_done_silence_ms, tail_quiet_peak=vad.tail_quiet_peak,
        words_first_ms=vad.words_first_ms if words_judged else 0,
    )


class Listener:
    """Feeds one track through an endpointer and hands every event to ``on_event``, in order."""

    def __init__(
        self, endpointer: Endpointer, vad_executor: Executor, on_event: Callable[[EndpointEvent], None],
        canceller: EchoCanceller | None = None,
    ) -> None:
        self._endpointer = endpointer
        self._executor = vad_executor
        self._on_event = on_event
        self._canceller = canceller  # removes the agent's own voice from this person's audio first

    async def run(self, track: MediaStreamTrack) -> None:
        """Until the track ends (``MediaStreamError``) or the endpointer fails (its exception)."""
        converter = FrameToAgentPcm()
        loop = asyncio.get_running_loop()
        window = self._endpointer.window_samples
        pending: list[np.ndarray] = []
        pending_size = 0
        while True:
            frame = await track.recv()
            pcm = converter.convert(frame)
            if self._canceller is not None:
                pcm = self._canceller.capture(pcm, arrival_of(frame))  # (when it arrived, not when it is read)
            pending.append(pcm)
            pending_size += pcm.size
            if pending_size < window:
                continue
            chunk = np.concatenate(pending)
            pending, pending_size = [], 0
            events = await loop.run_in_executor(self._executor, self._endpointer.process, chunk, time.monotonic())
            for event in events:
                if isinstance(event, SpeechStarted) and self._canceller is not None and self._canceller.learning:
                    event = dataclasses.replace(event, confirm_first=True)
                self._on_event(event)
