import pytest

from parley.agents.text import SentenceChunker, clean_for_speech, split_sentences


def test_split_english_sentences_keeps_abbreviations_and_decimals():
    text = "Dr. Smith arrived at 9.30 today. Was it late? No! It was fine."
    assert split_sentences(text) == ["Dr. Smith arrived at 9.30 today.", "Was it late?", "No!", "It was fine."]


def test_split_chinese_punctuation():
    assert split_sentences("你好。今天天气很好！你呢？好的") == ["你好。", "今天天气很好！", "你呢？", "好的"]


def test_split_mixed_languages():
    assert split_sentences("Hello. 你好。Bye!") == ["Hello.", "你好。", "Bye!"]


def _stream(chunker: SentenceChunker, text: str) -> list[str]:
    out: list[str] = []
    for token in text.split(" "):
        out.extend(chunker.feed(token + " "))
    rest = chunker.flush()
    return out + ([rest] if rest else [])


def test_first_chunk_is_released_at_an_early_clause():
    chunks = _stream(SentenceChunker(first_clause_words=4), "The capital of France, of course, is Paris. It is lovely, really.")
    assert chunks == ["The capital of France,", "of course, is Paris.", "It is lovely, really."]


def test_short_first_clause_waits_for_more_words():
    chunks = _stream(SentenceChunker(first_clause_words=4), "Well, the answer is Paris.")
    assert chunks == ["Well, the answer is Paris."]


def test_unterminated_text_comes_out_on_flush():
    chunker = SentenceChunker()
    assert list(chunker.feed("no punctuation at all")) == []
    assert chunker.flush() == "no punctuation at all"


def test_long_sentence_is_cut_at_a_clause():
    long = "word " * 40 + ", and more words follow here."
    chunks = _stream(SentenceChunker(first_clause_words=0, max_chars=100), long)
    assert len(chunks) == 2 and chunks[0].endswith(",")


def test_clean_for_speech_strips_markdown_and_emoji():
    assert clean_for_speech("**Paris** is the [capital](http://x.y) 😀 of `France`") == "Paris is the capital of France"


def test_first_chunk_can_be_cut_by_word_count():
    chunker = SentenceChunker(first_chunk_max_words=6)
    chunks = _stream(chunker, "The tallest mountain in the world is Mount Everest. It is in Nepal.")
    assert chunks == ["The tallest mountain in the world", "is Mount Everest.", "It is in Nepal."]


def test_word_count_cut_prefers_an_earlier_clause():
    chunks = _stream(SentenceChunker(first_chunk_max_words=6), "Sure thing, my friend, the answer is simple and short.")
    assert chunks[0] == "Sure thing, my friend,"


@pytest.mark.parametrize("reply, first", [
    ("The capital of France is Paris.", "The capital of France"),  # "of" leaves the phrase hanging
    ("Spiders have eight legs.", "Spiders have eight"),
    ("The moon is about 384,400 kilometers away.", "The moon is about 384,400"),  # "is", then "about"
    ("It is in the middle of the sea.", "It is in the middle"),  # at most two words more
    ("Leonardo da Vinci painted it.", "Leonardo da Vinci"),
])
def test_the_first_chunk_waits_a_word_or_two_for_a_hanging_phrase(reply, first):
    assert _stream(SentenceChunker(first_chunk_max_words=3), reply)[0] == first


def test_the_first_chunk_does_not_wait_long_for_a_word_of_many_tokens():
    """The LLM writes a number a digit a token: "384,400" would hold the first words seven deltas more."""
    chunker = SentenceChunker(first_chunk_max_words=3)
    out: list[str] = []
    for delta in ["The", " moon", " is", " about", " ", "3", "8", "4", ",", "4", "0", "0", " kil", "ometers", " away", "."]:
        out.extend(chunker.feed(delta))
    assert out[0] == "The moon is about"


def test_whole_words_can_be_cut_off_when_the_voice_would_run_out():
    chunker = SentenceChunker(first_chunk_max_words=3)
    assert list(chunker.feed("Spiders have eight legs, and each")) == ["Spiders have eight"]
    assert chunker.emitted == 1
    assert chunker.cut_words(2) == "legs, and"  # "each" may still be growing ("eachother")
    assert chunker.cut_words(2) is None  # one word pending
    assert list(chunker.feed(" one ends in a claw. It")) == ["each one ends in a claw."]


def test_word_count_cut_waits_for_the_next_word_to_begin():
    chunker = SentenceChunker(first_chunk_max_words=3)
    assert list(chunker.feed("one two thr")) == []
    assert list(chunker.feed("ee")) == []
    assert list(chunker.feed(" fo")) == ["one two three"]


@pytest.mark.parametrize("deltas", [
    ["The", " capital", " of", " France", " is", " Paris", "."],  # "of" hangs: the peek waits for "France" too
    ["Sp", "iders", " have", " eight", " legs", "."],
    ["The", " moon", " is", " about", " ", "3", "8", "4", ",", "4", "0", "0", " kil", "ometers", "."],
    ["Yes", ",", " water", " boils", " at", " 100", " degrees", "."],
])
def test_the_first_chunk_can_be_seen_a_token_before_it_is_released(deltas):
    """``first_if_a_word_begins`` names the first chunk one delta early where the next delta begins a word,
    and never changes what ``feed`` releases."""
    peeking, plain = SentenceChunker(first_chunk_max_words=3), SentenceChunker(first_chunk_max_words=3)
    peeked: list[str | None] = []
    first: str | None = None
    for delta in deltas:
        released = list(peeking.feed(delta))
        assert released == list(plain.feed(delta))
        if released and first is None:
            first = released[0]
            break
        peeked.append(peeking.first_if_a_word_begins())
    assert first is not None
    if deltas[len(peeked)].startswith(" "):  # released as a word began: seen on the delta before
        assert peeked[-1] == first
    assert peeking.first_if_a_word_begins() is None  # nothing once a chunk is out


def test_no_first_chunk_is_seen_ahead_before_there_are_words_enough():
    chunker = SentenceChunker(first_chunk_max_words=3)
    assert list(chunker.feed("Spiders have")) == []
    assert chunker.first_if_a_word_begins() is None
    assert list(chunker.feed(" eight")) == []
    assert chunker.first_if_a_word_begins() == "Spiders have eight"


@pytest.mark.parametrize("text, unfinished", [
    ("What is the capital of?", True), ("What is the difference between?", True), ("I was thinking that", True),
    ("So, the thing is…", True), ("Tell me about,", True), ("Can you tell me about my", True),
    ("What is the capital of France?", False), ("How many?", False), ("I would like to know.", False),
    ("What is two plus two?", False), ("", False), ("Okay.", False), ("No.", False), ("Really?", False),
    # "do" needs a subject and a verb after it; a pronoun alone is an ellipsis that stands
    ("Why do leaves?", True), ("Why do leave?", True), ("How does water", True), ("Why didn't you?", False),
    ("Why do birds sing?", False), ("How did it?", False),
    # words that end sentences as often as they dangle are left to the LLM: a 2 s hold on a finished question costs more
    ("What is this?", False), ("Do you know what time it is?", False), ("I think so.", False), ("Yes, I can.", False),
    ("He was kinder than he was.", False), ("Can you tell me what the", True),
])
def test_sounds_unfinished(text, unfinished):
    from parley.agents.unfinished import sounds_unfinished

    assert sounds_unfinished(text) is unfinished


def test_only_punctuation_counts_in_other_languages():
    from parley.agents.unfinished import sounds_unfinished

    assert sounds_unfinished("北京的天气，", "zh")
    assert not sounds_unfinished("Où est la gare de", "fr")  # no French word list: only marks count


def test_a_whisper_decoder_loop_is_cut_to_one_lap():
    from parley.agents.stt.faster_whisper import drop_repeats

    looped = "The meeting starts at 930 in the morning. " * 5 + "The meeting starts at"
    assert drop_repeats(looped) == "The meeting starts at 930 in the morning."
    assert drop_repeats("What is the capital of France? Paris, I think.") == "What is the capital of France? Paris, I think."


def test_one_persons_speech_is_joined_as_its_language_is_written():
    from parley.agents.backchannel import spoken_words
    from parley.agents.text import join_all_said, join_said

    assert join_said("What is the capital of", "France?") == "What is the capital of France?"
    assert join_said("中国的首都是哪里？", "北京有多大？") == "中国的首都是哪里？北京有多大？"
    assert join_said("中国的首都是", "哪个城市？") == "中国的首都是哪个城市？"
    assert join_said("我想问一下，", "Parley在吗？") == "我想问一下， Parley在吗？"  # Latin after Chinese: a space
    assert join_said("", "Hello.") == "Hello." and join_said("Hello.", " ") == "Hello."
    # a reply's spoken chunks, as the page shows them
    assert join_all_said(["法国是一个美丽的", "地方，拥有丰富的文化。"]) == "法国是一个美丽的地方，拥有丰富的文化。"
    assert join_all_said(["The capital of France", "is Paris."]) == "The capital of France is Paris."
    # words as spoken: Latin words, and Chinese characters two to a word
    assert spoken_words("He was not an ill-disposed young man.") == 7
    assert spoken_words("我下个月要去北京出差。") == 5 and spoken_words("好的") == 1 and spoken_words("用Python写") == 2
