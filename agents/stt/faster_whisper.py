"""faster-whisper (CTranslate2) STT: greedy, temperature 0, our own VAD already cut the audio."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from parley.server.errors import ModelLoadError


class FasterWhisperStt:
    """Whisper through CTranslate2; thread-safe for concurrent calls from an executor."""

    name = "faster-whisper"

    def __init__(
        self,
        model_dir: Path,
        *,
        device: str = "cpu",
        compute_type: str = "int8",
        language: str = "en",
        beam_size: int = 1,
        threads: int = 2,
        workers: int = 1,
    ) -> None:
        from faster_whisper import WhisperModel

        try:
            self._model = WhisperModel(
                str(model_dir), device=device, compute_type=compute_type, cpu_threads=threads, num_workers=workers
            )
        except Exception as exc:  # CTranslate2 raises RuntimeError/ValueError with a useful text
            raise ModelLoadError(f"faster-whisper could not load {model_dir}: {exc}") from exc
        self._language = language
        self._beam_size = beam_size
        self._multilingual = bool(self._model.model.is_multilingual)

    def transcribe(self, samples: np.ndarray, language: str | None = None, hotwords: str | None = None) -> str:
        lang = (language or self._language) if self._multilingual else None
        if samples.size == 0:
            return ""
        # CTranslate2 queues concurrent calls itself (num_workers sets how many run at once).
        segments, _ = self._model.transcribe(
            samples.astype(np.float32),
            language=lang,
            beam_size=self._beam_size,
            temperature=0.0,
            condition_on_previous_text=False,
            vad_filter=False,
            without_timestamps=True,
            hotwords=hotwords or None,
        )
        return " ".join(s.text.strip() for s in segments).strip()
