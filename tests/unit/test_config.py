from pathlib import Path

import pytest

from parley.server.cli import build_parser
from parley.server.config import load_settings
from parley.core.errors import ConfigError


def test_defaults_are_the_embedded_cpu_profile():
    s = load_settings(environ={})
    assert (s.stt.model, s.llm.backend, s.llm.model, s.tts.backend) == ("tiny.en", "embedded", "qwen2.5-1.5b", "hibari")
    assert (s.http.host, s.http.port) == ("127.0.0.1", 8080)


def test_toml_then_env_then_overrides(tmp_path: Path):
    cfg = tmp_path / "parley.toml"
    cfg.write_text('[llm]\nmodel = "qwen2.5-0.5b"\nmax_tokens = 50\n[vad]\nendpoint_silence_ms = 600\n')
    env = {"PARLEY_LLM__MAX_TOKENS": "70", "PARLEY_ICE__HOST_ADDRESSES": '["127.0.0.1"]', "OTHER": "x"}
    s = load_settings(cfg, overrides={"vad": {"endpoint_silence_ms": 300}}, environ=env)
    assert s.llm.model == "qwen2.5-0.5b" and s.llm.max_tokens == 70
    assert s.ice.host_addresses == ["127.0.0.1"] and s.vad.endpoint_silence_ms == 300


@pytest.mark.parametrize(
    "env",
    [{"PARLEY_LLM__MAX_TOKENS": "lots"}, {"PARLEY_NOPE__X": "1"}, {"PARLEY_ICE__HOST_ADDRESSES": "[broken"}],
)
def test_bad_settings_raise_config_error(env):
    with pytest.raises(ConfigError):
        load_settings(environ=env)


def test_bad_toml_and_missing_file(tmp_path: Path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[llm\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(bad, environ={})
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "missing.toml", environ={})


def test_cli_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["--help"])
    assert info.value.code == 0
    assert "serve" in capsys.readouterr().out


def test_cli_flags_reach_settings():
    from parley.server.cli import _overrides

    args = build_parser().parse_args(["serve", "--port", "9000", "--llm-url", "http://127.0.0.1:8000/v1"])
    s = load_settings(overrides=_overrides(args), environ={})
    assert s.http.port == 9000 and s.llm.backend == "openai" and s.llm.url.endswith("/v1")
