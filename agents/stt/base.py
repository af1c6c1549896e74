"""The STT interface: one finished utterance of 16 kHz mono float32 in, text out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Protocol, Sequence, runtime_checkable

import numpy as np


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
