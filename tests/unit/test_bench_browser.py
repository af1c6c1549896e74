"""The browser latency section's arithmetic: questions and the agent's first sound in the page's block peaks."""

from pathlib import Path

import numpy as np
import pytest

from parley.bench import report
from parley.bench.browser import GAP_S, LEAD_S, TAIL_S, fake_mic, heard_turns
from parley.bench.questions import RATE, Question
from parley.core.audio import read_wav

BLOCK_S = 0.01


def _blocks(*runs: tuple[float, float]) -> list[float]:
    """Peaks per 10 ms block: (seconds, peak) runs one after another."""
    out: list[float] = []
    for seconds, peak in runs:
        out += [peak] * round(seconds / BLOCK_S)
    return out


def test_each_question_is_timed_from_its_last_loud_block_to_the_agents_first():
    mic = _blocks((1.0, 0.0), (2.0, 0.3), (6.0, 0.0), (1.5, 0.3), (6.0, 0.0))
    agent = _blocks((3.9, 0.0), (2.0, 0.2), (4.6, 0.0), (0.3, 0.001), (0.4, 0.0), (1.0, 0.2), (2.3, 0.0))
    turns = heard_turns(mic, agent, BLOCK_S)
    assert len(turns) == 2
    assert turns[0].question_end_s == pytest.approx(3.0)
    assert turns[0].voice_to_voice_s == pytest.approx(0.9)
    # A faint sound (below the loudness threshold) is not the agent's answer.
    assert turns[1].question_end_s == pytest.approx(10.5)
    assert turns[1].voice_to_voice_s == pytest.approx(0.7)


def test_a_short_pause_inside_a_question_does_not_split_it_and_a_question_without_answer_has_none():
    mic = _blocks((0.5, 0.0), (1.0, 0.3), (0.8, 0.0), (1.0, 0.3), (5.0, 0.0), (1.0, 0.3), (3.0, 0.0))
    agent = _blocks((4.0, 0.0), (1.0, 0.2), (7.3, 0.0))
    turns = heard_turns(mic, agent, BLOCK_S)
    assert [round(t.question_end_s, 2) for t in turns] == [3.3, 9.3]
    assert turns[0].voice_to_voice_s == pytest.approx(0.7)
    assert turns[1].agent_sound_s is None and turns[1].voice_to_voice_s is None


def test_an_answer_is_counted_only_for_the_question_it_follows_and_only_if_it_starts_after_it():
    # The agent starts during the second question (after the first one's pause), and talks past its end.
    mic = _blocks((1.0, 0.3), (2.5, 0.0), (1.0, 0.3), (3.0, 0.0))
    agent = _blocks((4.0, 0.0), (1.0, 0.2), (2.5, 0.0))
    turns = heard_turns(mic, agent, BLOCK_S)
    assert turns[0].agent_sound_s is None
    assert turns[1].agent_sound_s is None


def test_the_fake_microphone_holds_each_question_once_between_silences(tmp_path: Path):
    questions = [Question("a", np.full(RATE // 2, 0.3, np.float32)), Question("b", np.full(RATE, 0.3, np.float32))]
    listen_s = fake_mic(questions, tmp_path / "mic.wav")
    samples, rate = read_wav(tmp_path / "mic.wav")
    assert rate == RATE
    assert listen_s == pytest.approx(LEAD_S + 1.5 + 2 * GAP_S)
    assert samples.size / RATE == pytest.approx(listen_s + TAIL_S)
    block = int(BLOCK_S * RATE)
    peaks = [float(np.abs(samples[i:i + block]).max()) for i in range(0, samples.size, block)]
    turns = heard_turns(peaks, [0.0] * len(peaks), BLOCK_S)
    assert [round(t.question_end_s, 2) for t in turns] == [LEAD_S + 0.5, LEAD_S + 0.5 + GAP_S + 1.0]


def test_the_report_shows_the_browser_section():
    run = {"started_at": "now", "machine": "m", "profile": "cpu", "models": "x",
           "browser": {"questions": 2, "answered": 2, "voice_to_voice_s": {"p50": 1.05, "p95": 1.2},
                       "turns": [{"question": "a", "voice_to_voice_s": 1.1}, {"question": "b", "voice_to_voice_s": 1.0}]}}
    text = report.markdown(run)
    assert "Heard in a real browser" in text
    assert "| 2/2 | 1050 | 1200 | 1100 |" in text


def test_monologues_are_real_sentences_joined_by_each_pause():
    from parley.bench.questions import LIBRIVOX, MONOLOGUE_PAUSES_S, load_monologues

    if not LIBRIVOX.is_dir():
        pytest.fail("pocketsphinx-testdata is missing: `make test` installs it")
    first, second = load_monologues()
    assert second.duration_s - first.duration_s == pytest.approx(3 * (MONOLOGUE_PAUSES_S[1] - MONOLOGUE_PAUSES_S[0]), abs=0.01)
    block = RATE // 100
    peaks = [float(np.abs(first.samples[i:i + block]).max()) for i in range(0, first.samples.size - block, block)]
    silent_runs, run = [], 0
    for peak in peaks:
        run = run + 1 if peak < 1e-6 else 0
        if run == 55:  # 0.55 s of digital silence: one of the pauses between sentences
            silent_runs.append(peak)
    assert len(silent_runs) == 3
    assert peaks[0] > 0 or peaks[5] > 0  # starts on the first word, not on silence


def test_the_report_shows_the_monologue_section():
    turn = {"question": "4 sentences read aloud, 0.6 s between them", "premature": False, "caller_lines": 1, "voice_to_voice_s": 1.53}
    run = {"started_at": "now", "machine": "m", "profile": "cpu", "models": "x", "monologue": {"streaming": {"turns": [turn]}}}
    assert "| streaming | 0.6 s between them | no | 1 | 1530 |" in report.markdown(run)
