"""Closing an aiortc peer connection without letting it hold the caller forever.

``RTCPeerConnection.close()`` stops every sender and receiver, then the DTLS and ICE transports, one
after another, and each step waits for a task to say it has exited. Now and then one never does
(aiortc issue #283: "await pc.close() does not complete", seen here once in CI, where a test sat idle
for 300 s after its call had ended). Everything that closes a peer connection goes through
``close_peer``: it waits a bounded time, then logs and moves on, so a room, a server shutdown or a
client's ``close()`` is not held by one stuck transport.
"""

from __future__ import annotations

import asyncio
import logging
import weakref

from aiortc import RTCPeerConnection

CLOSE_WITHIN_S = 5.0  # a close that works takes milliseconds on loopback, ~0.1 s over a real network

log = logging.getLogger(__name__)
_left_behind: weakref.WeakSet[RTCPeerConnection] = weakref.WeakSet()


async def close_peer(pc: RTCPeerConnection, within_s: float = CLOSE_WITHIN_S, logger: logging.Logger | logging.LoggerAdapter | None = None) -> bool:
    """Close ``pc``, waiting at most ``within_s``; False (and a warning) when the close did not finish.

    A close cut short leaves the connection half-closed: a second ``pc.close()`` would wait for the first
    forever, so the caller must not close it again directly (``close_peer`` again returns False at once).
    """
    if pc in _left_behind:
        return False
    try:
        await asyncio.wait_for(asyncio.shield(pc.close()), within_s)
    except TimeoutError:
        _left_behind.add(pc)
        (logger or log).warning(
            "a peer connection did not finish closing within %g s (connection state %s): left behind",
            within_s, pc.connectionState,
        )
        return False
    return True
