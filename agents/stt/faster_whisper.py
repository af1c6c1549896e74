"""faster-whisper (CTranslate2) STT: greedy, temperature 0, our own VAD already cut the audio.

Whisper pads every input to a 30 s window, so a 2 s question costs the encoder as much as 30 s of
speech. ``window_s`` (30 by default; see ``SttSettings.window_s``) pads an utterance that fits to a
shorter window instead: tiny.en int8 on 2 threads took 494 → 255 ms a sentence at 30 → 20 s, with the
same word error rate (measured 2026-12-04 on 44 hibari and espeak sentences: 0.079 → 0.088; the 24
bench questions 0.212 → 0.225; five LibriVox clips 0.085 → 0.085). A pass with a prompt reads the
short window only if that prompt is one of ``short_prompts``: tiny.en dropped the prompted name at
15–25 s ("Parley, tell me…" → "Tell me…"), so group calls' hotwords keep the full window, as do
utterances that do not fit. The Mandarin prompt is one (base, 2 threads, measured 2026-12-06 on the 20
Kokoro-spoken bench questions: 579–704 → 221–234 ms a question at 30 → 15 s, character error rate
0.197 → 0.202, one character in 20 questions). Outside 30 s Whisper says "you" to silence (no-speech
probability 0.99, against at most 0.22 on 37 real and synthetic questions): a no-speech rule, a token
bound and a loop cut guard every short pass.

``fit_window`` (experimental, off by default) makes the encoder read the utterance plus 2 s
of silence instead (whole seconds, 4 s at least): ~3–4× faster on this CPU (tiny.en, int8, 2
threads: 0.41 → 0.09–0.12 s an espeak question, 0.52 → 0.14 s a LibriVox sentence), but Whisper was
trained on 30 s windows and is erratic outside them — measured, the same 24 questions' WER went
0.29 (30 s) → 0.27–0.52 depending on the padding, LibriVox 0.098 → 0.098–0.373, the decoder looped
on some sentences and said "you" to silence. Guards (a token bound, a loop cut, faster-whisper's
no-speech rule) are in place, but it is not safe as a default yet.

Besides one-utterance ``transcribe``, ``transcribe_batch`` runs several utterances (from different
calls) through one encoder pass and one batched greedy decode: CTranslate2's Whisper takes a batch
of 30 s feature windows and one prompt per item.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from parley.agents.stt.base import Scored, SttRequest
from parley.core.errors import ModelLoadError

SAMPLE_RATE = 16_000
TAIL_SILENCE_S = 0.4  # appended to every utterance (see with_silence)
# fit_window only:
HOP = 160  # samples per feature frame
FIT_TAIL_S = 2  # silence after the speech in a fitted window
FIT_MIN_S = 4
NO_SPEECH_PROB = 0.6  # faster-whisper's no_speech_threshold …
MIN_AVG_LOGPROB = -1.0  # … and log_prob_threshold
NO_SPEECH_ALONE = 0.8  # this sure that nobody spoke: nothing heard, whatever the decoder says
# Nothing this faint is transcribed: base in its 10 s window said "你不认识我吗?" to digital silence (no-speech
# probability 0.51, under the rule's 0.6, which a one-syllable "有" reaches: 0.58). About -54 dBFS.
INAUDIBLE_PEAK = 0.002
_SENTENCE = re.compile(r"[^.!?]+[.!?]*")


def _text(tokenizer: Any, result: Any) -> str:
    """The transcript of one decoding result (its tokens up to end-of-text)."""
    return tokenizer.decode([t for t in result.sequences_ids[0] if t < tokenizer.eot]).strip()


def inaudible(samples: np.ndarray) -> bool:
    """No samples, or none louder than ``INAUDIBLE_PEAK``: nothing to transcribe."""
    return samples.size == 0 or float(np.max(np.abs(samples))) < INAUDIBLE_PEAK


def with_silence(samples: np.ndarray) -> np.ndarray:
    """The utterance and 0.4 s of silence. Utterances end ~0.1 s after the speech (the transcript starts
    at the pause); Whisper tiny.en then garbled their last words ("How many legs does a spider have?" →
    "… lands done I've spider-fed?" in a browser call), which it did not with 0.45 s of silence after them."""
    return np.concatenate([samples.astype(np.float32, copy=False), np.zeros(int(TAIL_SILENCE_S * SAMPLE_RATE), np.float32)])


def drop_repeats(text: str) -> str:
    """Cut a decoder loop: a sentence said again right after itself (or a tail that starts it again) goes."""
    kept: list[str] = []
    for sentence in (m.group(0).strip() for m in _SENTENCE.finditer(text)):
        if not sentence:
            continue
        if kept and sentence.lower() == kept[-1].lower():
            continue  # the same sentence again: a loop, not speech
        if kept and len(sentence) < len(kept[-1]) and kept[-1].lower().startswith(sentence.lower()):
            continue  # the loop's unfinished last lap
        kept.append(sentence)
    return " ".join(kept)


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
        fit_window: bool = False,
        window_s: int = 30,
        short_prompts: frozenset[str] = frozenset(),
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
        self._fit_window = fit_window
        self._full_window = self._model.feature_extractor.n_samples  # Whisper's own 30 s
        self._window = min(self._full_window, window_s * SAMPLE_RATE)
        self._short_prompts = short_prompts  # prompts measured safe with the short window
        # Utterances longer than this (their silence appended) get the full window.
        self._short_limit = self._full_window - SAMPLE_RATE if fit_window else self._window - FIT_TAIL_S * SAMPLE_RATE
        self._multilingual = bool(self._model.model.is_multilingual)
        self.device = device
        self.passes = 0  # model passes run by transcribe_batch (one per prompt group)

    def _language_for(self, language: str | None) -> str | None:
        return (language or self._language) if self._multilingual else None

    def transcribe(self, samples: np.ndarray, language: str | None = None, hotwords: str | None = None) -> str:
        return self.transcribe_scored(samples, language, hotwords)[0]

    def transcribe_scored(
        self, samples: np.ndarray, language: str | None = None, hotwords: str | None = None,
    ) -> Scored:
        """``transcribe``, and how sure the decoder was of it: the average log-probability of its tokens
        (Whisper's own ``log_prob_threshold`` calls a pass below -1.0 failed; over the full window, the
        mean of its segments'); ``None`` where nothing was heard."""
        if inaudible(samples):
            return "", None
        samples = with_silence(samples)
        if self._short(hotwords) and samples.size <= self._short_limit:
            return self._batch_pass([samples], self._language_for(language), hotwords or None)[0]
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
        heard = list(segments)  # (decoded here: the generator runs the model)
        text = " ".join(s.text.strip() for s in heard).strip()
        return text, (float(np.mean([s.avg_logprob for s in heard])) if heard else None)

    def transcribe_detected(
        self, samples: np.ndarray, languages: Sequence[str], prompts: Mapping[str, str] | None = None,
    ) -> tuple[str, str]:
        """Tell which of ``languages`` the utterance is in and transcribe it in that one: ``(text, language)``.

        One encoder pass serves both (Whisper detects the language from the encoded window), over the
        short window where every language's prompt may read it (base, 2 threads, measured 2026-12-06 on 29
        English and 22 Mandarin utterances, LibriVox and AISHELL-1 among them: 454 → 200 ms an utterance,
        no language mistaken either way, English WER 0.117 → 0.121, Mandarin CER 0.178 → 0.192); ``prompts``
        are per-language initial prompts. Utterances over Whisper's 30 s window are detected on their
        first 30 s and transcribed by :meth:`transcribe`.
        """
        from faster_whisper.audio import pad_or_trim

        if not self._multilingual:
            raise ModelLoadError("telling languages apart needs a multilingual Whisper model (not an .en one)")
        if inaudible(samples):
            return "", languages[0]
        audio = with_silence(samples)
        if audio.size > self._full_window:  # detected on its first 30 s, transcribed whole
            encoded = self._model.encode(pad_or_trim(self._model.feature_extractor(audio[: self._full_window]))[None])
            language = self._detect(encoded, languages)
            return self.transcribe(samples, language, (prompts or {}).get(language)), language
        # The short window where every language's prompt allows it (it is chosen before the language is known).
        short = audio.size <= self._short_limit and all(self._short(prompt) for prompt in [None, *(prompts or {}).values()])
        encoded = self._encode([audio], short)
        language = self._detect(encoded, languages)
        return self._decode(encoded, [audio], language, (prompts or {}).get(language), short)[0], language

    def _detect(self, encoded: Any, languages: Sequence[str]) -> str:
        """Which of ``languages`` Whisper's language head hears most likely in the ``encoded`` window."""
        scores = dict(self._model.model.detect_language(encoded)[0])  # "<|en|>" → probability
        return max(languages, key=lambda code: scores.get(f"<|{code}|>", 0.0))

    def transcribe_batch(self, requests: Sequence[SttRequest]) -> list[str]:
        """Transcribe utterances of up to 30 s each in one encoder pass and one batched decode.

        Longer utterances fall back to :meth:`transcribe` (Whisper's window is 30 s).
        """
        return [text for text, _ in self.transcribe_batch_scored(requests)]

    def transcribe_batch_scored(self, requests: Sequence[SttRequest]) -> list[Scored]:
        """``transcribe_batch``, each transcript with its average token log-probability (see ``transcribe_scored``)."""
        results: list[Scored] = [("", None)] * len(requests)
        # CTranslate2 wants <|startoftranscript|> at one position for the whole batch: items whose
        # prompts differ (another language, hotwords or none) go in separate passes.
        groups: dict[tuple[str | None, str | None], list[int]] = {}
        for i, req in enumerate(requests):
            if inaudible(req.samples):
                continue
            if req.samples.size + TAIL_SILENCE_S * SAMPLE_RATE > self._pass_limit(req.hotwords):
                results[i] = self.transcribe_scored(req.samples, req.language, req.hotwords)
            else:
                groups.setdefault((self._language_for(req.language), req.hotwords or None), []).append(i)
        for (language, hotwords), members in groups.items():
            for i, scored in zip(members, self._batch_pass([with_silence(requests[i].samples) for i in members], language, hotwords)):
                results[i] = scored
        return results

    def _short(self, prompt: str | None) -> bool:
        """Whether a pass with ``prompt`` reads a short window (fitted, or ``window_s`` without a prompt or
        with one of ``short_prompts``)."""
        return self._fit_window or ((not prompt or prompt in self._short_prompts) and self._window < self._full_window)

    def _pass_limit(self, prompt: str | None) -> int:
        """The most samples (with the appended silence) one batch pass with ``prompt`` takes."""
        return self._short_limit if self._short(prompt) else self._full_window

    def _batch_pass(self, utterances: list[np.ndarray], language: str | None, hotwords: str | None) -> list[Scored]:
        """One encoder pass and one batched decode over ``utterances`` (their silence appended): scored transcripts."""
        short = self._short(hotwords)
        return self._decode_scored(self._encode(utterances, short), utterances, language, hotwords, short)

    def _encode(self, utterances: list[np.ndarray], short: bool) -> Any:
        """One encoder pass over the utterances (with their silence appended), in the short window or 30 s."""
        from faster_whisper.audio import pad_or_trim

        model = self._model
        if short:
            return model.encode(self._fitted_features(utterances))
        return model.encode(np.stack([pad_or_trim(model.feature_extractor(u.astype(np.float32))) for u in utterances]))

    def _decode(self, encoded: Any, utterances: list[np.ndarray], language: str | None, prompt: str | None, short: bool) -> list[str]:
        """The greedy transcripts of ``encoded`` windows, those of short ones guarded (silence, loops)."""
        return [text for text, _ in self._decode_scored(encoded, utterances, language, prompt, short)]

    def _decode_scored(
        self, encoded: Any, utterances: list[np.ndarray], language: str | None, prompt: str | None, short: bool,
    ) -> list[Scored]:
        """``_decode``, each transcript with its average token log-probability (short windows only)."""
        tokenizer, results = self._greedy(
            encoded, len(utterances), language, prompt,
            # A fitted window ends soon after the speech; a decoder that loops there ("The meeting starts
            # at 930. The meeting starts at 930. …") is cut at a length no real speech of that duration reaches.
            max_length=self._max_tokens(max(u.size for u in utterances)) if short else None,
            scores=short,
        )
        texts: list[Scored] = []
        for r in results:
            text = _text(tokenizer, r)
            if not short:
                texts.append((text, None))
                continue
            # "Nobody spoke" (a short window of silence gives "you"): faster-whisper's own rule, or a
            # no-speech probability no real question came near.
            length = len(r.sequences_ids[0])
            avg_logprob = r.scores[0] * length / (length + 1)  # scores are length-normalised
            silent = r.no_speech_prob > NO_SPEECH_ALONE or (r.no_speech_prob > NO_SPEECH_PROB and avg_logprob < MIN_AVG_LOGPROB)
            texts.append(("", None) if silent else (drop_repeats(text), float(avg_logprob)))
        return texts

    def _greedy(
        self, encoded: Any, count: int, language: str | None, prompt: str | None, *, max_length: int | None = None,
        scores: bool = False,
    ) -> tuple[Any, list[Any]]:
        """One greedy decoding pass over ``count`` encoded windows, each with ``prompt`` before the
        transcript (names to hear, or an initial prompt); returns the tokenizer and the results."""
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens

        model = self._model
        self.passes += 1
        tokenizer = Tokenizer(model.hf_tokenizer, self._multilingual, task="transcribe", language=language)
        tokens = model.get_prompt(tokenizer, [], without_timestamps=True, hotwords=prompt or None)
        results = model.model.generate(
            encoded,
            [list(tokens) for _ in range(count)],
            beam_size=self._beam_size,
            max_length=max_length or model.max_length,
            suppress_blank=True,
            suppress_tokens=get_suppressed_tokens(tokenizer, [-1]),
            sampling_temperature=0.0,
            return_scores=scores,
            return_no_speech_prob=scores,
        )
        return tokenizer, results

    def _max_tokens(self, samples: int) -> int:
        """Tokens a transcript of this much audio can need: fast speech is ~7 tokens a second."""
        return min(self._model.max_length, 24 + int(12 * samples / SAMPLE_RATE))

    def _fitted_features(self, utterances: list[np.ndarray]) -> np.ndarray:
        """Log-mel features of each utterance padded with silence to ``window_s``, or with ``fit_window``
        to the longest one plus 2 s (4 s at least), in whole seconds, at most Whisper's 30 s window: the
        encoder reads that, not 30 s. With only 1 s after the speech the decoder sometimes looped on the
        last sentence (measured: 3 of 18 hibari sentences); with 2 s, none."""
        target = self._window
        if self._fit_window:
            longest = max(u.size for u in utterances)
            fitted = -(-(longest + FIT_TAIL_S * SAMPLE_RATE) // SAMPLE_RATE) * SAMPLE_RATE
            target = min(self._full_window, max(FIT_MIN_S * SAMPLE_RATE, fitted))
        frames = target // HOP
        out = []
        for u in utterances:
            padded = np.zeros(target, np.float32)
            padded[: min(u.size, target)] = u[:target]
            out.append(self._model.feature_extractor(padded, padding=0)[:, :frames])
        return np.stack(out)
