"""The trivial pipeline on our runtime: Avro command in, one Avro event, one counter, one output.

``HeartbeatCounter`` is a complete ``Application``: it decodes a ``SessionHeartbeat`` with the
Avro codec (pydantic validation included), decides one ``SessionHeartbeatReceived``, counts
heartbeats per client in state persisted through ``dump_changes``, and implies one side record
(the encoded event on ``<prefix>.completed``). The faust peer does the same work per event.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import BenchResult, committed_total, topic_size
from schemas.codec import CODEC
from schemas.commands import SessionHeartbeat
from schemas.errors import DecodeError
from schemas.events import SessionHeartbeatReceived
from schemas.records import DeadLetter
from streams.runtime.protocol import Output
from streams.runtime.runner import StreamRuntime
from streams.runtime.store import StoreView
from streams.settings import Settings

__all__ = ["Counts", "HeartbeatCounter", "run_runtime"]

_STATE_PREFIX = b"hb/"


@dataclass
class Counts:
    by_client: dict[str, int] = field(default_factory=dict)
    dirty: set[str] = field(default_factory=set)


class HeartbeatCounter:
    """Implements ``Application[Counts]``; also times the run (first command -> all flushed)."""

    def __init__(self, prefix: str, expected: int) -> None:
        self.completed_topic = f"{prefix}.completed"
        self.dlq_topic = f"{prefix}.dlq"
        self.expected = expected
        self.handled = 0
        self.started: float | None = None
        self.finished: float | None = None
        self.done = asyncio.Event()
        self._last_event: Any = None
        self._last_encoded = b""

    def initial_state(self) -> Counts:
        return Counts()

    def decode_command(self, value: bytes) -> SessionHeartbeat:
        if self.started is None:
            self.started = time.perf_counter()
        return CODEC.decode_as(value, SessionHeartbeat)

    def decide(self, command: Any, state: Counts, now_ms: int) -> Sequence[Any]:
        self.handled += 1
        return [
            SessionHeartbeatReceived(
                client_id=command.client_id, occurred_at_ms=now_ms, session_id=command.session_id
            )
        ]

    def home_key(self, command: Any) -> bytes | None:
        return None  # counting needs no home: every partition counts what it reads

    def forward(
        self,
        command: Any,
        value: bytes,
        key: bytes | None,
        partition: int,
        offset: int,
        home: int,
        now_ms: int,
    ) -> Any:
        raise NotImplementedError("HeartbeatCounter has no home partitions")

    def tick(self, state: Counts, now_ms: int) -> Sequence[Any]:
        return ()

    def evolve(self, state: Counts, event: Any) -> Counts:
        client = event.client_id
        state.by_client[client] = state.by_client.get(client, 0) + 1
        state.dirty.add(client)
        return state

    def encode_event(self, event: Any) -> bytes:
        encoded = CODEC.encode(event)
        self._last_event, self._last_encoded = event, encoded
        return encoded

    def decode_event(self, value: bytes) -> Any:
        return CODEC.decode_as(value, SessionHeartbeatReceived)

    def event_key(self, event: Any) -> bytes:
        return str(event.client_id).encode()

    def event_type(self, event: Any) -> str:
        return str(event.TYPE)

    def outputs(self, state: Counts, event: Any) -> Iterable[Output]:
        # The runtime encodes an event just before asking for its outputs: reuse the bytes.
        value = self._last_encoded if event is self._last_event else CODEC.encode(event)
        return (Output(self.completed_topic, str(event.client_id).encode(), value),)

    def dead_letter(
        self,
        raw: bytes,
        reason: str,
        topic: str,
        partition: int,
        offset: int,
        now_ms: int,
        key: bytes | None,
    ) -> Output:
        letter = DeadLetter(
            reason=reason,
            source_topic=topic,
            source_partition=partition,
            source_offset=offset,
            raw=raw,
            occurred_at_ms=now_ms,
        )
        return Output(self.dlq_topic, key, CODEC.encode(letter))

    def dump_changes(self, state: Counts) -> Iterable[tuple[bytes, bytes | None]]:
        changes = [
            (_STATE_PREFIX + c.encode(), str(state.by_client[c]).encode()) for c in state.dirty
        ]
        state.dirty.clear()
        if self.finished is None and self.handled >= self.expected:
            # dump_changes runs after the cycle's records are acknowledged.
            self.finished = time.perf_counter()
            self.done.set()
        return changes

    def load_state(self, store: StoreView) -> Counts:
        state = Counts()
        for key, value in store.state_items():
            if not key.startswith(_STATE_PREFIX):
                raise DecodeError(f"unknown state key {key!r}")
            state.by_client[key[len(_STATE_PREFIX) :].decode()] = int(value)
        return state

    def persisted(self, state: Counts) -> None:
        """Everything stays in memory."""


async def run_runtime(
    bootstrap: str,
    prefix: str,
    count: int,
    data_dir: Path,
    partitions: int,
    timeout_s: float = 600.0,
) -> BenchResult:
    """Run ``HeartbeatCounter`` over ``<prefix>.commands`` (``count`` records, pre-filled)
    with a fresh group and data dir; timed from the first decoded command until every
    command's records are acknowledged (group join and recovery excluded)."""
    settings = Settings(
        kafka_bootstrap_servers=bootstrap,
        topic_prefix=prefix,
        group_id=f"{prefix}-bench-{uuid.uuid4().hex[:6]}",
        data_dir=data_dir,
        partitions=partitions,
        kafka_session_timeout_ms=6000,
        kafka_heartbeat_interval_ms=500,
    )
    app = HeartbeatCounter(prefix, count)
    gc.freeze()  # as every part's process does at its start (streams.runtime.signals.run_part)
    runtime: StreamRuntime[Counts] = StreamRuntime(app, settings, name="bench-runtime")
    task = asyncio.create_task(runtime.run())
    try:
        done = asyncio.create_task(app.done.wait())
        finished, _ = await asyncio.wait(
            {task, done}, timeout=timeout_s, return_when="FIRST_COMPLETED"
        )
        if task in finished:
            task.result()  # raises the runtime's error
        if done not in finished:
            done.cancel()
            return BenchResult(
                "runtime",
                "failed",
                events=app.handled,
                detail=f"only {app.handled} of {count} commands handled in {timeout_s:.0f}s",
            )
    finally:
        runtime.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 30)
    assert app.started is not None and app.finished is not None
    events = await topic_size(bootstrap, settings.topic("events"))
    outputs = await topic_size(bootstrap, app.completed_topic)
    committed = await committed_total(
        bootstrap, settings.group_id, settings.topic("commands"), partitions
    )
    return BenchResult(
        "runtime",
        "ok",
        events=app.handled,
        seconds=app.finished - app.started,
        detail="StreamRuntime: Avro decode, decide, counter in RocksDB, event + output record",
        extra={
            "events_written": events,
            "outputs_written": outputs,
            "commands_committed": committed,
        },
    )
