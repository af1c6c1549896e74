"""OpenQuestions: the question a caller is still asking — held words, a turn whose reply nobody heard."""

from __future__ import annotations

import asyncio
import time

import numpy as np

from parley.agents.caller_lines import CallerLines
from parley.agents.conversation import Conversation
from parley.agents.open_question import OpenQuestions
from parley.agents.profile import AgentProfile, Speaker
from parley.agents.reply_turn import Turn
from parley.agents.stage_timer import TurnTimer

ADA = Speaker("p-ada", "Ada")
BO = Speaker("p-bo", "Bo")


def _questions(current: list[Turn | None]) -> tuple[OpenQuestions, CallerLines]:
    profile = AgentProfile("Parley", "Be brief.", "en", "always", object())  # type: ignore[arg-type]
    lines = CallerLines()
    return OpenQuestions(lambda: current[0], Conversation(profile, max_turns=4), profile, lambda: 1, lines), lines


def test_held_words_lead_the_question_and_keep_their_line() -> None:
    asking, lines = _questions([None])
    assert asking.so_far(ADA, "France?") == "France?"
    asking.hold(ADA, "What is the capital of?", 3, np.zeros(160, np.float32))
    assert asking.so_far(ADA, "France?") == "What is the capital of France?"
    assert asking.so_far(ADA, "What is the capital of France?", held=False) == "What is the capital of France?"
    assert asking.so_far(BO, "France?") == "France?"  # held for Ada only
    assert asking.interim_line(ADA, "France") == (3, "What is the capital of France")
    assert asking.interim_line(BO, "Hi") == (lines.current(BO.participant_id), "Hi")
    assert asking.take_held(ADA.participant_id) is not None and asking.held(ADA.participant_id) is None


async def test_a_reply_nobody_heard_takes_the_next_words_as_its_continuation() -> None:
    turn = Turn(1, TurnTimer(1, time.monotonic(), time.monotonic()), "What is the capital", speaker=ADA, utterance_id=2)
    turn.task = asyncio.create_task(asyncio.sleep(10))
    asking, lines = _questions([turn])
    try:
        assert asking.unheard_turn_of(ADA) is turn and asking.unheard_turn_of(BO) is None
        assert asking.interim_line(ADA, "of France?") == (2, "What is the capital of France?")
        assert lines.give_back(2)  # the line was borrowed for the continuation
        prompt = asking.prompt_if_asked("What is the capital of France?", ADA)
        assert prompt[-1].content.endswith("What is the capital of France?")
        turn.audio_started = True  # now heard: the next words are a new question
        assert asking.unheard_turn_of(ADA) is None
        assert asking.so_far(ADA, "Thanks.") == "Thanks."
    finally:
        turn.task.cancel()
