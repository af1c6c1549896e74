"""A Python bot that joins a Parley room and talks: it says each line with Parley's own CPU voice (or
plays WAV files), waits for the agent's spoken answer, and prints the conversation.

    python examples/bot.py --url http://127.0.0.1:8080 --room default --say "What is the capital of France?"
    python examples/bot.py --url http://127.0.0.1:8080 --api-key KEY --room support --wav question.wav

With --api-key it mints its own join token (admin REST API); without, it asks a dev-mode server
(`make run`) for one. Other people in the room hear the bot like any participant.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import numpy as np

from parley.core.audio import read_wav, resample
from parley.signaling.client import ParleyAdmin, ParleyClient
from parley.core import aiortc_hooks


def speak(text: str, voice: str) -> np.ndarray:
    """``text`` as 48 kHz speech from hibari (the embedded TTS that ships with Parley)."""
    from parley.agents.tts.hibari import HibariTts

    tts = HibariTts(voice)
    return resample(tts.synthesize(text), tts.sample_rate, 48_000)


async def run(args: argparse.Namespace) -> int:
    aiortc_hooks.install()
    token = None
    if args.api_key:
        async with ParleyAdmin(args.url, args.api_key) as admin:
            token = (await admin.token(args.room, args.identity, name=args.name))["token"]
    bot = ParleyClient(args.url, room=args.room, token=token, name=args.name, identity=args.identity)
    bot.on("transcript", lambda t: t["final"] and t["participant_id"] != bot.participant_id and print(f"{t['name']}: {t['text']}"))
    bot.on("error", lambda e: print(f"error {e['code']}: {e['message']}", file=sys.stderr))
    await bot.start()
    print(f"joined room {args.room} as {args.name} ({bot.participant_id})")
    clips = [(text, speak(text, args.voice)) for text in args.say] + [(path, resample(*read_wav(path), 48_000)) for path in args.wav]
    answered = 0
    try:
        for label, samples in clips:
            print(f"{args.name}: {label}")
            result = await bot.ask(samples, timeout=args.timeout)
            answered += result.answered
            if result.voice_to_voice_s is not None:
                print(f"   (answer heard {result.voice_to_voice_s:.2f} s after the question ended)")
    finally:
        await bot.close()
    return 0 if answered == len(clips) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8080", help="Parley's address")
    parser.add_argument("--room", default="default")
    parser.add_argument("--api-key", help="mint the token with the admin API (else: dev-mode token)")
    parser.add_argument("--name", default="Bot")
    parser.add_argument("--identity", default="bot-1")
    parser.add_argument("--say", action="append", default=[], help="a line to say (repeatable)")
    parser.add_argument("--wav", action="append", default=[], help="a WAV file to play (repeatable)")
    parser.add_argument("--voice", default="heart", help="hibari voice for --say")
    parser.add_argument("--timeout", type=float, default=60.0, help="longest wait for each answer (s)")
    args = parser.parse_args(argv)
    if not (args.say or args.wav):
        parser.error("give at least one --say or --wav")
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
