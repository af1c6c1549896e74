"""Talk to Parley through OpenAI's Realtime API with OpenAI's own Python SDK: only the base URL changes.

Speaks a WAV file (or a line said by Parley's CPU voice) into a Realtime session as a microphone
would, 100 ms at a time in real time, prints what the server heard and answered, and saves the
answer's audio as a WAV.

    pip install openai websockets
    python examples/realtime_client.py --url http://127.0.0.1:8080 --api-key KEY --say "What is the capital of France?"
    python examples/realtime_client.py --url http://127.0.0.1:8080 --api-key KEY --wav question.wav --out answer.wav

The key is Parley's admin API key or a client secret (`POST /v1/realtime/client_secrets`); a dev-mode
server (`make run`) writes its admin key to ~/.cache/parley/dev-admin-key. See docs/realtime.md.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import sys

import numpy as np

from parley.core.audio import float_to_int16, int16_to_float, read_wav, resample, write_wav

RATE = 24_000  # the Realtime API's pcm16 rate


def question(args: argparse.Namespace) -> np.ndarray:
    if args.wav:
        samples, rate = read_wav(args.wav)
        return resample(samples, rate, RATE)
    from parley.agents.tts.hibari import HibariTts

    tts = HibariTts("heart")
    return resample(tts.synthesize(args.say), tts.sample_rate, RATE)


async def talk(args: argparse.Namespace) -> int:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=f"{args.url.rstrip('/')}/v1", api_key=args.api_key)
    pcm = float_to_int16(np.concatenate([question(args), np.zeros(int(1.5 * RATE), np.float32)]))
    answer = bytearray()
    async with client.realtime.connect(model="parley") as connection:
        await connection.session.update(session={"type": "realtime", "instructions": args.instructions})
        for start in range(0, pcm.size, RATE // 10):  # as a microphone sends it: 100 ms, in real time
            chunk = pcm[start : start + RATE // 10].astype("<i2").tobytes()
            await connection.input_audio_buffer.append(audio=base64.b64encode(chunk).decode())
            await asyncio.sleep(0.1)
        async for event in connection:
            if event.type == "conversation.item.input_audio_transcription.completed":
                print(f"heard: {event.transcript}")
            elif event.type == "response.output_audio.delta":
                answer += base64.b64decode(event.delta)
            elif event.type == "response.output_audio_transcript.done":
                print(f"answered: {event.transcript}")
            elif event.type == "error":
                print(f"error {event.error.code}: {event.error.message}", file=sys.stderr)
            elif event.type == "response.done":
                break
    await client.close()
    audio = int16_to_float(np.frombuffer(bytes(answer), "<i2"))
    if args.out:
        write_wav(args.out, audio, RATE)
        print(f"saved {audio.size / RATE:.1f} s of the answer to {args.out}")
    return 0 if audio.size else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8080", help="the Parley server")
    parser.add_argument("--api-key", required=True, help="admin API key or a client secret (ek_…)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--say", default="What is the capital of France?", help="a line to say with Parley's CPU voice")
    source.add_argument("--wav", help="a WAV file to speak instead")
    parser.add_argument("--instructions", default="Answer in one short sentence.")
    parser.add_argument("--out", help="save the answer's audio here (WAV, 24 kHz)")
    return asyncio.run(talk(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
