"""Per-turn latency stages, timed on the server's monotonic clock.

``STAGES`` is the one list of stage names: the ``turn.metrics`` message, ``/metrics`` and the bench
report all take theirs from here.
"""

from __future__ import annotations

from dataclasses import dataclass


# stage → (timestamp it starts at, timestamp it ends at) on ``TurnTimer``
STAGE_SPANS: dict[str, tuple[str, str]] = {
    "endpoint_wait_ms": ("speech_end_at", "endpoint_at"),  # end of speech → the turn is known to be over
    "stt_ms": ("endpoint_at", "stt_done_at"),  # → transcript (after the endpoint)
    "llm_first_token_ms": ("stt_done_at", "llm_first_token_at"),
    "llm_first_chunk_ms": ("stt_done_at", "first_chunk_at"),  # → the first speakable clause
    "tts_first_audio_ms": ("first_chunk_at", "tts_first_audio_at"),
    "playout_wait_ms": ("tts_first_audio_at", "first_audio_sent_at"),
    "first_audio_sent_ms": ("speech_end_at", "first_audio_sent_at"),  # the server's voice-to-voice
}
# ...and the end-of-turn model's inference time, which lies within endpoint_wait_ms, and the time the
# LLM took to say whether the words stop mid-sentence (started at the pause, often done by the endpoint).
STAGES: tuple[str, ...] = (*STAGE_SPANS, "end_of_turn_ms", "sentence_end_ms")


@dataclass
class TurnTimer:
    """Timestamps of one turn; ``as_metrics`` turns them into the millisecond figures clients see."""

    turn_id: int
    speech_end_at: float
    endpoint_at: float
    stt_done_at: float | None = None
    llm_first_token_at: float | None = None
    first_chunk_at: float | None = None
    tts_first_audio_at: float | None = None
    first_audio_sent_at: float | None = None
    end_of_turn_ms: float | None = None  # time the end-of-turn model took (inside endpoint_wait_ms)
    sentence_end_ms: float | None = None  # time the LLM took to judge whether the words stop mid-sentence

    @staticmethod
    def _ms(start: float | None, end: float | None) -> float | None:
        return None if start is None or end is None else round((end - start) * 1000.0, 1)

    def as_metrics(self) -> dict[str, float | None]:
        """Every stage in ``STAGES`` order, in milliseconds (None: the turn did not get that far)."""
        spans = {name: self._ms(getattr(self, start), getattr(self, end)) for name, (start, end) in STAGE_SPANS.items()}
        return {**spans, "end_of_turn_ms": self.end_of_turn_ms, "sentence_end_ms": self.sentence_end_ms}


@dataclass
class EarlyTranscriptionStats:
    """Transcriptions started when a pause began, before the turn was known to be over (process-wide)."""

    started: int = 0
    used: int = 0  # the pause ended the turn: the transcript was the final one
    superseded: int = 0  # more speech came (or the call ended): the work was thrown away
    settled: int = 0  # more speech came, but the words were kept (a sentence settled inside the utterance)
    wasted_s: float = 0.0  # model time (wall) of superseded transcriptions that had finished
    heard_again: int = 0  # words held as cut short, heard again by the larger model (stt.hear_held_again)
    heard_whole_again: int = 0  # ... which heard other words that read whole: the turn ended on those at once
    heard_unsure: int = 0  # a pause's words the main model was unsure of, heard again at once (stt.hear_unsure_again)
    unsure_replaced: int = 0  # ... where the larger ear was surer of its words: they were the transcript

    def as_dict(self) -> dict[str, float]:
        return {
            "started": self.started, "used": self.used, "superseded": self.superseded, "settled": self.settled,
            "wasted_s": round(max(0.0, self.wasted_s), 3),  # (kept passes are taken back out)
            "heard_again": self.heard_again, "heard_whole_again": self.heard_whole_again,
            "heard_unsure": self.heard_unsure, "unsure_replaced": self.unsure_replaced,
        }


@dataclass
class SpeculationStats:
    """LLM replies started on an early transcript before the turn was known to be over (process-wide)."""

    started: int = 0
    used: int = 0  # the turn ended in that pause, on that question: the reply was the turn's
    cancelled: int = 0  # the caller went on (or something else changed): the reply was thrown away
    wasted_s: float = 0.0  # LLM time (wall, from start to cancel or end) of cancelled replies
    primes: int = 0  # requests that put the conversation and the caller's words so far into the LLM's cache
    after_reply_primes: int = 0  # ... and the conversation with the reply just generated, while it plays

    def as_dict(self) -> dict[str, float]:
        return {
            "started": self.started, "used": self.used, "cancelled": self.cancelled,
            "wasted_s": round(self.wasted_s, 3), "primes": self.primes, "after_reply_primes": self.after_reply_primes,
        }
