"""The STT interface: one finished utterance of 16 kHz mono float32 in, text out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Protocol, Sequence, runtime_checkable

import numpy as np


Scored = tuple[str, "float | None"]  # a transcript and its average token log-probability, where the model says


@dataclass(frozen=True)
class Transcript:
    """The main model's transcript of an utterance, with how sure it was (its average token log-probability),
    and the larger ear's transcript of the same audio where that was asked (``stt.hear_unsure_again``)."""

    text: str
    logprob: float | None = None
    again: str | None = None
    again_logprob: float | None = None

    @property
    def surer(self) -> str:
        """The larger ear's words where it heard words and was surer of them than the main model; else the main model's."""
        if not (self.again or "").strip() or self.again_logprob is None or self.logprob is None:
            return self.text
        return self.again if self.again_logprob > self.logprob else self.text  # type: ignore[return-value]


@dataclass(frozen=True)
class SttRequest:
    """One utterance to transcribe, with the options of the call it came from."""

    samples: np.ndarray  # 16 kHz mono float32
    language: str | None = None
    hotwords: str | None = None


class SpeechToText(Protocol):
    """A loaded STT model shared by all calls. ``transcribe`` blocks: call it from an executor."""

    name: str

    def transcribe(self, samples: np.ndarray, language: str | None = None, hotwords: str | None = None) -> str:
        """Return the text of one utterance (16 kHz mono float32); ``hotwords`` biases it towards names."""
        ...


@runtime_checkable
class BatchSpeechToText(Protocol):
    """An STT model that can also transcribe several utterances in one model pass."""

    def transcribe_batch(self, requests: Sequence[SttRequest]) -> list[str]:
        """Return one text per request, in order."""
        ...


@runtime_checkable
class LanguageDetectingSpeechToText(Protocol):
    """An STT model that tells which of several languages an utterance is in (``agent.language = "auto"``)."""

    def transcribe_detected(
        self, samples: np.ndarray, languages: Sequence[str], prompts: Mapping[str, str] | None = None,
    ) -> tuple[str, str]:
        """Return ``(text, language)``: the utterance transcribed in the most likely of ``languages``."""
        ...


@runtime_checkable
class ScoredSpeechToText(Protocol):
    """An STT model that also says how sure it is of a transcript."""

    def transcribe_scored(
        self, samples: np.ndarray, language: str | None = None, hotwords: str | None = None,
    ) -> Scored:
        """``transcribe``, with the decoder's average token log-probability (``None`` where it has none)."""
        ...


@runtime_checkable
class ScoredBatchSpeechToText(Protocol):
    """A batching STT model that also says how sure it is of each transcript."""

    def transcribe_batch_scored(self, requests: Sequence[SttRequest]) -> list[Scored]:
        """``transcribe_batch``, each text with the decoder's average token log-probability (or ``None``)."""
        ...
