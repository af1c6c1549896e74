"""The conversation's history and the prompts made of it (agents/conversation.py)."""

from parley.agents.conversation import Conversation
from parley.agents.llm.base import ChatMessage
from parley.agents.profile import AgentProfile, LanguageVoice, Speaker

ADA = Speaker("p-ada", "Ada")


def _profile(language: str = "en") -> AgentProfile:
    voice = object()
    return AgentProfile(
        "Parley", "Be brief.", language, "always", voice,  # type: ignore[arg-type]
        {"en": LanguageVoice("Be brief.", voice), "zh": LanguageVoice("请简短回答。", voice)},  # type: ignore[arg-type]
    )


def _said(role: str, content: str) -> ChatMessage:
    return ChatMessage(role=role, content=content)  # type: ignore[arg-type]


def test_the_prompt_is_the_system_prompt_and_the_recent_turns_with_words_between_replies_merged():
    conversation = Conversation(_profile(), max_turns=2)
    for message in [_said("user", "Hi."), _said("assistant", "Hello!"), _said("user", "Ada: I am Ada."),
                    _said("user", "What is two plus two?"), _said("assistant", "Four."), _said("user", "And three?")]:
        conversation.add(message)
    prompt = conversation.prompt(group=False, language="en")
    assert [(m.role, m.content) for m in prompt] == [
        ("system", "Be brief."),
        # the last 4 messages (2 turns); the two user messages in a row became one
        ("user", "Ada: I am Ada.\nWhat is two plus two?"), ("assistant", "Four."), ("user", "And three?"),
    ]
    assert len(conversation.messages) == 6  # the history itself is kept whole
    assert Conversation(_profile(), max_turns=0).prompt(False, "en") == [_said("system", "Be brief.")]


def test_an_auto_room_reminds_the_last_question_of_its_language_in_the_prompt_only():
    conversation = Conversation(_profile("auto"), max_turns=8)
    conversation.add(_said("user", "法国的首都是哪里？"))
    prompt = conversation.prompt(group=False, language="zh")
    assert prompt[0].content == "请简短回答。"
    assert prompt[-1].content.startswith("法国的首都是哪里？\n") and "中文" in prompt[-1].content
    assert conversation.messages[-1].content == "法国的首都是哪里？"


def test_messages_are_forgotten_and_replaced_by_identity_not_by_equal_content():
    conversation = Conversation(_profile(), max_turns=8)
    first, second = conversation.add(_said("user", "Hi.")), conversation.add(_said("user", "Hi."))
    assert conversation.forget(second) and conversation.messages == [first] and conversation.messages[0] is first
    assert not conversation.forget(second)  # no longer in it
    shorter = _said("assistant", "Once upon")
    assert not conversation.replace(_said("user", "Hi."), shorter)  # equal, but not the one kept
    assert conversation.replace(first, shorter) and conversation.messages == [shorter]


def test_a_question_asked_now_replaces_the_one_it_continues_and_names_its_speaker_in_a_group():
    conversation = Conversation(_profile(), max_turns=8)
    earlier = conversation.add(_said("user", "What is the capital"))
    asked = Conversation.user_message("What is the capital of France?", ADA, group=True)
    assert asked.content == "Ada: What is the capital of France?"
    assert Conversation.user_message("Hi", ADA, group=False).content == "Hi"
    prompt = conversation.prompt_if_asked(asked, earlier, group=True, language="en")
    assert [m.content for m in prompt[1:]] == ["Ada: What is the capital of France?"]
    assert "group call" in prompt[0].content
    assert conversation.messages == [earlier]  # asking is not remembering
