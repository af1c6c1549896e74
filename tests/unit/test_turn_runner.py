"""When the LLM yields the cores to a slow voice: only for a first chunk long enough to cover the next."""

from __future__ import annotations

import contextlib
from types import SimpleNamespace

import pytest

from parley.agents.turn_runner import TurnRunner


@pytest.mark.parametrize("first, held", [
    ("因为光的散射", True),  # the chunker's full first chunk (six characters): ~1.5 s to play
    ("因为太阳光", True),  # a full one cut where its word ends (因为太阳光 | 穿过): five characters
    ("当然可以，", True),  # four
    ("30天。", False),  # one Chinese character (and a number)
    ("The capital of France", True),
    ("是的，", False),  # cut at its comma: it would be over before the next was written and voiced
    ("Yes,", False),
])
def test_the_llm_yields_to_a_slow_voice_only_for_a_full_first_chunk(first, held):
    runner = object.__new__(TurnRunner)  # (only its LLM side is used here)
    asked: list[str] = []
    runner._ahead = SimpleNamespace(yielding=lambda: asked.append(first) or contextlib.nullcontext(True))  # type: ignore[attr-defined]
    with runner._yield_to_voice(first) as stopped:
        assert stopped is held
    assert asked == ([first] if held else [])
