"""docs/protocol.md and signaling/messages.py describe the same protocol: the same message types each
way, and every JSON example in the document is a valid message of the type it illustrates."""

from __future__ import annotations

import json
import re
import typing
from pathlib import Path

import pytest

from parley.signaling import messages as m

DOC = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text()


def _section(title: str) -> str:
    start = DOC.index(f"## {title}")
    end = DOC.find("\n## ", start + 1)
    return DOC[start : end if end > 0 else None]


def _documented(title: str) -> dict[str, list[str]]:
    """Message type → the JSON examples under its ``### `type` `` heading."""
    out: dict[str, list[str]] = {}
    for block in re.split(r"^### ", _section(title), flags=re.MULTILINE)[1:]:
        name = re.match(r"`([\w.]+)`", block).group(1)
        out[name] = re.findall(r"```json\n(.*?)```", block, flags=re.DOTALL)
    return out


SERVER_MODELS = {model.model_fields["type"].default: model for model in typing.get_args(m.ServerMessage)}


def test_client_messages_match_the_models():
    assert set(_documented("Client → server messages")) == set(m.CLIENT_TYPES)


def test_server_messages_match_the_models():
    assert set(_documented("Server → client messages")) == set(SERVER_MODELS)


@pytest.mark.parametrize("kind", m.CLIENT_TYPES)
def test_client_examples_are_valid_messages(kind):
    examples = _documented("Client → server messages")[kind]
    assert examples, f"`{kind}` has no example"
    for example in examples:
        assert m.parse_client_message(example).type == kind


@pytest.mark.parametrize("kind", sorted(SERVER_MODELS))
def test_server_examples_are_valid_messages(kind):
    examples = _documented("Server → client messages")[kind]
    assert examples, f"`{kind}` has no example"
    for example in examples:
        assert SERVER_MODELS[kind].model_validate(json.loads(example)).type == kind


def test_every_error_code_the_server_sends_is_documented():
    root = Path(__file__).resolve().parents[2]
    sent = set()
    for folder in ("signaling", "server", "agents"):
        for path in (root / folder).rglob("*.py"):
            sent |= set(re.findall(r'code="([a-z_]+)"', path.read_text()))
            sent |= set(re.findall(r'_error\("([a-z_]+)"', path.read_text()))
    rest_only = {"unauthorized", "not_found", "method_not_allowed", "room_exists", "invalid_body", "config_error", "too_many_rooms"}
    table = set(re.findall(r"^\| `([a-z_]+)`", _section("Errors"), flags=re.MULTILINE))
    table |= set(re.findall(r"`([a-z_]+)`", _section("Errors")))
    missing = sent - rest_only - table
    assert not missing, f"error codes sent but not in docs/protocol.md: {sorted(missing)}"
