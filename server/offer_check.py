"""What a client's offer may carry, checked before aiortc sees it.

A first offer carries exactly one m-line, audio, with Opus: the caller's microphone up and the
agent's voice down. Every other m-line of a call is added by the server (one per other person), so a
client's re-offer must list exactly the m-lines already negotiated, in the same order. Anything else
would make aiortc add a transceiver (and, once DTLS is up, a decoder thread) that nobody reads.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from parley.core.errors import SignalingError

_RTPMAP = re.compile(r"^a=rtpmap:(\d+) ([^/\s]+)/")
_STATIC_PAYLOAD_TYPES = {"0": "pcmu", "8": "pcma", "9": "g722", "18": "g729"}


@dataclass(frozen=True)
class MediaSection:
    """One m-line of an SDP: its kind (audio, video, application…), its mid and its codec names."""

    kind: str
    mid: str | None
    codecs: tuple[str, ...]


def media_sections(sdp: str) -> list[MediaSection]:
    """The m-lines of ``sdp``, in order, each with its codecs in the order of preference of its m= line."""
    sections: list[MediaSection] = []
    current: tuple[str, list[str]] | None = None  # kind, payload types
    mid: str | None = None
    names: dict[str, str] = {}

    def close() -> None:
        if current is not None:
            kind, payload_types = current
            codecs = tuple(names.get(pt, _STATIC_PAYLOAD_TYPES.get(pt, f"pt{pt}")) for pt in payload_types)
            sections.append(MediaSection(kind, mid, codecs))

    for raw in sdp.splitlines():
        line = raw.strip()
        if line.startswith("m="):
            close()
            fields = line[2:].split()
            current, mid, names = (fields[0] if fields else "", fields[3:]), None, {}
        elif current is not None and line.startswith("a=mid:"):
            mid = line[len("a=mid:"):]
        elif current is not None and (match := _RTPMAP.match(line)) is not None:
            names[match.group(1)] = match.group(2).lower()
    close()
    return sections


def _describe(sections: list[MediaSection]) -> str:
    return ", ".join(s.kind for s in sections)


def check_offer_sdp(sdp: str, negotiated_mids: list[str | None] | None = None) -> None:
    """Refuse an offer Parley cannot take, with a typed ``SignalingError``.

    ``negotiated_mids``: the mids of the call's m-lines for a re-offer; ``None`` for the first offer.
    """
    sections = _sections(sdp)
    if not any(s.kind == "audio" for s in sections):
        raise SignalingError("the offer has no audio m-line: Parley calls need a microphone track", code="no_audio")
    if negotiated_mids is None:
        if len(sections) != 1:
            raise SignalingError(
                f"a Parley call starts with exactly one m-line, audio; this offer has {len(sections)} "
                f"({_describe(sections)})", code="unsupported_media",
            )
    elif [s.mid for s in sections] != negotiated_mids:
        raise SignalingError(
            f"a re-offer must carry the call's m-lines as negotiated (mids {negotiated_mids}); "
            f"this one has {[s.mid for s in sections]} ({_describe(sections)})", code="unsupported_media",
        )
    _require_opus_first(sections[0])


def check_realtime_offer_sdp(sdp: str) -> None:
    """A Realtime API WebRTC offer (``POST /v1/realtime/calls``): one audio m-line, Opus first, and the
    ``oai-events`` data channel, nothing else; a typed ``SignalingError`` otherwise."""
    sections = _sections(sdp)
    kinds = sorted(s.kind for s in sections)
    if kinds != ["application", "audio"]:
        raise SignalingError(
            f"a Realtime WebRTC offer carries one audio m-line and one data channel; this one has {', '.join(kinds)}",
            code="unsupported_media",
        )
    _require_opus_first(next(s for s in sections if s.kind == "audio"))


def _sections(sdp: str) -> list[MediaSection]:
    """The m-lines of an offer that is an SDP description at all (``invalid_sdp`` otherwise)."""
    lines = [line.strip() for line in sdp.strip().splitlines()]
    if not lines or lines[0] != "v=0" or not any(line.startswith("m=") for line in lines):
        raise SignalingError("offer.sdp is not an SDP session description", code="invalid_sdp")
    return media_sections(sdp)


def _require_opus_first(section: MediaSection) -> None:
    if section.kind != "audio" or section.codecs[:1] != ("opus",):
        raise SignalingError(
            f"the microphone m-line must offer Opus first (offered: {', '.join(section.codecs) or 'none'}): "
            "Parley forwards Opus as it arrives", code="unsupported_codec",
        )
