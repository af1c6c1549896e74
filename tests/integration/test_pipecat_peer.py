"""The bench's Pipecat peer (its own virtualenv, the same models) answers a spoken question through the
bench's caller — so the side-by-side comparison in `make bench` cannot silently rot. Nothing is timed."""

from __future__ import annotations

import pytest

from parley.bench.pipecat_peer import measure_pipecat, venv_dir
from parley.bench.questions import load_questions
from parley.server.config import load_settings

pytestmark = pytest.mark.slow


async def test_the_pipecat_peer_answers_a_spoken_question(tmp_path, settings):
    cache = load_settings().cache_dir
    if not (venv_dir(cache) / ".requirements").exists():
        pytest.fail("the Pipecat peer's virtualenv is missing: `make test` installs it (Makefile: .pipecat-peer)")
    small = load_settings(environ={"PARLEY_LLM__MODEL": settings.llm.model})
    questions = load_questions(tmp_path / "questions", 1)
    paused = []
    result = await measure_pipecat(small, questions, paused, tmp_path / "logs")
    single = result["single_call"]
    assert single["answered"] == 1, single["turns"]
    assert single["voice_to_voice_s"]["n"] == 1 and single["voice_to_voice_s"]["p50"] > 0
    assert single["cpu_cores_busy"] > 0  # the bot and its LLM server did the work
    log = (tmp_path / "logs" / "pipecat.log").read_text()
    assert "Pipecat 1.14.0" in log  # the pinned Pipecat, from its own virtualenv
