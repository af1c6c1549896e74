"""``SignalingConnection``: one WebSocket client — validates every message, drives its ``Call``."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
from typing import TYPE_CHECKING

from aiohttp import WSMsgType, web

from parley.server.call import Call, ice_servers
from parley.server.errors import ParleyError, SignalingError
from parley.server.logs import CallLogger
from parley.signaling import messages as m

if TYPE_CHECKING:
    from parley.signaling.app import ParleyState

log = logging.getLogger(__name__)
_counter = itertools.count(1)


class SignalingConnection:
    """Reads client messages in order, answers with typed messages, and owns the call it started."""

    def __init__(self, ws: web.WebSocketResponse, state: "ParleyState") -> None:
        self._ws = ws
        self._state = state
        self.participant_id = f"p{next(_counter)}-{secrets.token_hex(3)}"
        self._log = CallLogger(log, participant=self.participant_id)
        self._outbox: asyncio.Queue[str | None] = asyncio.Queue()
        self.call: Call | None = None
        self.room: str | None = None

    def emit(self, message: m.ServerMessage) -> None:
        """Queue a message for this client; dropped silently once the socket is gone."""
        if not self._ws.closed:
            self._outbox.put_nowait(message.model_dump_json())

    def _error(self, code: str, message: str) -> None:
        self._log.warning("error %s: %s", code, message)
        self.emit(m.Error(code=code, message=message))

    async def _send_loop(self) -> None:
        while (text := await self._outbox.get()) is not None:
            try:
                await self._ws.send_str(text)
            except (ConnectionError, RuntimeError):
                return

    async def run(self) -> None:
        """Serve the socket until the client leaves or vanishes, then tear the call down."""
        sender = asyncio.create_task(self._send_loop())
        try:
            async for raw in self._ws:
                if raw.type == WSMsgType.TEXT:
                    if not await self._handle(raw.data):
                        break
                elif raw.type == WSMsgType.BINARY:
                    self._error("invalid_message", "binary frames are not part of the protocol; send JSON text")
                elif raw.type == WSMsgType.ERROR:
                    self._log.warning("socket error: %s", self._ws.exception())
                    break
        finally:
            await self._teardown()
            self._outbox.put_nowait(None)
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(sender, 2)

    async def _handle(self, raw: str) -> bool:
        """Handle one message; return False when the client asked to leave."""
        try:
            message = m.parse_client_message(raw)
            if isinstance(message, m.Join):
                self._join(message)
            elif isinstance(message, m.Offer):
                sdp = await self._require_call().answer(message.sdp)
                self.emit(m.Answer(sdp=sdp))
            elif isinstance(message, m.Candidate):
                await self._require_call().add_candidate(message)
            elif isinstance(message, m.Ping):
                self.emit(m.Pong())
            elif isinstance(message, m.Leave):
                self._log.info("left")
                return False
        except ParleyError as exc:
            self._error(exc.code, str(exc))
        except Exception as exc:  # a bug must cost this message, not the server
            self._log.exception("unexpected error handling a message")
            self._error("internal_error", f"{type(exc).__name__} while handling the message")
        return True

    def _require_call(self) -> Call:
        if self.call is None:
            raise SignalingError("send join first", code="not_joined")
        return self.call

    def _join(self, message: m.Join) -> None:
        if self.call is not None:
            raise SignalingError("already joined", code="already_joined")
        if len(self._state.connections) >= self._state.settings.http.max_calls:
            raise SignalingError(
                f"the server is at its limit of {self._state.settings.http.max_calls} calls", code="server_full"
            )
        self.room = message.room
        self.call = Call(self.participant_id, self._state.settings, self._state.models, self.emit, self._on_call_failed)
        self._state.connections.add(self)
        self._log.info("joined room %s as %r", message.room, message.name)
        self.emit(m.Joined(participant_id=self.participant_id, room=message.room, ice_servers=ice_servers(self._state.settings)))

    def _on_call_failed(self, code: str) -> None:
        self._error(code, "the media connection failed")

    async def _teardown(self) -> None:
        if self.call is not None:
            await self.call.close()
            self._state.closed_playout.add(self.call.playout.stats)
        self._state.connections.discard(self)
        if not self._ws.closed:
            await self._ws.close()
