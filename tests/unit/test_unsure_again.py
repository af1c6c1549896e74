"""A pause's transcript the main model is unsure of, heard again at once by the larger ear
(``stt.hear_unsure_again``): which transcript is kept, when the larger ear is asked, and that the hold
does not ask it again. The logic around stand-in models; the real ones are in
tests/integration/test_hear_again.py."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from types import SimpleNamespace

import numpy as np
import pytest

from parley.agents.runtime import AgentModels
from parley.agents.speech_models import SpeechModels
from parley.agents.stt.base import Transcript


PROFILE = SimpleNamespace(language="en", name="Parley")  # (what SpeechModels reads of a room's profile)


class ScoredStandIn:
    """Says what it was told to, as sure as it was told to be; counts its passes."""

    name = "stand-in"

    def __init__(self, text: str, logprob: float | None, fail: bool = False) -> None:
        self.text, self.logprob, self.fail, self.passes = text, logprob, fail, 0

    def transcribe(self, samples, language=None, hotwords=None) -> str:
        return self.transcribe_scored(samples, language, hotwords)[0]

    def transcribe_scored(self, samples, language=None, hotwords=None):
        self.passes += 1
        if self.fail:
            raise RuntimeError("the model broke")
        return self.text, self.logprob


class BatchingStandIn(ScoredStandIn):
    def transcribe_batch(self, requests):
        return [self.transcribe(r.samples) for r in requests]

    def transcribe_batch_scored(self, requests):
        return [self.transcribe_scored(r.samples) for r in requests]


def _models(settings, main, larger, **stt) -> AgentModels:
    pipeline = settings.model_copy(update={"stt": settings.stt.model_copy(update=stt)}) if stt else settings
    executor = ThreadPoolExecutor(1)
    return AgentModels(
        vad=None, end_of_turn=None, stt=main, llm=None, tts=None, executor=executor,  # type: ignore[arg-type]
        vad_executor=executor, settings=pipeline, multilingual=larger,
    )


@pytest.mark.parametrize(
    ("heard", "kept"),
    [
        (Transcript("I'm out of the minute", -1.41, "How many minutes are in an hour?", -0.25), "How many minutes are in an hour?"),
        (Transcript("Tell me about cats.", -1.2, "Tell me about cards.", -1.3), "Tell me about cats."),  # the larger ear less sure
        (Transcript("Hm.", -1.5, "  ", -0.1), "Hm."),  # the larger ear heard no words
        (Transcript("Why is notion salty?", -1.1), "Why is notion salty?"),  # not asked
        (Transcript("Why is notion salty?", None, "Why is the ocean salty?", -0.2), "Why is notion salty?"),
    ],
)
def test_the_surer_transcript_is_kept(heard: Transcript, kept: str):
    assert heard.surer == kept


async def test_only_an_unsure_transcript_is_heard_again_and_the_surer_one_kept(settings):
    main, larger = ScoredStandIn("while in photos in the face.", -1.28), ScoredStandIn("What in photosynthesis?", -0.41)
    models = _models(settings, main, larger)
    assert models.hears_unsure_again
    heard = await models.transcribe_checked(np.zeros(16_000, np.float32), "en")
    assert (heard.surer, larger.passes) == ("What in photosynthesis?", 1)
    main.text, main.logprob = "What is photosynthesis?", -0.3  # sure enough: the larger ear is not asked
    heard = await models.transcribe_checked(np.zeros(16_000, np.float32), "en")
    assert (heard.surer, heard.again, larger.passes) == ("What is photosynthesis?", None, 1)
    assert models.early_stt.as_dict()["heard_unsure"] == 1 and models.early_stt.as_dict()["unsure_replaced"] == 1


async def test_an_unsure_transcript_goes_through_the_batcher_and_a_failed_second_pass_leaves_it(settings):
    main, larger = BatchingStandIn("below, below, below", -1.5), ScoredStandIn("", None, fail=True)
    models = _models(settings, main, larger)
    assert models.stt_batcher is not None  # (batching is on by default)
    try:
        heard = await models.transcribe_checked(np.zeros(16_000, np.float32), "en")
    finally:
        await models.stt_batcher.close()
    assert (heard.surer, main.passes, larger.passes) == ("below, below, below", 1, 1)
    assert models.early_stt.as_dict()["heard_unsure"] == 0  # (a failed pass heard nothing)


async def test_switched_off_or_without_a_larger_ear_nothing_is_heard_again(settings):
    assert not _models(settings, ScoredStandIn("x", -2.0), ScoredStandIn("y", -0.1), hear_unsure_again=False).hears_unsure_again
    assert not _models(settings, ScoredStandIn("x", -2.0), None).hears_unsure_again
    main, larger = ScoredStandIn("x", -0.9), ScoredStandIn("y", -0.1)
    models = _models(settings, main, larger, unsure_logprob=-0.5)  # a stricter threshold
    assert (await models.transcribe_checked(np.zeros(16_000, np.float32))).surer == "y"


async def test_held_words_heard_again_already_are_not_heard_a_third_time(settings):
    main, larger = ScoredStandIn("I'm out of the minute, sorry, not hot", -1.41), ScoredStandIn("How many minutes are we not hour?", -0.6)
    models = _models(settings, main, larger)
    speech = SpeechModels(models, settings.agent, PROFILE, group=lambda: False, logger=logging.getLogger("test"))
    audio = np.zeros(16_000, np.float32)
    assert await speech.transcribe(audio) == "I'm out of the minute, sorry, not hot"  # (not a pass the turn waits for)
    assert larger.passes == 0
    text = await speech.transcribe_after(audio, None, doubting=True)
    assert text == "How many minutes are we not hour?" and larger.passes == 1
    # Held as cut short: the larger ear's words for that audio are known, and come back without a pass.
    assert await speech.hear_again(audio, text) == "How many minutes are we not hour?" and larger.passes == 1
    assert await speech.hear_again(audio, "other words") == "How many minutes are we not hour?" and larger.passes == 2


async def test_a_group_call_is_not_heard_again(settings):
    main, larger = ScoredStandIn("Partly, what time is it?", -1.3), ScoredStandIn("Parley, what time is it?", -0.2)
    speech = SpeechModels(
        _models(settings, main, larger), settings.agent, PROFILE, group=lambda: True,
        logger=logging.getLogger("test"),
    )
    assert await speech.transcribe(np.zeros(16_000, np.float32), doubting=True) == "Partly, what time is it?"
    assert larger.passes == 0
