"""The sentence-end judgement's logic around the LLM (the LLM itself is asked in
tests/integration/test_sentence_end_llm.py): which words are asked, how a verdict started at a pause is
reused, and how the server's top candidates become a probability."""

from __future__ import annotations

import asyncio
import math

from parley.agents.llm.base import ChatMessage
from parley.agents.llm.openai_compat import sentence_end_mass
from parley.agents.sentence_end import SentenceEnds, words_so_far


class ScoringLlm:
    """Gives each asked text a set probability (and records what it was asked)."""

    def __init__(self, scores: dict[str, float | None], delay_s: float = 0.0) -> None:
        self.scores, self.delay_s = scores, delay_s
        self.asked: list[str] = []

    async def sentence_end_probability(self, messages: list[ChatMessage], words: str) -> float | None:
        self.asked.append(words)
        assert messages[-1].content == words  # the conversation as it would be asked with these words
        await asyncio.sleep(self.delay_s)
        return self.scores.get(words)


def ask(words: str) -> list[ChatMessage]:
    return [ChatMessage(role="system", content="Be brief."), ChatMessage(role="user", content=words)]


def test_sentence_end_mass_counts_only_candidates_that_end_the_message():
    top = [
        {"token": "?", "logprob": math.log(0.5)},
        {"token": "", "logprob": math.log(0.2)},  # the template's end-of-message token prints as nothing
        {"token": "?\n", "logprob": math.log(0.1)},
        {"token": " to", "logprob": math.log(0.1)},
        {"token": ",", "logprob": math.log(0.05)},
        {"token": "。", "logprob": math.log(0.05)},
    ]
    assert math.isclose(sentence_end_mass(top), 0.85)
    assert sentence_end_mass([{"token": " to", "logprob": -0.1}, {"token": " for", "logprob": -2.0}]) == 0.0
    assert sentence_end_mass([]) == 0.0


def test_words_so_far_drops_only_the_punctuation_whisper_guessed_at_the_end():
    assert words_so_far(" How long does it take? ") == "How long does it take"
    assert words_so_far("Well, what is it…") == "Well, what is it"
    assert words_so_far("你好吗？") == "你好吗"


async def test_a_low_sentence_end_probability_reads_as_unfinished():
    llm = ScoringLlm({"What is the best way": 0.0, "Why do leaves change colour in autumn": 0.93})
    ends = SentenceEnds(llm, threshold=0.02, min_words=3)
    cut = await ends.verdict("a", "What is the best way?", "en", ask)
    whole = await ends.verdict("a", "Why do leaves change colour in autumn?", "en", ask)
    assert cut.unfinished and cut.probability == 0.0
    assert not whole.unfinished and whole.probability == 0.93
    assert llm.asked == ["What is the best way", "Why do leaves change colour in autumn"]


async def test_a_question_cut_after_do_and_one_word_is_unfinished_whatever_the_llm_says():
    """Whisper hears "Why do leaves" as "Why do leave", which the LLM scored 0.016–0.03 (around the 0.02
    threshold) in make bench: the grammar says it has no verb yet, so the LLM is not asked."""
    llm = ScoringLlm({"Why do leave": 0.03, "Why did you": 0.4})
    ends = SentenceEnds(llm, threshold=0.02, min_words=3)
    misheard = await ends.verdict("a", "Why do leave?", "en", ask)
    elliptical = await ends.verdict("a", "Why did you?", "en", ask)
    assert misheard.unfinished and misheard.probability is None
    assert not elliptical.unfinished and elliptical.probability == 0.4
    assert llm.asked == ["Why did you"]


async def test_short_answers_other_languages_and_open_endings_do_not_ask_the_llm():
    llm = ScoringLlm({})
    ends = SentenceEnds(llm, threshold=0.02, min_words=3)
    assert not (await ends.verdict("a", "No.", "en", ask)).unfinished  # two words or fewer: an answer
    assert (await ends.verdict("a", "Because of", "en", ask)).unfinished  # ... unless the word list says so
    assert not (await ends.verdict("a", "Wie spät ist es?", "de", ask)).unfinished  # not measured: not asked
    assert (await ends.verdict("a", "北京的天气，", "zh", ask)).unfinished  # a trailing comma, in any language
    assert (await ends.verdict("a", "So what I was thinking is…", "en", ask)).unfinished  # an ellipsis: not asked
    assert llm.asked == []
    off = SentenceEnds(llm, threshold=0.0, min_words=3)
    assert not (await off.verdict("a", "What is the best way?", "en", ask)).unfinished
    assert (await off.verdict("a", "What is the capital of?", "en", ask)).unfinished  # the word list decides
    assert llm.asked == []


async def test_the_llm_overrules_the_word_list_and_the_word_list_stands_in_when_it_cannot_say():
    llm = ScoringLlm({"How many legs does a spider have": 0.88, "Where are you from": 0.89, "What is the capital of": None})
    ends = SentenceEnds(llm, threshold=0.02, min_words=3)
    assert not (await ends.verdict("a", "How many legs does a spider have?", "en", ask)).unfinished  # "have" dangles in the list
    assert not (await ends.verdict("a", "Where are you from?", "en", ask)).unfinished
    unsure = await ends.verdict("a", "What is the capital of?", "en", ask)
    assert unsure.unfinished and unsure.probability is None  # no answer from the LLM: the dangling "of" holds it


async def test_an_llm_that_does_not_answer_in_time_does_not_hold_the_turn(monkeypatch):
    from parley.agents import sentence_end

    monkeypatch.setattr(sentence_end, "ASK_TIMEOUT_S", 0.05)
    ends = SentenceEnds(ScoringLlm({"How long does it take": 0.0}, delay_s=1.0), threshold=0.02, min_words=3)
    started = asyncio.get_running_loop().time()
    verdict = await ends.verdict("a", "How long does it take?", "en", ask)
    assert not verdict.unfinished and verdict.probability is None
    assert asyncio.get_running_loop().time() - started < 0.5


async def test_while_the_llm_writes_the_calls_reply_the_word_rules_decide_without_asking_it():
    """The call's reply is being written in the call's slot of the LLM server: a question now would wait
    behind it past the timeout (a caller going on over an unheard reply, or barging in)."""
    writing = True
    llm = ScoringLlm({"How long does it take": 0.0, "Where are you from": 0.9})
    ends = SentenceEnds(llm, threshold=0.02, min_words=3, writing=lambda: writing)
    assert not (await ends.verdict("a", "How long does it take?", "en", ask)).unfinished  # no dangling word
    assert (await ends.verdict("a", "Tell me about the?", "en", ask)).unfinished  # the word list still holds "the"
    assert llm.asked == []
    writing = False
    assert (await ends.verdict("a", "How long does it take?", "en", ask)).unfinished  # the LLM, once it is free
    assert llm.asked == ["How long does it take"]


async def test_a_server_that_cannot_say_leaves_the_turn_to_the_voice():
    ends = SentenceEnds(ScoringLlm({"What is the best way": None}), threshold=0.02, min_words=3)
    verdict = await ends.verdict("a", "What is the best way?", "en", ask)
    assert not verdict.unfinished and verdict.probability is None
    assert not (await SentenceEnds(object(), 0.02, 3).verdict("a", "What is the best way?", "en", ask)).unfinished  # type: ignore[arg-type]


async def test_a_verdict_started_at_the_pause_is_used_for_the_same_words_only():
    llm = ScoringLlm({"How long does it take": 0.01, "How long does it take to boil an egg": 0.7}, delay_s=0.05)
    ends = SentenceEnds(llm, threshold=0.02, min_words=3)
    ends.start("a", "How long does it take?", "en", ask)
    assert len(ends.tasks) == 1
    assert (await ends.verdict("a", "How long does it take?", "en", ask)).unfinished
    assert llm.asked == ["How long does it take"]  # asked once, at the pause
    ends.start("a", "How long does it take?", "en", ask)
    verdict = await ends.verdict("a", "How long does it take to boil an egg?", "en", ask)  # other words: judged anew
    assert not verdict.unfinished and ends.tasks == []


async def test_dropping_and_closing_cancel_verdicts_in_flight():
    ends = SentenceEnds(ScoringLlm({}, delay_s=10), threshold=0.02, min_words=3)
    ends.start("a", "How long does it take?", "en", ask)
    ends.start("b", "What is the best way?", "en", ask)
    first, second = ends.tasks
    ends.drop("a")
    await asyncio.sleep(0)
    assert first.cancelled() and not second.done()
    await ends.close()
    assert second.cancelled() and ends.tasks == []


async def test_the_llm_is_asked_only_once_the_cache_is_free():
    """A priming request still in the LLM holds the conversation's cache slot: the judgement waits for it
    instead of landing beside it in a slot that would evaluate the whole conversation again."""
    llm = ScoringLlm({"What is the capital of France": 0.9})
    priming_done = asyncio.Event()
    order: list[str] = []

    async def cache_free() -> None:
        await priming_done.wait()
        order.append("cache free")

    ends = SentenceEnds(llm, threshold=0.02, min_words=3, cache_free=cache_free)
    ends.start("a", "What is the capital of France?", "en", ask)
    await asyncio.sleep(0.02)
    assert llm.asked == [] and ends.tasks  # still waiting for the priming request
    priming_done.set()
    verdict = await ends.verdict("a", "What is the capital of France?", "en", ask)
    assert not verdict.unfinished and order == ["cache free"] and llm.asked == ["What is the capital of France"]


async def test_chinese_words_are_asked_by_characters_with_their_own_threshold():
    """Mandarin has no spaces: four characters or more are asked (fewer read by the word rules), and the
    verdict uses the "zh" threshold (0.1 by default), not English's 0.02."""
    llm = ScoringLlm({"中国的首都是": 0.03, "熊猫吃什么": 0.65, "一年有多少天": 0.2})
    ends = SentenceEnds(llm, threshold=0.02, min_words=3, thresholds={"zh": 0.1})
    cut = await ends.verdict("a", "中国的首都是。", "zh", ask)
    whole = await ends.verdict("a", "熊猫吃什么？", "zh", ask)
    short = await ends.verdict("a", "为什么？", "zh", ask)
    assert cut.unfinished and cut.probability == 0.03  # above English's threshold, below Chinese's
    assert not whole.unfinished and whole.probability == 0.65
    assert not short.unfinished and short.probability is None  # three characters: not asked
    assert not (await ends.verdict("a", "一年有多少天？", "zh-CN", ask)).unfinished
    assert llm.asked == ["中国的首都是", "熊猫吃什么", "一年有多少天"]
    assert ends.threshold_for("en") == 0.02 and ends.threshold_for("zh") == 0.1
    # A language nobody measured is not asked: the word rules decide (a trailing comma holds).
    assert (await SentenceEnds(llm, 0.02, 3).verdict("b", "Quelle est la capitale de la France", "fr", ask)).probability is None
    assert llm.asked == ["中国的首都是", "熊猫吃什么", "一年有多少天"]
