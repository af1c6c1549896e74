"""Endpointing logic, driven by scripted VAD probabilities (the real VAD has its own test)."""

import numpy as np
import pytest

from parley.agents.endpointer import (
    Endpointer, InterimAudio, SpeechConfirmed, SpeechDiscarded, SpeechPaused, SpeechResumed, SpeechStarted, Utterance,
)

WINDOW = 512  # 32 ms at 16 kHz


class ScriptedVad:
    window_samples = WINDOW

    def __init__(self, probs: list[float]) -> None:
        self._probs = list(probs)

    def probabilities(self, samples: np.ndarray) -> list[float]:
        n = samples.size // WINDOW
        out, self._probs = self._probs[:n], self._probs[n:]
        return out + [0.0] * (n - len(out))

    def reset(self) -> None:
        pass


def run(probs: list[float], **kwargs) -> list:
    endpointer = Endpointer(ScriptedVad(probs), **kwargs)
    events = []
    for i in range(len(probs)):
        events += endpointer.process(np.full(WINDOW, 0.1, np.float32), now=i * 0.032)
    return events


def windows(ms: float) -> int:
    return round(ms / 32)


def test_speech_then_silence_gives_one_utterance_with_preroll():
    probs = [0.0] * 20 + [0.9] * windows(800) + [0.0] * windows(600)
    events = run(probs, endpoint_silence_ms=450, preroll_ms=256)
    assert isinstance(events[0], SpeechStarted)
    utterances = [e for e in events if isinstance(e, Utterance)]
    assert len(utterances) == 1
    utt = utterances[0]
    # pre-roll (8 windows) + speech + the 200 ms tail of silence (not the whole 450 ms waited for)
    assert (8 + windows(800)) * WINDOW <= utt.samples.size <= (8 + windows(800) + windows(200) + 1) * WINDOW
    assert 0.40 <= utt.endpoint_at - utt.speech_end_at <= 0.5


def test_short_pause_continues_the_same_utterance():
    probs = [0.9] * windows(500) + [0.0] * windows(250) + [0.9] * windows(500) + [0.0] * windows(600)
    utterances = [e for e in run(probs, endpoint_silence_ms=450) if isinstance(e, Utterance)]
    assert len(utterances) == 1
    assert utterances[0].duration_s > 1.2


def test_long_pause_splits_utterances():
    probs = [0.9] * windows(500) + [0.0] * windows(700) + [0.9] * windows(500) + [0.0] * windows(700)
    assert len([e for e in run(probs, endpoint_silence_ms=450) if isinstance(e, Utterance)]) == 2


def test_click_shorter_than_min_speech_is_dropped():
    probs = [0.0] * 5 + [0.9] * 2 + [0.0] * windows(800)
    assert [e for e in run(probs, min_speech_ms=200) if isinstance(e, Utterance)] == []


def test_hysteresis_keeps_speech_through_dips():
    probs = [0.9] * 10 + [0.4] * windows(600) + [0.0] * windows(600)
    utterances = [e for e in run(probs, threshold=0.5, endpoint_silence_ms=450) if isinstance(e, Utterance)]
    assert len(utterances) == 1 and utterances[0].duration_s > 0.9


def test_max_utterance_forces_an_endpoint():
    probs = [0.9] * windows(3000)
    utterances = [e for e in run(probs, max_utterance_s=2.0) if isinstance(e, Utterance)]
    assert len(utterances) == 1 and abs(utterances[0].duration_s - 2.0) < 0.1


def test_a_blip_is_discarded_soon_after_it_ends():
    probs = [0.0] * 5 + [0.9] * 2 + [0.0] * windows(800)
    events = run(probs, min_speech_ms=200, discard_silence_ms=200, endpoint_silence_ms=450)
    discarded = [e for e in events if isinstance(e, SpeechDiscarded)]
    assert len(discarded) == 1
    assert discarded[0].at <= (5 + 2 + windows(200) + 1) * 0.032  # not after the full endpoint silence


def test_speech_is_confirmed_once_it_has_lasted_min_speech_ms_and_a_blip_never_is():
    speech = run([0.0] * 5 + [0.9] * windows(500) + [0.0] * windows(600), min_speech_ms=200)
    [confirmed] = [e for e in speech if isinstance(e, SpeechConfirmed)]
    started = next(e for e in speech if isinstance(e, SpeechStarted))
    assert 0.15 <= confirmed.at - started.at <= 0.2  # 200 ms of speech, counted from its first window
    blip = run([0.0] * 5 + [0.9] * 2 + [0.0] * windows(800), min_speech_ms=200)
    assert not [e for e in blip if isinstance(e, SpeechConfirmed)] and [e for e in blip if isinstance(e, SpeechDiscarded)]


def test_interim_audio_grows_while_speaking():
    probs = [0.9] * windows(1500) + [0.0] * windows(600)
    events = run(probs, interim_ms=320, preroll_ms=0)
    interims = [e.samples.size for e in events if isinstance(e, InterimAudio)]
    assert len(interims) >= 3 and interims == sorted(interims)
    assert len([e for e in events if isinstance(e, Utterance)]) == 1


def test_the_committed_utterance_is_the_one_offered_when_the_pause_began():
    """Overlap: a transcript started at SpeechPaused is of exactly the samples the Utterance carries."""
    probs = [0.9] * windows(800) + [0.0] * windows(600)
    events = run(probs, endpoint_silence_ms=450, tail_ms=100)
    paused = [e for e in events if isinstance(e, SpeechPaused)]
    (utterance,) = [e for e in events if isinstance(e, Utterance)]
    assert len(paused) == 1 and utterance.pause == paused[0].pause
    assert np.array_equal(paused[0].samples, utterance.samples)
    assert events.index(paused[0]) < events.index(utterance)


def paused_at(levels: list[float], probs: list[float], **kwargs) -> list[int]:
    """The windows at which SpeechPaused came, feeding window ``i`` at amplitude ``levels[i]``."""
    endpointer = Endpointer(ScriptedVad(probs), endpoint_silence_ms=450, tail_ms=96, **kwargs)
    out = []
    for i, level in enumerate(levels):
        events = endpointer.process(np.full(WINDOW, level, np.float32), now=i * 0.032)
        out += [i for e in events if isinstance(e, SpeechPaused)]
    return out


def test_the_tail_counts_from_the_last_audible_window_once_the_vad_hears_silence():
    """The VAD's speech outlasts the sound: its windows after the last audible one count toward the tail."""
    speech, lag = windows(800), 3  # the VAD calls 3 quiet windows speech after the sound stops
    probs = [0.9] * (speech + lag) + [0.0] * windows(600)
    levels = [0.3] * speech + [0.001] * (len(probs) - speech)
    without = paused_at(levels, probs)
    with_quiet = paused_at(levels, probs, tail_quiet_peak=0.02)
    assert without == [speech + lag + 2]  # three silent windows: 96 ms of the VAD's silence
    assert with_quiet == [speech + lag]  # the first silent window: 96 ms and more since the last sound
    # a sound still audible keeps the VAD's own count, and the VAD's speech alone never pauses
    assert paused_at([0.3] * len(probs), probs, tail_quiet_peak=0.02) == without
    assert paused_at(levels, [0.9] * len(probs), tail_quiet_peak=0.02) == []


def test_speech_after_a_pause_offers_a_new_snapshot():
    probs = [0.9] * windows(500) + [0.0] * windows(250) + [0.9] * windows(500) + [0.0] * windows(600)
    events = run(probs, endpoint_silence_ms=450, tail_ms=100)
    paused = [e for e in events if isinstance(e, SpeechPaused)]
    (utterance,) = [e for e in events if isinstance(e, Utterance)]
    assert len(paused) == 2 and utterance.pause == paused[1].pause
    assert utterance.samples.size == paused[1].samples.size > paused[0].samples.size
    # the first pause's work is announced stale the moment speech comes back, before the second pause
    (resumed,) = [e for e in events if isinstance(e, SpeechResumed)]
    at = [next(i for i, e in enumerate(events) if e is x) for x in (paused[0], resumed, paused[1])]
    assert resumed.pause == paused[0].pause and at == sorted(at)
    assert resumed.silence_ms == pytest.approx(250, abs=32)  # how long the pause lasted (to the VAD window)


def test_end_of_turn_model_ends_a_finished_turn_early():
    asked: list[int] = []

    def finished(samples: np.ndarray) -> float:
        asked.append(samples.size)
        return 0.9

    probs = [0.9] * windows(800) + [0.0] * windows(1000)
    (utterance,) = [e for e in run(probs, end_of_turn=finished, turn_check_silence_ms=200) if isinstance(e, Utterance)]
    assert len(asked) == 1 and utterance.turn_probability == 0.9
    assert 0.19 <= utterance.endpoint_at - utterance.speech_end_at <= 0.26  # not the 450 ms of silence


def test_end_of_turn_model_saying_unfinished_waits_for_the_cap_or_more_speech():
    probs = [0.9] * windows(600) + [0.0] * windows(700) + [0.9] * windows(600) + [0.0] * windows(2000)
    events = run(probs, end_of_turn=lambda samples: 0.1, turn_check_silence_ms=200, turn_max_silence_ms=1500)
    utterances = [e for e in events if isinstance(e, Utterance)]
    assert len(utterances) == 1  # the 700 ms pause did not split the question
    assert utterances[0].duration_s > 1.5 and utterances[0].turn_probability == 0.1
    assert 1.45 <= utterances[0].endpoint_at - utterances[0].speech_end_at <= 1.55


def test_end_of_turn_model_is_asked_again_as_the_pause_goes_on():
    """A pause that goes on sounds more finished: unfinished at 200 ms, finished when asked again at 500 ms."""
    verdicts = iter([0.2, 0.8])
    probs = [0.9] * windows(800) + [0.0] * windows(1600)
    events = run(probs, end_of_turn=lambda samples: next(verdicts), turn_check_silence_ms=200, turn_recheck_ms=300,
                 turn_max_silence_ms=1500)
    (utterance,) = [e for e in events if isinstance(e, Utterance)]
    assert utterance.turn_probability == 0.8
    assert 0.49 <= utterance.endpoint_at - utterance.speech_end_at <= 0.56


def test_words_that_read_whole_end_a_pause_the_voice_left_open():
    """Smart Turn hears "unfinished" all the way; the words of this pause read whole (marked once the pause
    is offered): the turn ends at words_done_silence_ms, not at the 1.5 s cap. A mark for an older pause does nothing."""
    endpointer = Endpointer(
        ScriptedVad([0.9] * windows(600) + [0.0] * windows(400) + [0.9] * windows(600) + [0.0] * windows(2000)),
        end_of_turn=lambda samples: 0.1, turn_check_silence_ms=200, turn_max_silence_ms=1500, tail_ms=100,
        words_done_silence_ms=500,
    )
    events: list = []
    for i in range(windows(3600)):
        for event in endpointer.process(np.full(WINDOW, 0.1, np.float32), now=i * 0.032):
            events.append(event)
            if isinstance(event, SpeechPaused):  # (the first pause's words too: the caller goes on within 500 ms)
                endpointer.words_done(event.pause)
    (utterance,) = [e for e in events if isinstance(e, Utterance)]
    assert utterance.pause == 2 and utterance.duration_s > 1.5  # the first pause (400 ms) did not end the turn
    assert 0.49 <= utterance.endpoint_at - utterance.speech_end_at <= 0.56


@pytest.mark.parametrize("words_done_ms, mark", [(500, 7), (0, 1)])
def test_an_unmarked_pause_or_words_done_off_still_waits_for_the_cap(words_done_ms, mark):
    """A stale mark (for a pause that is not this one), or this pause marked with words_done_silence_ms 0 (off)."""
    endpointer = Endpointer(
        ScriptedVad([0.9] * windows(600) + [0.0] * windows(2000)), end_of_turn=lambda samples: 0.1,
        turn_check_silence_ms=200, turn_max_silence_ms=1500, words_done_silence_ms=words_done_ms,
    )
    endpointer.words_done(mark)
    events = []
    for i in range(windows(2600)):
        events += endpointer.process(np.full(WINDOW, 0.1, np.float32), now=i * 0.032)
    (utterance,) = [e for e in events if isinstance(e, Utterance)]
    assert 1.45 <= utterance.endpoint_at - utterance.speech_end_at <= 1.55


def asked_at(news: str | None, *, words_first_ms: int = 700, announce: bool = True, news_at_ms: float = 320) -> tuple[list[float], float]:
    """One utterance (600 ms of speech, then silence) whose pause's words are awaited (``announce``) and
    become known at ``news_at_ms`` of silence as ``news`` ("done", "heard", "both" or None: never); returns the
    silence (ms) at each of the end-of-turn model's verdicts, and at the endpoint."""
    asked: list[float] = []
    endpointer: Endpointer

    def model(samples: np.ndarray) -> float:
        asked.append(endpointer.silence_ms)
        return 0.9  # finished

    endpointer = Endpointer(
        ScriptedVad([0.9] * windows(600) + [0.0] * windows(2000)), end_of_turn=model, turn_check_silence_ms=200,
        turn_max_silence_ms=1500, tail_ms=96, words_done_silence_ms=500, words_first_ms=words_first_ms,
    )
    pause, told, utterance = None, False, None
    for i in range(windows(2600)):
        for event in endpointer.process(np.full(WINDOW, 0.1, np.float32), now=i * 0.032):
            if isinstance(event, SpeechPaused) and announce:
                pause = event.pause
                endpointer.await_words(pause)
            if isinstance(event, Utterance):
                utterance = event
        if pause is not None and not told and news and endpointer.silence_ms >= news_at_ms:
            told = True
            if news in ("done", "both"):
                endpointer.words_done(pause)
            if news in ("heard", "both"):
                endpointer.words_heard(pause)
        if utterance is not None:
            break
    assert utterance is not None
    return asked, (utterance.endpoint_at - utterance.speech_end_at) * 1000


def test_the_turn_model_waits_for_the_words_and_is_not_asked_where_they_read_whole():
    """Words that read whole end the pause at words_done_silence_ms, the model never asked."""
    asked, endpoint_ms = asked_at("done")
    assert asked == []
    assert 490 <= endpoint_ms <= 560


@pytest.mark.parametrize("news", ["heard", "both"])
def test_the_turn_model_is_asked_once_the_words_leave_the_turn_open(news):
    """Not before the words are known (at 320 ms of silence, past the 200 ms check), then at once — also
    where they read whole but nothing is under way on them yet ("both")."""
    asked, endpoint_ms = asked_at(news)
    assert len(asked) == 1 and 320 <= asked[0] < 360
    assert 320 <= endpoint_ms < 360


def test_without_news_of_the_words_the_turn_model_is_asked_at_words_first_ms():
    asked, _ = asked_at(None)
    assert len(asked) == 1 and 700 <= asked[0] < 740


@pytest.mark.parametrize("words_first_ms, announce", [(0, True), (700, False)])
def test_the_turn_model_is_asked_at_the_check_when_off_or_no_words_are_awaited(words_first_ms, announce):
    """``words_first_ms`` 0 (the GPU profile), or a pause whose words nobody transcribes (no ``await_words``)."""
    asked, endpoint_ms = asked_at("heard", words_first_ms=words_first_ms, announce=announce)
    assert len(asked) == 1 and 200 <= asked[0] < 240
    assert endpoint_ms < 240
