"""``/metrics`` in the Prometheus text format: live counts (rooms, people, peer connections, agent
sessions, asyncio tasks), turn latency histograms, errors by code, and the process's own figures."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from parley.agents.session import AgentSession
from parley.agents.stage_timer import STAGES
from parley.server.participant import Participant
from parley.signaling import messages as m

if TYPE_CHECKING:
    from parley.signaling.state import ParleyState

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
BUCKETS = (0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)


def live_peer_connections() -> int:
    """Participants whose RTCPeerConnection exists and is not closed."""
    return sum(1 for p in list(Participant.live) if p.pc is not None and p.pc.connectionState != "closed")


def live_agent_sessions() -> int:
    return sum(1 for s in list(AgentSession.live) if not s.closed)


class _LiveCollector(Collector):
    def __init__(self, state: "ParleyState") -> None:
        self._state = state

    def collect(self) -> Iterator[Metric]:
        state = self._state
        gauges = {
            "parley_rooms": ("Rooms that exist", len(state.rooms.rooms)),
            "parley_participants": ("People connected to a room", state.calls()),
            "parley_websocket_connections": ("Open signaling WebSockets", len(state.connections)),
            "parley_peer_connections": ("Peer connections not closed", live_peer_connections()),
            "parley_agent_sessions": ("Agent sessions not closed", live_agent_sessions()),
            "parley_asyncio_tasks": ("Tasks on the event loop", len(asyncio.all_tasks())),
        }
        admission = state.admission
        if admission is not None:
            gauges["parley_agents_running"] = ("Rooms whose agent runs now", admission.active)
            gauges["parley_agent_capacity"] = ("Rooms whose agent may run at once (agent.capacity)", admission.capacity)
        for name, (doc, value) in gauges.items():
            yield GaugeMetricFamily(name, doc, value=value)
        if admission is not None:
            yield CounterMetricFamily("parley_admission_refusals", "Joins refused with busy (agent.capacity)", value=admission.refused)
        if state.models is not None:
            restarts = CounterMetricFamily("parley_model_process_restarts", "Model child processes restarted", labels=["model"])
            restarts.add_metric(["llm"], getattr(state.models.llm, "restarts", 0))
            yield restarts
        playout = state.rooms.playout_totals()
        frames = CounterMetricFamily("parley_agent_frames", "Agents' outgoing 20 ms frames", labels=["kind"])
        for kind in ("frames_sent", "audio_frames_sent", "late_frames", "resyncs"):
            frames.add_metric([kind], getattr(playout, kind))
        yield frames
        batcher = state.models.stt_batcher if state.models else None
        if batcher is not None:
            stt = CounterMetricFamily("parley_stt_batching", "Cross-call STT batching", labels=["kind"])
            for kind in ("utterances", "batches", "passes"):
                stt.add_metric([kind], getattr(batcher.stats, kind))
            yield stt


class ParleyMetrics:
    """One registry per app (tests start several apps in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self.turn_stage = Histogram(
            "parley_turn_stage_seconds", "Per-stage latency of agent turns (turn.metrics)", ["stage"],
            buckets=BUCKETS, registry=self.registry,
        )
        self.errors = Counter("parley_errors", "Errors clients received (WebSocket and HTTP), by code", ["code"], registry=self.registry)

    def watch(self, state: "ParleyState") -> None:
        self.registry.register(_LiveCollector(state))

    def count_error(self, code: str) -> None:
        """One error a client received (``ParleyState.count_error``)."""
        self.errors.labels(code).inc()

    def observe(self, message: m.ServerMessage) -> None:
        """Fed every message a room broadcasts (errors are counted per client, in ``count_error``)."""
        if isinstance(message, m.TurnMetrics):
            for stage in STAGES:
                value = getattr(message, stage)
                if value is not None:
                    self.turn_stage.labels(stage.removesuffix("_ms")).observe(value / 1000)

    def render(self) -> bytes:
        return generate_latest(self.registry)
