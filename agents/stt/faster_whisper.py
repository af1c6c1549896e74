"""faster-whisper (CTranslate2) STT: greedy, temperature 0, our own VAD already cut the audio.

Besides one-utterance ``transcribe``, ``transcribe_batch`` runs several utterances (from different
calls) through one encoder pass and one batched greedy decode: CTranslate2's Whisper takes a batch
of 30 s feature windows and one prompt per item.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from parley.agents.stt.base import SttRequest
from parley.server.errors import ModelLoadError


class FasterWhisperStt:
    """Whisper through CTranslate2; thread-safe for concurrent calls from an executor."""

    name = "faster-whisper"

    def __init__(
        self,
        model_dir: Path | str,
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
        self.device = device
        self.passes = 0  # model passes run by transcribe_batch (one per prompt group)

    def _language_for(self, language: str | None) -> str | None:
        return (language or self._language) if self._multilingual else None

    def transcribe(self, samples: np.ndarray, language: str | None = None, hotwords: str | None = None) -> str:
        if samples.size == 0:
            return ""
        # CTranslate2 queues concurrent calls itself (num_workers sets how many run at once).
        segments, _ = self._model.transcribe(
            samples.astype(np.float32),
            language=self._language_for(language),
            beam_size=self._beam_size,
            temperature=0.0,
            condition_on_previous_text=False,
            vad_filter=False,
            without_timestamps=True,
            hotwords=hotwords or None,
        )
        return " ".join(s.text.strip() for s in segments).strip()

    def transcribe_batch(self, requests: Sequence[SttRequest]) -> list[str]:
        """Transcribe utterances of up to 30 s each in one encoder pass and one batched decode.

        Longer utterances fall back to :meth:`transcribe` (Whisper's window is 30 s).
        """
        texts: list[str] = [""] * len(requests)
        # CTranslate2 wants <|startoftranscript|> at one position for the whole batch: items whose
        # prompts differ (another language, hotwords or none) go in separate passes.
        groups: dict[tuple[str | None, str | None], list[int]] = {}
        for i, req in enumerate(requests):
            if req.samples.size == 0:
                continue
            if req.samples.size > self._model.feature_extractor.n_samples:
                texts[i] = self.transcribe(req.samples, req.language, req.hotwords)
            else:
                groups.setdefault((self._language_for(req.language), req.hotwords or None), []).append(i)
        for (language, hotwords), members in groups.items():
            for i, text in zip(members, self._batch_pass([requests[i].samples for i in members], language, hotwords)):
                texts[i] = text
        return texts

    def _batch_pass(self, utterances: list[np.ndarray], language: str | None, hotwords: str | None) -> list[str]:
        from faster_whisper.audio import pad_or_trim
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens

        model = self._model
        self.passes += 1
        tokenizer = Tokenizer(model.hf_tokenizer, self._multilingual, task="transcribe", language=language)
        prompt = model.get_prompt(tokenizer, [], without_timestamps=True, hotwords=hotwords)
        features = np.stack([pad_or_trim(model.feature_extractor(u.astype(np.float32))) for u in utterances])
        results = model.model.generate(
            model.encode(features),
            [list(prompt) for _ in utterances],
            beam_size=self._beam_size,
            max_length=model.max_length,
            suppress_blank=True,
            suppress_tokens=get_suppressed_tokens(tokenizer, [-1]),
            sampling_temperature=0.0,
        )
        return [tokenizer.decode([t for t in r.sequences_ids[0] if t < tokenizer.eot]).strip() for r in results]
