"""``SignalingConnection``: one WebSocket client — checks its token, validates every message, drives its call."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
import time
from typing import TYPE_CHECKING, Awaitable, Callable

from aiohttp import WSCloseCode, WSMsgType, web

from parley.core.errors import ParleyError, SignalingError
from parley.core.logs import CallLogger
from parley.core.tasks import cancel_and_wait
from parley.signaling import messages as m
from parley.signaling.contracts import Call, Room
from parley.signaling.ice import ice_servers
from parley.signaling.limits import TokenBucket

if TYPE_CHECKING:
    from parley.signaling.state import ParleyState

log = logging.getLogger(__name__)
_counter = itertools.count(1)


class SignalingConnection:
    """Reads client messages in order, answers with typed messages, and owns the call it started."""

    def __init__(
        self, ws: web.WebSocketResponse, state: "ParleyState", token: str | None = None, address: str = "",
    ) -> None:
        self._ws = ws
        self._state = state
        self._url_token = token
        self.address = address  # the client's IP, for the per-address cap on sockets that have not joined
        self.participant_id = f"p{next(_counter)}-{secrets.token_hex(3)}"
        self._log = CallLogger(log, participant=self.participant_id)
        self._outbox: asyncio.Queue[str | None] = asyncio.Queue()
        self.participant: Call | None = None
        self.room: Room | None = None
        self._joined = asyncio.Event()
        self._offered = asyncio.Event()  # the server answered this client's first offer
        self._ending = False
        http = state.settings.http
        self._max_outbox = http.max_outbox_messages
        self._bucket = TokenBucket(http.ws_rate_per_s, http.ws_burst)
        self._dropped = 0
        self._last_rate_error = 0.0

    @property
    def joined(self) -> bool:
        return self.participant is not None

    def emit(self, message: m.ServerMessage) -> None:
        """Queue a message for this client; dropped silently once the socket is gone.

        Every message the server sends this client comes through here (its own answers, the room's
        broadcasts, the agent's events), so here every error it receives is counted.
        A client that lets ``http.max_outbox_messages`` pile up unread is disconnected: its queue
        must not grow without bound on the server.
        """
        if self._ws.closed or self._ending:
            return
        if isinstance(message, m.Error):
            self._state.count_error(message.code)
        if self._outbox.qsize() >= self._max_outbox:
            self._log.warning("the client reads too slowly (%d messages queued): closing its socket", self._outbox.qsize())
            self._ending = True
            asyncio.ensure_future(self._ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"slow_consumer"))
            return
        self._outbox.put_nowait(message.model_dump_json())

    def _error(self, code: str, message: str, retry_after_s: float | None = None) -> None:
        self._log.warning("error %s: %s", code, message)
        self.emit(m.Error(code=code, message=message, retry_after_s=retry_after_s))

    async def _send_loop(self) -> None:
        while (text := await self._outbox.get()) is not None:
            try:
                await self._ws.send_str(text)
            except (ConnectionError, RuntimeError):
                return

    async def run(self) -> None:
        """Serve the socket until the client leaves or vanishes, then tear the call down."""
        sender = asyncio.create_task(self._send_loop())
        deadlines = asyncio.create_task(self._enforce_deadlines())
        self._state.connections.add(self)
        try:
            async for raw in self._ws:
                if raw.type in (WSMsgType.TEXT, WSMsgType.BINARY) and not self._within_rate():
                    continue
                if raw.type == WSMsgType.TEXT:
                    if not await self._handle(raw.data):
                        break
                elif raw.type == WSMsgType.BINARY:
                    self._error("invalid_message", "binary frames are not part of the protocol; send JSON text")
                elif raw.type == WSMsgType.ERROR:
                    self._log.warning("socket error: %s", self._ws.exception())
                    break
        finally:
            with contextlib.suppress(asyncio.CancelledError):  # the teardown below runs even if we are cancelled
                await cancel_and_wait(deadlines)  # its wait_for steps could swallow one cancel (Python 3.11)
            await self._teardown()
            self._outbox.put_nowait(None)
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(sender, 2)

    def _within_rate(self) -> bool:
        """Spend a token; over the limit the message is dropped, with at most one error a second."""
        if self._bucket.take():
            return True
        self._dropped += 1
        now = time.monotonic()
        if now - self._last_rate_error >= 1.0:
            self._last_rate_error = now
            self._error("rate_limited", f"more than {self._bucket.rate:g} messages a second: {self._dropped} dropped so far")
        return False

    async def _handle(self, raw: str) -> bool:
        """Handle one message; return False when the client asked to leave."""
        try:
            message = m.parse_client_message(raw)
            if isinstance(message, m.Join):
                await self._join(message)
            elif isinstance(message, m.Offer):
                self.emit(await self._require_participant().answer(message.sdp))
                self._offered.set()
            elif isinstance(message, m.ClientAnswer):
                await self._require_participant().accept_answer(message.sdp)
            elif isinstance(message, m.Candidate):
                await self._require_participant().add_candidate(message)
            elif isinstance(message, m.Ping):
                self.emit(m.Pong())
            elif isinstance(message, m.Leave):
                self._log.info("left")
                return False
        except ParleyError as exc:
            self._error(exc.code, str(exc), exc.retry_after_s)
        except Exception as exc:  # a bug must cost this message, not the server
            self._log.exception("unexpected error handling a message")
            self._error("internal_error", f"{type(exc).__name__} while handling the message")
        return True

    def _require_participant(self) -> Call:
        if self.participant is None:
            raise SignalingError("send join first", code="not_joined")
        return self.participant

    async def _join(self, message: m.Join) -> None:
        if self.participant is not None:
            raise SignalingError("already joined", code="already_joined")
        state = self._state
        grant = state.tokens.verify(message.token or self._url_token, message.room)
        if state.draining:
            raise SignalingError("the server is shutting down", code="server_shutdown", retry_after_s=state.settings.http.shutdown_retry_after_s)
        target = await state.directory.route(grant.room)
        if isinstance(target, str):  # another node of the cluster holds the room: the client goes there
            self._log.info("room %s is on another node: redirected to %s", grant.room, target)
            self.emit(m.Redirect(url=target, room=grant.room))
            self._ending = True
            self._disconnect()
            return
        room = target
        if state.calls() >= state.settings.http.max_calls:
            raise SignalingError(f"the server is at its limit of {state.settings.http.max_calls} calls", code="server_full")
        if message.name is not None and message.name != grant.name:
            self._log.info("join.name %r ignored: names come from the token (%r)", message.name, grant.name)
        participant = state.open_call(
            self.participant_id, grant.identity, grant.name, self.emit, self._end_call, self._disconnect,
        )
        present = await room.admit(participant)
        self.participant, self.room = participant, room
        self._joined.set()
        self._log.info("joined room %s as %s (%r)", room.id, grant.identity, participant.name)
        self.emit(m.Joined(
            participant_id=self.participant_id, room=room.id, identity=grant.identity,
            ice_servers=ice_servers(state.settings.ice.stun_urls, state.settings.turn, grant.identity), participants=present,
        ))

    def _disconnect(self) -> None:
        """Close the socket once the messages already queued (such as the reason) have gone out."""

        async def close_after_flush() -> None:
            for _ in range(100):
                if self._outbox.empty():
                    break
                await asyncio.sleep(0.01)
            await self._ws.close()

        asyncio.ensure_future(close_after_flush())

    def _end_call(self, code: str, message: str) -> None:
        """The call cannot go on (ICE failed, a deadline passed, renegotiation failed): say why, close the socket.

        The teardown that follows takes the participant out of the room; a client that wants to carry
        on rejoins with a fresh socket and peer connection (the JS SDK does).
        """
        if self._ending:
            return
        self._error(code, message)
        self._ending = True
        self._disconnect()

    async def _enforce_deadlines(self) -> None:
        """Close a socket that does not join, offer or connect in time (``http.*_timeout_s``)."""
        http = self._state.settings.http
        steps: list[tuple[float, str, str, Callable[[], Awaitable[object]]]] = [
            (http.join_timeout_s, "join_timeout", "no join in {:g} s", self._joined.wait),
            (http.offer_timeout_s, "offer_timeout", "no accepted offer in {:g} s after joining", self._offered.wait),
            (http.connect_timeout_s, "ice_timeout", "the media connection did not connect within {:g} s of the answer",
             lambda: self._require_participant().connected.wait()),
        ]
        for timeout, code, message, done in steps:
            try:
                await asyncio.wait_for(done(), timeout)
            except asyncio.TimeoutError:
                self._end_call(code, message.format(timeout))
                return

    async def _teardown(self) -> None:
        if self.participant is not None:
            if self.room is not None:
                await self.room.remove(self.participant)
            await self.participant.close()
        self._state.connections.discard(self)
        if not self._ws.closed:
            await self._ws.close()
