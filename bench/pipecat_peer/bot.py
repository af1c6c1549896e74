"""A Pipecat voice bot on the same models as Parley's CPU default, for `parley bench --pipecat`.

Runs in its own virtualenv (bench/pipecat_peer/requirements.txt), never imported by Parley. Written as
a Pipecat user would: SmallWebRTC transport, Silero VAD, the local Smart Turn v3 analyzer (Pipecat's
default stop strategy), faster-whisper on the same Whisper weights, the OpenAI-compatible LLM service
pointed at the same llama.cpp server and GGUF, and a small TTS service wrapping the same hibari voice.

    python bot.py --port 7860 --whisper-dir DIR --llm-url http://127.0.0.1:PORT/v1 --llm-model NAME

POST /api/offer {"sdp": ..., "type": "offer"} → the answer; one pipeline per connection.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import AsyncGenerator

import numpy as np
from aiohttp import web
from loguru import logger

from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.frames.frames import ErrorFrame, Frame, TTSAudioRawFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import LLMContextAggregatorPair, LLMUserAggregatorParams
from pipecat.services.openai.llm import OpenAILLMService
from pipecat.services.settings import TTSSettings
from pipecat.services.tts_service import TTSService
from pipecat.services.whisper.stt import WhisperSTTService
from pipecat.transcriptions.language import Language
from pipecat.transports.base_transport import TransportParams
from pipecat.transports.smallwebrtc.connection import SmallWebRTCConnection
from pipecat.transports.smallwebrtc.transport import SmallWebRTCTransport
from pipecat.workers.runner import WorkerRunner


def trim_silence(samples: np.ndarray, threshold: float = 0.01, keep: int = 480) -> np.ndarray:
    """hibari pads each sentence with ~0.3 s of silence before and ~0.45 s after; Parley's voice wrapper
    cuts it (pure latency), so this one does too — the comparison is of the frameworks, not of the padding."""
    loud = np.flatnonzero(np.abs(samples) > threshold)
    if loud.size == 0:
        return samples
    return samples[max(0, loud[0] - keep) : loud[-1] + keep]


class HibariTTSService(TTSService):
    """hibari-tts (the voice Parley speaks with by default) as a Pipecat TTS service."""

    def __init__(self, *, voice: str = "heart", gain_db: float = 6.0, **kwargs) -> None:
        settings = TTSSettings(model=None, voice=voice, language=Language.EN)
        super().__init__(push_start_frame=True, push_stop_frames=True, settings=settings, **kwargs)
        from hibari import Hibari

        self._voice = Hibari(voice=voice, threads=1)
        self._gain = 10 ** (gain_db / 20)

    def can_generate_metrics(self) -> bool:
        return True

    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame, None]:
        try:
            await self.start_tts_usage_metrics(text)
            samples = await asyncio.to_thread(self._voice, text)
            audio = np.clip(trim_silence(np.asarray(samples, np.float32).reshape(-1)) * self._gain, -1, 1)
            pcm = (audio * 32767).astype(np.int16).tobytes()
            await self.stop_ttfb_metrics()
            rate = int(self._voice.sample_rate)
            if rate != self.sample_rate:
                pcm = await self._resample(pcm, rate)
            yield TTSAudioRawFrame(audio=pcm, sample_rate=self.sample_rate, num_channels=1, context_id=context_id)
        except Exception as exc:
            yield ErrorFrame(error=f"hibari failed: {exc}")
        finally:
            await self.stop_ttfb_metrics()

    async def _resample(self, pcm: bytes, rate: int) -> bytes:
        from pipecat.audio.utils import create_stream_resampler

        if not hasattr(self, "_resampler"):
            self._resampler = create_stream_resampler()
        return await self._resampler.resample(pcm, rate, self.sample_rate)


async def run_bot(connection: SmallWebRTCConnection, args: argparse.Namespace) -> None:
    transport = SmallWebRTCTransport(
        webrtc_connection=connection,
        params=TransportParams(audio_in_enabled=True, audio_out_enabled=True),
    )
    stt = WhisperSTTService(
        settings=WhisperSTTService.Settings(model=args.whisper_dir, language=Language.EN),
        device="cpu", compute_type="int8",
    )
    llm = OpenAILLMService(
        base_url=args.llm_url, api_key="none",
        settings=OpenAILLMService.Settings(
            model=args.llm_model, system_instruction=args.system_prompt, max_tokens=args.max_tokens,
            temperature=args.temperature,
        ),
    )
    tts = HibariTTSService(voice=args.voice)
    context = LLMContext()
    user_aggregator, assistant_aggregator = LLMContextAggregatorPair(
        context, user_params=LLMUserAggregatorParams(vad_analyzer=SileroVADAnalyzer()),
    )
    pipeline = Pipeline([
        transport.input(), stt, user_aggregator, llm, tts, transport.output(), assistant_aggregator,
    ])
    worker = PipelineWorker(pipeline, params=PipelineParams(enable_metrics=True))

    @transport.event_handler("on_client_disconnected")
    async def on_client_disconnected(_transport, _client) -> None:
        await worker.cancel()

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    await runner.run()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--whisper-dir", required=True)
    parser.add_argument("--llm-url", required=True)
    parser.add_argument("--llm-model", required=True)
    parser.add_argument("--voice", default="heart")
    parser.add_argument("--system-prompt", required=True)
    parser.add_argument("--max-tokens", type=int, default=120)
    parser.add_argument("--temperature", type=float, default=0.3)
    args = parser.parse_args()
    logger.remove()
    logger.add(sys.stderr, level="INFO")
    bots: set[asyncio.Task[None]] = set()

    async def offer(request: web.Request) -> web.Response:
        body = await request.json()
        connection = SmallWebRTCConnection()
        await connection.initialize(sdp=body["sdp"], type=body["type"])
        bot = asyncio.create_task(run_bot(connection, args))
        bots.add(bot)
        bot.add_done_callback(bots.discard)
        return web.json_response(connection.get_answer())

    async def health(_request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "calls": len(bots)})

    async def stop_bots(_app: web.Application) -> None:  # SIGTERM: end the calls, then the process
        for bot in list(bots):
            bot.cancel()
        await asyncio.gather(*bots, return_exceptions=True)

    app = web.Application()
    app.on_shutdown.append(stop_bots)
    app.router.add_post("/api/offer", offer)
    app.router.add_get("/healthz", health)
    print(json.dumps({"ready": f"http://127.0.0.1:{args.port}"}), flush=True)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
