"""One line per utterance: a speaker keeps their line until it is closed; a borrowed line is given back once."""

from parley.agents.caller_lines import CallerLines


def test_a_speaker_keeps_one_line_until_their_utterance_ends_then_gets_a_new_one() -> None:
    lines = CallerLines()
    ann = lines.current("ann")
    assert lines.current("ann") == ann  # interim after interim: the same line
    bob = lines.current("bob")
    assert bob != ann
    assert lines.close("ann") == ann
    after = lines.current("ann")
    assert after not in (ann, bob)
    assert lines.new() not in (ann, bob, after)


def test_a_borrowed_line_is_given_back_once() -> None:
    lines = CallerLines()
    question = lines.close("ann")
    assert lines.give_back(question) is False  # never borrowed
    lines.borrow(question)
    assert lines.give_back(question) is True
    assert lines.give_back(question) is False
