"""A real browser (Debian's headless chromium, fake mic from a WAV) calls Parley in a loopback-only namespace."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import QUESTION, QUESTION_MAX_WER, QUESTION_ZH, free_port, need_binary
from tests.support.audio import read_wav, speak_to_wav, word_error_rate, write_wav
from tests.support.cer import CHINESE_REPLY, character_error_rate, cjk_share

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
HERE = Path(__file__).parent


def _can_unshare() -> str | None:
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is not installed"
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True)
    return None if probe.returncode == 0 else f"cannot create a network namespace here: {probe.stderr.strip()}"


@pytest.fixture(scope="module")
def fake_mic_wav(audio_dir: Path, question_samples: np.ndarray) -> Path:
    # One second of silence, the question, then silence: Chromium loops the file, and we want one question.
    padded = np.concatenate([np.zeros(48_000), question_samples, np.zeros(48_000 * 40)])
    path = audio_dir / "fake-mic.wav"
    write_wav(path, padded, 48_000)
    return path


def browser_call(wav: Path, shot: Path, expect: str, env: dict[str, str] | None = None,
                 serve_args: tuple[str, ...] = ("--dev",), llm_model: str = "smollm2-135m") -> dict:
    """Serve Parley and drive chromium against it inside a loopback-only namespace; return the page's report."""
    need_binary("chromium")
    need_binary("node")
    if not (HERE / "node_modules" / "playwright-core").is_dir():
        pytest.fail("playwright-core is missing: `make test` runs npm ci in tests/e2e")
    reason = _can_unshare()
    if reason:
        pytest.skip(f"end-to-end browser test needs a private network namespace: {reason}")
    proc = subprocess.run(
        ["unshare", "-n", str(HERE / "run_in_netns.sh"), str(wav), str(free_port()), "60000", str(shot), expect,
         *serve_args, "--llm-model", llm_model],
        capture_output=True, text=True, timeout=240, env={**os.environ, **(env or {})},
    )
    (shot.parent / f"{shot.stem}-server.log").write_text(proc.stderr)  # kept with the screenshot for diagnosis
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no result from the browser driver\nstdout: {proc.stdout}\nstderr: {proc.stderr[-3000:]}"
    result = json.loads(lines[-1])
    pages = {k: v for k, v in result.items() if k.endswith("_page_error") and v}
    assert result["ok"], f"{result.get('error')}\n{result.get('console')}\n{pages}\n{proc.stderr[-3000:]}"
    return result


def test_browser_page_answers_a_spoken_question(fake_mic_wav: Path, tmp_path: Path):
    result = browser_call(fake_mic_wav, tmp_path / "page.png", "answer")
    assert word_error_rate(QUESTION, result["user_transcript"]) <= 0.2, result["user_transcript"]
    assert result["user_lang"] is None  # only Chinese lines are marked zh-Hans
    stats = result["inbound_audio"]
    assert stats and stats["bytesReceived"] > 0, stats
    assert stats["audioLevel"] > 0 or stats["totalAudioEnergy"] > 0, stats
    assert result["agent_text"], "the agent's reply never appeared in the transcript"
    assert result["metrics_rows"] and len(result["metrics_rows"][0]) == 6
    assert not [c for c in result["console"] if c.startswith(("error", "pageerror"))], result["console"]


def test_browser_page_in_mandarin_shows_and_speaks_chinese(audio_dir: Path, question_zh: np.ndarray, tmp_path: Path):
    """The bundled page with ?lang=zh, a Mandarin question as its microphone (Qwen2.5 0.5B writes Chinese)."""
    wav = audio_dir / "fake-mic-zh.wav"
    write_wav(wav, np.concatenate([np.zeros(48_000), question_zh, np.zeros(48_000 * 40)]), 48_000)
    # A raw microphone (?aec=0), as the barge-in test: Chromium's audio processing is tuned for real rooms,
    # and the accented synthetic question is a knife edge for Whisper base already.
    result = browser_call(wav, tmp_path / "page-zh.png", "answer", env={"PAGE_QUERY": "?lang=zh&aec=0"}, llm_model="qwen2.5-0.5b")
    heard = result["user_transcript"]
    assert character_error_rate(QUESTION_ZH, heard) <= 0.4, heard
    assert result["user_lang"] == "zh-Hans", result  # drawn with simplified-Chinese glyphs
    assert result["agent_text"] and cjk_share(result["agent_text"]) >= CHINESE_REPLY, result["agent_text"]
    stats = result["inbound_audio"]
    assert stats and stats["bytesReceived"] > 0 and (stats["audioLevel"] > 0 or stats["totalAudioEnergy"] > 0), stats
    assert not [c for c in result["console"] if c.startswith(("error", "pageerror"))], result["console"]


def test_a_page_written_to_the_hosted_realtime_webrtc_flow_gets_an_answer(fake_mic_wav: Path, tmp_path: Path):
    """/web/realtime.html: OpenAI's browser flow (offer → POST /v1/realtime/calls → answer, oai-events
    data channel), unchanged but for its base URL, against Parley in dev mode."""
    result = browser_call(fake_mic_wav, tmp_path / "realtime.png", "realtime", env={"PAGE_QUERY": "web/realtime.html"})
    assert word_error_rate(QUESTION, result["user_transcript"] or "") <= 0.34, result
    assert result["agent_text"] and result["response_status"] == "completed", result
    events = result["events"]
    assert events[0] == "session.created" and "session.updated" in events and "input_audio_buffer.speech_started" in events
    assert "response.output_audio.delta" not in events  # over WebRTC the voice is the media track
    stats = result["inbound_audio"]
    assert stats and stats["bytesReceived"] > 0 and (stats.get("audioLevel", 0) > 0 or stats.get("totalAudioEnergy", 0) > 0), stats
    assert not [c for c in result["console"] if c.startswith(("error", "pageerror"))], result["console"]


def test_browser_caller_interrupts_the_agent(audio_dir: Path, question_samples: np.ndarray, tmp_path: Path):
    """The fake mic asks for a long story, then cuts in with another question while the agent talks."""
    story, rate = read_wav(speak_to_wav("Tell me a long story about a brave little dragon.", audio_dir / "story.wav"))
    wav = tmp_path / "barge-in.wav"
    gap = np.zeros(int(4.5 * rate), np.float32)  # the agent starts answering ~2 s after the story request
    write_wav(wav, np.concatenate([np.zeros(rate), story, gap, question_samples, np.zeros(rate * 40)]), rate)
    # Raw microphone: with Chromium's echo canceller on, a fake capture device's question spoken over the
    # agent was sometimes suppressed whole (server log: no speech at all during a 25 s reply, 2 runs in ~10),
    # and the WAV's second loop then did the barge-in. Barge-in itself is what this test is about.
    result = browser_call(wav, tmp_path / "barge-in.png", "barge-in", env={"PAGE_QUERY": "?aec=0"})
    assert result["interrupted_text"], result
    assert len(result["agent_lines"]) >= 2 and len(result["user_lines"]) >= 2, result
    # The agent must have yielded to the second question and answered a new utterance.
    # The first reply on the page is the interrupted one, showing only what was heard. (A reply folded into
    # a longer question before any of it played is withdrawn and removed from the page.)
    assert result["agent_lines"][0] == result["interrupted_text"]


def test_two_browsers_in_one_room_hear_each_other_and_the_agent(audio_dir: Path, tmp_path: Path):
    """Sam (fake mic: a question that names the agent) and Lee (silent) share a room in two browsers."""
    question = "Hey Parley, what is the capital of France?"
    speech, rate = read_wav(speak_to_wav(question, audio_dir / "duo.wav"))
    speaker_wav, listener_wav = tmp_path / "sam.wav", tmp_path / "lee.wav"
    write_wav(speaker_wav, np.concatenate([np.zeros(3 * rate), speech, np.zeros(rate * 40)]), rate)
    write_wav(listener_wav, np.zeros(rate * 50, np.float32), rate)
    result = browser_call(speaker_wav, tmp_path / "duo.png", "duo", env={"LISTENER_WAV": str(listener_wav)})
    # Lee's page shows Sam's words under Sam's name, and the agent's answer (Sam said its name).
    assert result["peer_transcript"].startswith("Sam:"), result
    assert word_error_rate(question, result["peer_transcript"].split(":", 1)[1]) <= 0.3, result["peer_transcript"]
    assert result["agent_text"], result
    assert "Sam" in result["people"] and "Parley (agent)" in result["people"], result["people"]
    # Lee's browser received and played Sam's forwarded audio and the agent's voice; Sam heard the agent.
    for key in ("listener_heard_speaker", "listener_heard_agent", "speaker_heard_agent"):
        stats = result[key]
        assert stats and stats["bytesReceived"] > 0 and stats["totalAudioEnergy"] > 0, (key, stats)
    assert any(line.startswith("You:") for line in result["speaker_lines"]), result["speaker_lines"]
    assert not [c for c in result["console"] if " error" in c or "pageerror" in c], result["console"]


def test_browser_relay_only_call_through_coturn(fake_mic_wav: Path, tmp_path: Path):
    """iceTransportPolicy "relay": the browser's media goes through coturn (test config: loopback peers allowed)."""
    need_binary("turnserver")
    from parley.turn.coturn import write_config
    from tests.support.coturn import turn_settings, wait_relayed

    turn = turn_settings(free_port(), 45_000)
    log = tmp_path / "coturn.log"
    conf = write_config(turn, tmp_path / "turnserver.conf", log_file=str(log), pid_file=str(tmp_path / "turn.pid"))
    env = {
        "TURN_CONF": str(conf), "PAGE_QUERY": "?relay=1",
        "PARLEY_TURN__ENABLED": "true", "PARLEY_TURN__SECRET": turn.secret, "PARLEY_TURN__PORT": str(turn.port),
        "PARLEY_TURN__REALM": turn.realm,
    }
    result = browser_call(fake_mic_wav, tmp_path / "relay.png", "answer", env=env)
    assert result["candidate_types"] and result["candidate_types"]["local"] == "relay", result["candidate_types"]
    assert word_error_rate(QUESTION, result["user_transcript"]) <= 0.2, result["user_transcript"]
    stats = result["inbound_audio"]
    assert stats and stats["bytesReceived"] > 0 and stats["totalAudioEnergy"] > 0, stats
    assert result["agent_text"], result
    assert wait_relayed(log.read_text), log.read_text()[-3000:]  # coturn reports the session's traffic when it ends


def test_embed_example_on_another_origin_calls_through_the_sdk(fake_mic_wav: Path, tmp_path: Path):
    """examples/backend.py serves examples/embed/index.html on its own port (another origin), mints the
    token with the REST API; the page imports the SDK from Parley and calls. Parley runs without dev mode."""
    embed_port = free_port()
    env = {
        "EMBED_PORT": str(embed_port), "PARLEY_AUTH__API_KEY": "embed-test-admin-key",
        "PARLEY_HTTP__ALLOWED_ORIGINS": f'["http://127.0.0.1:{embed_port}"]',
    }
    result = browser_call(fake_mic_wav, tmp_path / "embed.png", "embed", env=env, serve_args=())
    assert result["page_origin"] == f"http://127.0.0.1:{embed_port}" and not result["sdk_origin"].endswith(f":{embed_port}")
    assert word_error_rate(QUESTION, result["user_transcript"]) <= 0.2, result["user_transcript"]
    assert result["agent_text"], result
    stats = result["inbound_audio"]
    assert stats and stats["bytesReceived"] > 0 and stats["totalAudioEnergy"] > 0, stats
    assert result["state_after_end"] == "call ended"
    assert not [c for c in result["console"] if c.startswith(("embed error", "embed pageerror"))], result["console"]


def test_sdk_rejoins_when_the_websocket_drops_mid_call(audio_dir: Path, question_samples: np.ndarray, tmp_path: Path):
    """The signaling WebSocket goes through a proxy the driver cuts after the first answer starts. The SDK
    must rejoin within a bound, the server must hold one call (not a half-open second), and the second
    question on the fake mic must be answered on the rejoined call."""
    second = "How many legs does a spider have?"
    speech, rate = read_wav(speak_to_wav(second, audio_dir / "second.wav"))
    wav = tmp_path / "two-questions.wav"
    write_wav(wav, np.concatenate([np.zeros(rate), question_samples, np.zeros(14 * rate), speech, np.zeros(40 * rate)]), rate)
    env = {"PROXY_PORT": str(free_port()), "PARLEY_HTTP__ALLOWED_ORIGINS": '["*"]'}
    result = browser_call(wav, tmp_path / "reconnect.png", "reconnect", env=env)
    kinds = [e["kind"] for e in result["events"]]
    print(f"reconnect: rejoined {result['reconnect_ms']} ms after the cut; events {result['events']}")
    assert result["sockets_cut"] >= 2 and result["calls_before_cut"] == 1, result
    assert "reconnecting" in kinds and "reconnected" in kinds and "ended" not in kinds, result["events"]
    assert result["reconnect_ms"] is not None and result["reconnect_ms"] < 10_000, result["reconnect_ms"]
    assert result["second_participant"] != result["first_participant"]  # a new participant on the server
    assert result["calls_after_reconnect"] == 1, result  # the dropped call was torn down, not left half-open
    # What this test checks is that the rejoined call hears and answers the second question, not Whisper
    # tiny.en's accuracy: on a loaded 2-core CI machine it heard it as "How many lands done a spider-fam?"
    # and "How many lenses does this fighter have?" (WER 0.43 each) while the same audio gave the exact
    # text locally. So: a new line, recognisably the second question and not the first one again.
    # (Chromium loops the WAV: on a slow run the first question comes round again after the second.)
    later = [line for line in result["user_lines"][1:] if line.lower().startswith("how many")]
    assert later, result["user_lines"]
    assert word_error_rate(second, later[0]) <= 0.5 < word_error_rate(QUESTION, later[0]), result["user_lines"]
    assert len(result["agent_lines"]) >= 2 and result["agent_lines"][-1], result["agent_lines"]
    assert result["calls_after_hangup"] == 0, result


def test_sdk_ends_the_call_cleanly_when_the_server_stays_unreachable(fake_mic_wav: Path, tmp_path: Path):
    """The proxy in front of the WebSocket goes away for good: after its reconnect window (3 s here) the
    SDK reports connection_lost and ends; the server has already torn the call down."""
    env = {"PROXY_PORT": str(free_port()), "PARLEY_HTTP__ALLOWED_ORIGINS": '["*"]'}
    result = browser_call(fake_mic_wav, tmp_path / "unreachable.png", "reconnect-fails", env=env)
    kinds = [e["kind"] for e in result["events"]]
    assert "reconnecting" in kinds and "reconnected" not in kinds, result["events"]
    assert any(e["kind"] == "error" and e["code"] == "connection_lost" for e in result["events"]), result["events"]
    assert 3000 <= result["ended_ms"] < 8000, result["ended_ms"]  # gave up after its window, did not hang
    assert result["calls_before_cut"] == 1 and result["calls_after_end"] == 0, result
    assert result["mic_released"] and result["call_button_enabled"] and result["status"] == "disconnected", result


def test_sdk_rejoins_when_the_server_ends_a_call_on_renegotiation_timeout(fake_mic_wav: Path, tmp_path: Path):
    """A page that leaves a server offer unanswered (someone else joined) has its call ended with
    renegotiation_timeout; the SDK rejoins as a new participant and then hears the newcomer."""
    env = {"PARLEY_HTTP__RENEGOTIATION_TIMEOUT_S": "2"}
    result = browser_call(fake_mic_wav, tmp_path / "renegotiation.png", "renegotiation", env=env)
    kinds = [e["kind"] for e in result["events"]]
    assert any(e["kind"] == "error" and e["code"] == "renegotiation_timeout" for e in result["events"]), result["events"]
    assert "reconnecting" in kinds and "reconnected" in kinds and "ended" not in kinds, result["events"]
    assert result["rejoined_participant"] != result["first_participant"], result
    assert result["second_participant"] in result["first_tracks"].values(), result  # hears the newcomer now
    assert result["calls"] == 2, result  # the ended call was torn down, not left half-open


def test_a_page_served_by_one_worker_follows_the_redirect_to_the_worker_holding_its_room(fake_mic_wav: Path, tmp_path: Path):
    """`parley serve --workers 2` (a private redis-server): the page comes from the worker that does not hold
    the room; the SDK follows the redirect, makes its call with the other worker, and the agent answers."""
    need_binary("redis-server")
    env = {"PAGE_FROM": str(HERE / "cluster_page.py"), "PARLEY_AUTH__API_KEY": "e2e-cluster-admin-key-0001"}
    result = browser_call(fake_mic_wav, tmp_path / "cluster.png", "answer", env=env, serve_args=("--dev", "--workers", "2"))
    log = (tmp_path / "cluster-server.log").read_text()
    assert "is on another node: redirected to" in log, log[-3000:]
    assert word_error_rate(QUESTION, result["user_transcript"]) <= QUESTION_MAX_WER, result["user_transcript"]
    assert result["agent_text"], "the agent's reply never appeared in the transcript"
    assert not [c for c in result["console"] if c.startswith(("error", "pageerror"))], result["console"]


def _self_interruptions(events: list[dict]) -> int:
    """Times the agent stopped once it had begun speaking (a pause and its interruption count once)."""
    from parley.bench.speakerphone import count_stops

    return count_stops([{"type": "agent.interrupted"} if e["kind"] == "agentInterrupted"
                        else {"type": "agent.state", "state": e["state"]} for e in events])


@pytest.mark.parametrize("server_aec", ["on", "off"])
def test_a_browser_on_a_speakerphone_without_its_own_echo_canceller(fake_mic_wav: Path, tmp_path: Path, server_aec: str):
    """Chromium with ?aec=0 and the agent's voice looped into its microphone (WebAudio, 150 ms, -10 dB:
    call_page.mjs echo-loop). Without the server's echo cancellation its own voice interrupts the agent.
    With it, the server recognises the echo in this microphone and cancels it; how often the agent still
    stopped is printed, not asserted: in one CI run of two it still stopped twice (Chromium's jitter
    buffer time-stretches what it plays, which a canceller on the server cannot follow exactly; see
    README, Speakerphones)."""
    env = {"PAGE_QUERY": "?aec=0", "PARLEY_AUDIO__ECHO_CANCELLATION": server_aec}
    result = browser_call(fake_mic_wav, tmp_path / f"echo-{server_aec}.png", "echo-loop", env=env)
    stops = _self_interruptions(result["events"])
    log = (tmp_path / f"echo-{server_aec}-server.log").read_text()
    print(f"browser speakerphone, server AEC {server_aec}: {stops} self-interruption(s), echo energy sent "
          f"{result['echo_energy']:.4f}, agent lines {result['agent_lines']}")
    assert result["echo_energy"] > 1e-3, result  # the loop really put the agent's voice in the microphone
    assert word_error_rate(QUESTION, result["user_transcript"]) <= QUESTION_MAX_WER, result["user_transcript"]
    if server_aec == "on":
        assert "echo of the agent's voice detected in a caller's microphone" in log, log[-3000:]
        assert result["agent_lines"] and result["agent_lines"][-1], result
    else:
        assert "echo of the agent's voice detected" not in log
        assert stops >= 1, result["events"]
