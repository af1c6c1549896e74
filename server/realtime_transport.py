"""Where a Realtime session's events travel: a WebSocket, or a WebRTC call's ``oai-events`` data channel."""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Protocol

from aiohttp import WSMsgType, web


class EventTransport(Protocol):
    """Where a session's events travel: a WebSocket, or the ``oai-events`` data channel of a WebRTC call."""

    @property
    def closed(self) -> bool: ...

    async def send(self, text: str) -> None: ...

    def incoming(self) -> AsyncIterator[str | None]:
        """Client events as JSON text (``None`` for a frame that is not text); ends when the transport closes."""
        ...


class WebSocketEvents:
    def __init__(self, ws: web.WebSocketResponse) -> None:
        self._ws = ws

    @property
    def closed(self) -> bool:
        return self._ws.closed

    async def send(self, text: str) -> None:
        await self._ws.send_str(text)

    async def incoming(self) -> AsyncIterator[str | None]:
        async for message in self._ws:
            if message.type == WSMsgType.TEXT:
                yield message.data
            elif message.type == WSMsgType.BINARY:
                yield None


class DataChannelEvents:
    """The ``oai-events`` data channel; what is sent before it opens waits for it."""

    def __init__(self, channel: Any) -> None:
        self._channel = channel
        self._inbox: asyncio.Queue[str | None | BaseException] = asyncio.Queue()
        self._open = asyncio.Event()
        if channel.readyState == "open":
            self._open.set()
        channel.on("open", self._open.set)
        channel.on("message", lambda data: self._inbox.put_nowait(data if isinstance(data, str) else None))
        channel.on("close", lambda: self._inbox.put_nowait(EOFError()))

    @property
    def closed(self) -> bool:
        return self._channel.readyState == "closed"

    async def send(self, text: str) -> None:
        await self._open.wait()
        if self._channel.readyState == "open":
            self._channel.send(text)

    async def incoming(self) -> AsyncIterator[str | None]:
        while True:
            item = await self._inbox.get()
            if isinstance(item, BaseException):
                return
            yield item
