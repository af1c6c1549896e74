"""TURN credentials and the rendered coturn configuration, without running coturn."""

import base64
import hashlib
import hmac

import pytest

from parley.server.config import load_settings
from parley.turn.settings import TurnSettings
from parley.core.errors import ConfigError
from parley.turn.coturn import render_config
from parley.turn.credentials import ice_server_entries, mint_credential, turn_urls

SECRET = "s" * 40


def test_credential_follows_the_turn_rest_api_convention():
    credential = mint_credential(SECRET, "user:42", 3600, now=1_700_000_000)
    assert credential.username == "1700003600:user_42"  # a colon in the identity would confuse the expiry
    expected = base64.b64encode(hmac.new(SECRET.encode(), b"1700003600:user_42", hashlib.sha1).digest()).decode()
    assert credential.password == expected and credential.expires_at == 1_700_003_600


def test_urls_cover_udp_tcp_and_tls_only_with_a_certificate(tmp_path):
    plain = TurnSettings(enabled=True, secret=SECRET, public_host="turn.example.org")
    assert turn_urls(plain) == ["turn:turn.example.org:3478?transport=udp", "turn:turn.example.org:3478?transport=tcp"]
    tls = plain.model_copy(update={"cert": tmp_path / "c.pem", "key": tmp_path / "k.pem"})
    assert turn_urls(tls)[-1] == "turns:turn.example.org:5349?transport=tcp"
    assert turn_urls(plain.model_copy(update={"public_host": "2001:db8::1"}))[0] == "turn:[2001:db8::1]:3478?transport=udp"


def test_ice_servers_include_turn_only_when_enabled():
    off = load_settings(environ={}, overrides={"ice": {"stun_urls": ["stun:stun.example.org:3478"]}})
    assert [e.urls for e in ice_server_entries(off.ice.stun_urls, off.turn, "a")] == [["stun:stun.example.org:3478"]]
    on = load_settings(environ={}, overrides={"turn": {"enabled": True, "secret": SECRET}})
    [turn] = ice_server_entries(on.ice.stun_urls, on.turn, "a")
    assert turn.username.endswith(":a") and turn.credential


def test_production_defaults_are_safe():
    text = render_config(TurnSettings(enabled=True, secret=SECRET, external_ip="203.0.113.7/10.0.0.5",
                                      allowed_peer_ips=["10.0.0.5"]))
    lines = text.splitlines()
    for needed in ("use-auth-secret", f"static-auth-secret={SECRET}", "no-cli", "fingerprint", "no-multicast-peers",
                   "denied-peer-ip=127.0.0.0-127.255.255.255", "denied-peer-ip=10.0.0.0-10.255.255.255",
                   "external-ip=203.0.113.7/10.0.0.5", "allowed-peer-ip=10.0.0.5", "no-tls",
                   "denied-peer-ip=::ffff:0:0-::ffff:ffff:ffff", "denied-peer-ip=64:ff9b::-64:ff9b::ffff:ffff"):
        assert needed in lines, needed
    assert "allow-loopback-peers" not in lines


def test_loopback_test_config_lifts_only_the_loopback_denial(tmp_path):
    lines = render_config(TurnSettings(enabled=True, secret=SECRET, allow_loopback_peers=True)).splitlines()
    assert "allow-loopback-peers" in lines and "no-cli" in lines
    assert "denied-peer-ip=127.0.0.0-127.255.255.255" not in lines  # it would win over allow-loopback-peers
    assert "denied-peer-ip=192.168.0.0-192.168.255.255" in lines
    tls = render_config(TurnSettings(enabled=True, secret=SECRET, cert=tmp_path / "c.pem", key=tmp_path / "k.pem"))
    assert "tls-listening-port=5349" in tls.splitlines() and "no-tls" not in tls.splitlines()


@pytest.mark.parametrize(
    "turn",
    [{"enabled": True}, {"secret": "short"}, {"enabled": True, "secret": SECRET, "cert": "/c.pem"},
     {"secret": SECRET, "min_port": 50000, "max_port": 40000}],
)
def test_inconsistent_turn_settings_are_refused(turn):
    with pytest.raises(ConfigError):
        load_settings(environ={}, overrides={"turn": turn})


def test_coturn_needs_the_secret():
    with pytest.raises(ConfigError):
        render_config(TurnSettings())
