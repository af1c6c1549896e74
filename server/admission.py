"""Admission control: at most ``agent.capacity`` rooms have a running agent; one more is refused ``busy``.

The agent's models are the scarce thing (on 2 cores a second concurrent call slows both), so a
join that would start another agent is turned away with a retry hint while the calls in progress
keep their latency. Joining a room whose agent already runs, or a room without an agent, is free.
"""

from __future__ import annotations

import logging

from parley.core.errors import LimitError

log = logging.getLogger(__name__)


class BusyError(LimitError):
    code = "busy"


class AgentAdmission:
    def __init__(self, capacity: int, retry_after_s: float) -> None:
        self.capacity = capacity
        self.retry_after_s = retry_after_s
        self._rooms: set[str] = set()
        self.refused = 0  # joins turned away since start

    @property
    def active(self) -> int:
        return len(self._rooms)

    def acquire(self, room_id: str) -> None:
        """Let ``room_id``'s agent start, or raise ``BusyError``."""
        if room_id in self._rooms:
            return
        if len(self._rooms) >= self.capacity:
            self.refused += 1
            log.warning("join refused: %d of %d agents running (agent.capacity)", len(self._rooms), self.capacity)
            raise BusyError(
                f"the agent is busy with {len(self._rooms)} call(s), its capacity here (agent.capacity); try again later",
                retry_after_s=self.retry_after_s,
            )
        self._rooms.add(room_id)

    def release(self, room_id: str) -> None:
        self._rooms.discard(room_id)
