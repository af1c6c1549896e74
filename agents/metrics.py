"""Per-turn latency metrics, measured on the server's monotonic clock."""

from __future__ import annotations

from dataclasses import dataclass


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

    @staticmethod
    def _ms(start: float | None, end: float | None) -> float | None:
        return None if start is None or end is None else round((end - start) * 1000.0, 1)

    def as_metrics(self) -> dict[str, float | None]:
        return {
            "endpoint_wait_ms": self._ms(self.speech_end_at, self.endpoint_at),
            "stt_ms": self._ms(self.endpoint_at, self.stt_done_at),
            "llm_first_token_ms": self._ms(self.stt_done_at, self.llm_first_token_at),
            "llm_first_chunk_ms": self._ms(self.stt_done_at, self.first_chunk_at),
            "tts_first_audio_ms": self._ms(self.first_chunk_at, self.tts_first_audio_at),
            "playout_wait_ms": self._ms(self.tts_first_audio_at, self.first_audio_sent_at),
            "first_audio_sent_ms": self._ms(self.speech_end_at, self.first_audio_sent_at),
        }
