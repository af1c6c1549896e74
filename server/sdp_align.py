"""Keep a re-offer's RTP numbering the same as the client's, so browsers accept server renegotiation.

aiortc numbers codecs and header extensions afresh in every ``createOffer`` (opus 96, mid = 1,
audio-level = 2). A browser whose own offer used other numbers (Chromium: opus 111, audio-level = 1,
mid = 4) refuses a re-offer that renumbers an active m-line ("RTP extension ID reassignment not
supported"). ``align_offer`` rewrites the server's offer with the client's numbers.
"""

from __future__ import annotations

import re

_EXTMAP = re.compile(r"^a=extmap:(\d+)(/\w+)? (\S+)(.*)$")
_RTPMAP = re.compile(r"^a=rtpmap:(\d+) ([^/\s]+)/(\d+)(?:/(\d+))?")
_PT_LINE = re.compile(r"^a=(rtpmap|fmtp|rtcp-fb):(\d+)(.*)$")

CodecKey = tuple[str, int, int]  # name (lower case), clock rate, channels


def _codec_key(match: re.Match[str]) -> CodecKey:
    return match.group(2).lower(), int(match.group(3)), int(match.group(4) or 1)


class RtpNumbering:
    """The client's payload types and header extension ids, read from its offer."""

    def __init__(self, sdp: str) -> None:
        self.extensions: dict[str, int] = {}
        self.payload_types: dict[CodecKey, int] = {}
        for line in sdp.splitlines():
            line = line.strip()
            if (ext := _EXTMAP.match(line)) is not None:
                self.extensions.setdefault(ext.group(3), int(ext.group(1)))
            elif (rtp := _RTPMAP.match(line)) is not None:
                self.payload_types.setdefault(_codec_key(rtp), int(rtp.group(1)))

    def align_offer(self, sdp: str) -> str:
        """Renumber (or drop) codecs and header extensions of ``sdp`` to the client's numbering."""
        lines = sdp.splitlines()
        out: list[str] = []
        section: list[str] = []
        for line in lines:
            if line.startswith("m=") and section:
                out += self._align_section(section)
                section = []
            (section if section or line.startswith("m=") else out).append(line)
        if section:
            out += self._align_section(section)
        return "\r\n".join(out) + "\r\n"

    def _align_section(self, section: list[str]) -> list[str]:
        pt_map: dict[int, int | None] = {}
        for line in section:
            if (rtp := _RTPMAP.match(line)) is not None:
                pt_map[int(rtp.group(1))] = self.payload_types.get(_codec_key(rtp))  # None: the client lacks it
        out: list[str] = []
        for line in section:
            if line.startswith("m="):
                kind, port, proto, *formats = line.split(" ")
                kept = [str(pt_map[int(f)]) for f in formats if f.isdigit() and pt_map.get(int(f)) is not None]
                out.append(" ".join([kind, port, proto, *kept]))
            elif (ext := _EXTMAP.match(line)) is not None:
                client_id = self.extensions.get(ext.group(3))
                if client_id is not None:
                    out.append(f"a=extmap:{client_id}{ext.group(2) or ''} {ext.group(3)}{ext.group(4)}")
            elif (pt_line := _PT_LINE.match(line)) is not None:
                new = pt_map.get(int(pt_line.group(2)))
                if new is not None:
                    out.append(f"a={pt_line.group(1)}:{new}{pt_line.group(3)}")
            else:
                out.append(line)
        return out
