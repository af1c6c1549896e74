"""Every place Parley reaches into aiortc / aioice internals, in one module, checked at start.

The SFU forwards Opus without decoding by standing in for a receiver's private decoder queue; the
agent wants a shallower receive jitter buffer than aiortc's; single-machine set-ups need loopback
ICE candidates; aioice leaks a consent task when a connection closes mid-handshake; the Python client
reads the nominated ICE pair. None of that is public API, so ``install()`` first checks that every
private name it touches is still there and shaped as expected, and stops with a line naming the
installed versions when one moved. pyproject pins aiortc and aioice to the minor versions the suite
has run on; a newer release has to pass ``check()`` (and the suite) before the pin moves.

Callers: the composition root (``parley serve``), tests, the bench and the examples all go through
``install()``; ``tap_decoder_queue`` and ``nominated_pair`` are the two per-object reads/writes.
"""

from __future__ import annotations

import asyncio
import inspect
import ipaddress
import queue
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any, Callable

import aioice.ice
import aiortc.rtcrtpreceiver as rtcrtpreceiver
from aiortc import RTCPeerConnection, RTCRtpReceiver
from aiortc.jitterbuffer import JitterBuffer

from parley.core.errors import ParleyError

_DECODER_QUEUE = "_RTCRtpReceiver__decoder_queue"
_STARTED = "_RTCRtpReceiver__started"
_original_host_addresses: Callable[[bool, bool], list[str]] = aioice.ice.get_host_addresses
_original_connect = aioice.ice.Connection.connect


class LibraryMismatchError(ParleyError):
    """aiortc or aioice no longer has an internal Parley relies on."""

    code = "library_mismatch"


def versions() -> str:
    """``aiortc X, aioice Y`` as installed, for messages and logs."""
    return f"aiortc {version('aiortc')}, aioice {version('aioice')}"


def check() -> None:
    """Raise ``LibraryMismatchError`` unless every internal this module touches is where it was."""
    problems: list[str] = []
    if not callable(getattr(aioice.ice, "get_host_addresses", None)) or list(
        inspect.signature(_original_host_addresses).parameters
    ) != ["use_ipv4", "use_ipv6"]:
        problems.append("aioice.ice.get_host_addresses(use_ipv4, use_ipv6) is gone or changed")
    if not inspect.iscoroutinefunction(_original_connect):
        problems.append("aioice.ice.Connection.connect is no longer a coroutine function")
    connection = aioice.ice.Connection(ice_controlling=True)
    for name in ("_closing", "_query_consent_task", "_nominated"):
        if not hasattr(connection, name):
            problems.append(f"aioice.ice.Connection has no {name}")
    if not isinstance(getattr(connection, "_nominated", None), dict):
        problems.append("aioice.ice.Connection._nominated is no longer a dict")
    in_use = getattr(rtcrtpreceiver, "JitterBuffer", None)  # aiortc's class, or our factory once installed
    if in_use is not JitterBuffer and not _is_our_jitter_factory(in_use):
        problems.append("aiortc.rtcrtpreceiver no longer builds its jitter buffer through a JitterBuffer name")
    if not {"capacity", "prefetch", "is_video"} <= set(inspect.signature(JitterBuffer).parameters):
        problems.append("aiortc.jitterbuffer.JitterBuffer(capacity, prefetch, is_video) changed")
    receiver = _probe_receiver()
    if not isinstance(getattr(receiver, _DECODER_QUEUE, None), queue.Queue):
        problems.append(f"RTCRtpReceiver has no {_DECODER_QUEUE} queue.Queue")
    if getattr(receiver, _STARTED, None) is not False:
        problems.append(f"RTCRtpReceiver has no {_STARTED} flag")
    ice_transport = getattr(getattr(receiver, "transport", None), "transport", None)
    if not isinstance(getattr(ice_transport, "_connection", None), aioice.ice.Connection):
        problems.append("RTCIceTransport._connection is no longer an aioice Connection")
    if problems:
        raise LibraryMismatchError(
            f"Parley relies on internals of {versions()} that moved: " + "; ".join(problems)
            + ". Install the versions pinned in pyproject.toml."
        )


async def _new_receiver() -> RTCRtpReceiver:
    return RTCPeerConnection().addTransceiver("audio").receiver


def _probe_receiver() -> RTCRtpReceiver:
    """A fresh receiver to inspect (no I/O); aiortc's sender wants an event loop, so lend one if none runs."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        loop = asyncio.new_event_loop()
        try:
            return loop.run_until_complete(_new_receiver())
        finally:
            loop.close()
    return RTCPeerConnection().addTransceiver("audio").receiver


@dataclass(frozen=True)
class HookSettings:
    """What ``install`` applies: ICE host candidates and the audio receive jitter buffer depth."""

    host_addresses: tuple[str, ...] = ()
    include_loopback: bool = False
    audio_jitter_prefetch: int | None = None  # None: aiortc's own depth (4 packets)


def install(hooks: HookSettings = HookSettings()) -> None:
    """Check the internals, then apply every hook for this process (calling it again re-applies)."""
    check()
    _use_host_addresses(list(hooks.host_addresses), include_loopback=hooks.include_loopback)
    aioice.ice.Connection.connect = _connect_then_respect_close  # type: ignore[method-assign]
    if hooks.audio_jitter_prefetch is not None:
        _use_audio_jitter_prefetch(hooks.audio_jitter_prefetch)


def _use_host_addresses(addresses: list[str], *, include_loopback: bool) -> None:
    """``addresses`` non-empty: offer exactly those. Empty: aioice's own choice (every non-loopback
    interface), plus 127.0.0.1 when ``include_loopback`` so a browser on the same machine can connect."""
    fixed = [ipaddress.ip_address(a) for a in addresses]  # raises ValueError on a typo

    def choose(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        if fixed:
            chosen = fixed
        else:
            chosen = [ipaddress.ip_address(a.split("%")[0]) for a in _original_host_addresses(use_ipv4, use_ipv6)]
            if include_loopback:
                chosen.append(ipaddress.ip_address("127.0.0.1"))
        return [str(ip) for ip in chosen if (ip.version == 4 and use_ipv4) or (ip.version == 6 and use_ipv6)]

    aioice.ice.get_host_addresses = choose


async def _connect_then_respect_close(self: aioice.ice.Connection) -> None:
    await _original_connect(self)
    if getattr(self, "_closing", False) and self._query_consent_task is not None:
        # close() ran while the check list was completing: aioice would start consent checks on a
        # closed connection, a task that then sleeps forever (one leaked per short call, measured).
        self._query_consent_task.cancel()
        self._query_consent_task = None


def _use_audio_jitter_prefetch(packets: int) -> None:
    """Make every audio receiver wait for ``packets`` packets before decoding (aiortc's default: 4).

    Each packet is 20 ms of the caller's speech arriving later at the VAD and STT, and at the
    barge-in detector. 1 still reorders adjacent packets; losses are concealed by Opus either way.
    """

    def make(capacity: int, prefetch: int = 0, is_video: bool = False) -> JitterBuffer:
        return JitterBuffer(capacity, prefetch=prefetch if is_video else packets, is_video=is_video)

    make.parley_jitter_factory = True  # type: ignore[attr-defined]
    rtcrtpreceiver.JitterBuffer = make  # type: ignore[assignment,misc]


def _is_our_jitter_factory(candidate: Any) -> bool:
    return bool(getattr(candidate, "parley_jitter_factory", False))


def tap_decoder_queue(receiver: RTCRtpReceiver, replacement: queue.Queue) -> None:  # type: ignore[type-arg]
    """Stand ``replacement`` in for the receiver's decoder queue (encoded frames go through it)."""
    if not isinstance(getattr(receiver, _DECODER_QUEUE, None), queue.Queue):
        raise LibraryMismatchError(f"this RTCRtpReceiver has no decoder queue to tap ({versions()})")
    if getattr(receiver, _STARTED, False):
        raise RuntimeError("tap the receiver before it starts")
    setattr(receiver, _DECODER_QUEUE, replacement)


def nominated_pair(pc: RTCPeerConnection) -> tuple[str, str] | None:
    """(local, remote) candidate types of the ICE pair in use, e.g. ("relay", "host"); None before one is chosen."""
    for transceiver in pc.getTransceivers():
        connection = transceiver.receiver.transport.transport._connection
        pair = connection._nominated.get(1)
        if pair is not None:
            return pair.local_candidate.type, pair.remote_candidate.type
    return None
