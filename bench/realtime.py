"""Voice to voice over OpenAI's Realtime WebSocket API (``/v1/realtime``), with OpenAI's own Python SDK.

One session asks every question as a microphone would send it (100 ms appends in real time, then
silence until the answer is over). Voice to voice: from the moment the question's last loud sample
was appended to the first loud sample of the answer's audio deltas, as received (a client plays a
delta when it arrives). The same questions as the WebRTC call, on the same server.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from typing import Any

import numpy as np

from parley.bench.questions import RATE as QUESTION_RATE, Question
from parley.bench.scenarios import PAUSE_BETWEEN_QUESTIONS_S, turns_report
from parley.core.audio import float_to_int16, int16_to_float, resample
from parley.signaling.client import LOUD, TurnResult

AUDIO_RATE = 24_000
CHUNK = AUDIO_RATE // 10


async def _ask(connection: Any, question: Question, timeout: float) -> TurnResult:
    pcm = float_to_int16(resample(question.samples, QUESTION_RATE, AUDIO_RATE))
    loud = np.flatnonzero(np.abs(int16_to_float(pcm)) > LOUD)
    last_loud = int(loud[-1]) if loud.size else pcm.size - 1
    speech_end: float | None = None
    heard: float | None = None
    user_text = agent_text = ""
    done = asyncio.Event()

    async def read() -> None:
        nonlocal heard, user_text, agent_text
        while True:
            event = json.loads(await connection.recv_bytes())
            kind = event["type"]
            if kind == "conversation.item.input_audio_transcription.completed":
                user_text = event["transcript"]
            elif kind == "response.output_audio.delta" and heard is None and speech_end is not None:
                audio = int16_to_float(np.frombuffer(base64.b64decode(event["delta"]), "<i2"))
                first = np.flatnonzero(np.abs(audio) > LOUD)
                if first.size:
                    heard = time.monotonic() + first[0] / AUDIO_RATE
            elif kind == "response.output_audio_transcript.done":
                agent_text = event["transcript"]
            elif kind == "response.done" and speech_end is not None:
                done.set()

    reader = asyncio.create_task(read())
    try:
        silence = np.zeros(CHUNK, np.int16)
        for start in range(0, pcm.size, CHUNK):
            chunk = pcm[start : start + CHUNK]
            sent = time.monotonic()
            await connection.input_audio_buffer.append(audio=base64.b64encode(chunk.astype("<i2").tobytes()).decode())
            if start <= last_loud < start + CHUNK:
                speech_end = sent + (last_loud - start) / AUDIO_RATE
            await asyncio.sleep(0.1)
        deadline = time.monotonic() + timeout
        while not done.is_set() and time.monotonic() < deadline:  # a live microphone goes on sending silence
            await connection.input_audio_buffer.append(audio=base64.b64encode(silence.astype("<i2").tobytes()).decode())
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(done.wait(), 0.1)
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
    answered = done.is_set() and heard is not None and speech_end is not None
    return TurnResult(
        answered=answered, voice_to_voice_s=(heard - speech_end) if answered else None,  # type: ignore[operator]
        user_text=user_text, agent_text=agent_text,
    )


async def realtime_turns(url: str, api_key: str, questions: list[Question], timeout: float = 90.0) -> dict[str, Any]:
    """One Realtime WebSocket session asks every question in turn."""
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=f"{url}/v1", api_key=api_key)
    results = []
    try:
        async with client.realtime.connect(model="parley") as connection:
            json.loads(await connection.recv_bytes())  # session.created
            for question in questions:
                results.append(await _ask(connection, question, timeout))
                await asyncio.sleep(PAUSE_BETWEEN_QUESTIONS_S)
    finally:
        await client.close()
    return turns_report(questions, results)
