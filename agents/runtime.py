"""``AgentModels``: every model loaded once per process, plus the executors that run them off the event loop."""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Awaitable, Callable

import numpy as np

from parley.agents.llm.base import ChatModel
from parley.agents.llm.openai_compat import OpenAICompatibleChat
from parley.agents.stt.base import BatchSpeechToText, SpeechToText
from parley.agents.stt.batching import SttBatcher
from parley.agents.tts.base import TextToSpeech
from parley.agents.vad.base import Vad
from parley.server.audio import resample
from parley.server.config import Settings
from parley.server.errors import BackendError, ConfigError, ModelLoadError

log = logging.getLogger(__name__)


def _load_vad(settings: Settings) -> Vad:
    from parley.agents.vad.silero import SileroVad

    return SileroVad()


def _load_stt(settings: Settings) -> SpeechToText:
    from parley.agents.stt.faster_whisper import FasterWhisperStt
    from parley.agents.weights import whisper_model_dir

    cfg = settings.stt
    model_dir = whisper_model_dir(cfg.model, settings.cache_dir, log.info)
    return FasterWhisperStt(
        model_dir, device=cfg.device, compute_type=cfg.compute_type, language=cfg.language,
        beam_size=cfg.beam_size, threads=cfg.threads,
    )


def _load_hibari(settings: Settings) -> TextToSpeech:
    from parley.agents.tts.hibari import HibariTts

    return HibariTts(settings.tts.voice, threads=settings.tts.threads, gain_db=settings.tts.gain_db)


def _load_fish_speech(settings: Settings) -> TextToSpeech:
    from parley.agents.tts.fish_speech import FishSpeechTts

    cfg = settings.tts
    return FishSpeechTts(
        cfg.url, voice=cfg.voice, reference_audio=cfg.reference_audio, reference_text=cfg.reference_text,
        sample_rate=cfg.sample_rate, gain_db=cfg.gain_db, timeout_s=cfg.timeout_s, api_key=cfg.api_key,
    )


async def _load_llm(settings: Settings) -> ChatModel:
    cfg = settings.llm
    if cfg.backend == "openai":
        if not cfg.url:
            raise ConfigError("llm.backend = 'openai' needs llm.url (e.g. http://127.0.0.1:8000/v1)")
        chat = OpenAICompatibleChat(
            cfg.url, cfg.model, api_key=cfg.api_key, max_tokens=cfg.max_tokens,
            temperature=cfg.temperature, timeout_s=cfg.timeout_s, extra_body=cfg.extra_body,
        )
        await _check_llm_server(chat)
        return chat
    from parley.agents.llm.embedded import EmbeddedLlm
    from parley.agents.weights import llm_model_path

    path = await asyncio.to_thread(llm_model_path, cfg.model, settings.cache_dir, log.info)
    llm = await EmbeddedLlm.start(
        path, log_dir=settings.cache_dir / "logs", threads=cfg.threads, context=cfg.context,
        parallel=cfg.parallel, max_tokens=cfg.max_tokens, temperature=cfg.temperature, timeout_s=cfg.timeout_s,
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


# One registry line per backend: adding a backend touches its module and this table.
VAD_BACKENDS: dict[str, Callable[[Settings], Vad]] = {"silero": _load_vad}
STT_BACKENDS: dict[str, Callable[[Settings], SpeechToText]] = {"faster-whisper": _load_stt}
TTS_BACKENDS: dict[str, Callable[[Settings], TextToSpeech]] = {"hibari": _load_hibari, "fish-speech": _load_fish_speech}


def _pick(table: dict, name: str, stage: str):
    if name not in table:
        raise ConfigError(f"unknown {stage} backend {name!r}; available: {', '.join(table)}")
    return table[name]


@dataclass
class AgentModels:
    """The shared, loaded models of this process."""

    vad: Vad
    stt: SpeechToText
    llm: ChatModel
    tts: TextToSpeech
    executor: ThreadPoolExecutor  # STT and TTS
    vad_executor: ThreadPoolExecutor  # VAD gets its own thread so a long STT never stalls endpointing
    settings: Settings | None = None
    voices: dict[str, TextToSpeech] = field(default_factory=dict)  # extra TTS voices rooms asked for
    stt_batcher: SttBatcher | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        cfg = self.settings.stt if self.settings is not None else None
        if cfg is not None and cfg.batching and isinstance(self.stt, BatchSpeechToText):
            self.stt_batcher = SttBatcher(
                self.stt, self.executor, window_s=cfg.batch_window_ms / 1000, max_batch=cfg.max_batch
            )

    async def transcribe(self, samples: np.ndarray, language: str | None = None, hotwords: str | None = None) -> str:
        """Text of one utterance, batched with other calls' utterances when the STT backend allows it."""
        if self.stt_batcher is not None:
            return await self.stt_batcher.transcribe(samples, language, hotwords)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, self.stt.transcribe, samples, language, hotwords)

    def inference_stats(self) -> dict[str, object]:
        """STT batching counters (``None`` when batching is off or the backend cannot batch)."""
        return {"stt_batching": self.stt_batcher.stats.as_dict() if self.stt_batcher else None}

    async def voice(self, name: str | None) -> TextToSpeech:
        """The TTS voice called ``name`` (the default one for None), loaded once on first use."""
        if self.settings is None or name is None or name == self.settings.tts.voice:
            return self.tts
        if name not in self.voices:
            factory = _pick(TTS_BACKENDS, self.settings.tts.backend, "TTS")
            tts_settings = self.settings.tts.model_copy(update={"voice": name})
            try:
                self.voices[name] = await asyncio.to_thread(factory, self.settings.model_copy(update={"tts": tts_settings}))
            except ModelLoadError:
                raise
            except Exception as exc:
                raise ModelLoadError(f"TTS voice {name!r}: {type(exc).__name__}: {exc}") from exc
            log.info("loaded TTS voice %s", name)
        return self.voices[name]

    @classmethod
    async def load(cls, settings: Settings) -> "AgentModels":
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
        stt = await stage(
            f"STT ({settings.stt.backend} {settings.stt.model})", lambda: asyncio.to_thread(stt_factory, settings)
        )
        tts = await stage(f"TTS ({settings.tts.backend} {settings.tts.voice})", lambda: asyncio.to_thread(tts_factory, settings))
        llm = await stage(f"LLM ({settings.llm.backend} {settings.llm.model})", lambda: _load_llm(settings))
        await stage("warm-up (STT, TTS)", lambda: asyncio.to_thread(_warm_up, stt, tts))
        return cls(
            vad=vad, stt=stt, llm=llm, tts=tts,  # type: ignore[arg-type]
            executor=ThreadPoolExecutor(settings.inference_threads, thread_name_prefix="parley-infer"),
            vad_executor=ThreadPoolExecutor(1, thread_name_prefix="parley-vad"), settings=settings,
        )

    async def close(self) -> None:
        if self.stt_batcher is not None:
            await self.stt_batcher.close()
        await self.llm.close()
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.vad_executor.shutdown(wait=False, cancel_futures=True)
