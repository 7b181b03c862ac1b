"""A tiny application for the runtime tests: per-key counters, and timers fired by ticks.

Commands (JSON): ``{"key": k, "by": n, "times": m}`` adds ``n`` to counter ``k`` ``m`` times
(``m`` events, so a crash can fall between two events of one command);
``{"key": k, "by": n, "delay_ms": d, "times": m}`` schedules ``m`` increments for the first
tick at or after the command's time + ``d`` (one tick then emits ``m`` events). Anything that is not such JSON is undecodable.
Events (JSON): ``{"type": "incremented", "key", "by", "total"}`` (``total`` is read from the
state, so a wrong state after recovery shows in the events) and ``{"type": "scheduled", ...}``.
Outputs: one record per ``incremented`` event on ``<prefix>.completed`` (header ``pid``: the
process that produced it). With ``routed=True`` a counter's home is the partition its key
hashes to: a command read elsewhere becomes a ``forwarded`` event whose output is the command
on ``<prefix>.commands`` at its home.

Run as a process: ``python -m tests.integration.runtime_app --bootstrap HOST:PORT --prefix P
--data-dir DIR``; ``TASKSTREAM_TEST_CRASH_AFTER_EVENTS=N`` exits with 137 after N events are
flushed, before the store write.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import logging
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from schemas.errors import DecodeError
from streams.kafka.headers import FORWARDED_HEADER
from streams.runtime.protocol import Output
from streams.runtime.runner import StreamRuntime
from streams.runtime.signals import run_until_signalled
from streams.runtime.store import StoreView
from streams.settings import Settings


@dataclass
class Counters:
    totals: dict[str, int] = field(default_factory=dict)
    timers: dict[str, dict[str, Any]] = field(default_factory=dict)
    dirty: set[str] = field(default_factory=set)


class CounterApp:
    def __init__(self, prefix: str, *, routed: bool = False) -> None:
        self.commands = f"{prefix}.commands"
        self.completed = f"{prefix}.completed"
        self.dlq = f"{prefix}.dlq"
        self.routed = routed

    def initial_state(self) -> Counters:
        return Counters()

    def decode_command(self, value: bytes) -> dict[str, Any]:
        try:
            command = json.loads(value)
            if not isinstance(command, dict) or not isinstance(command.get("key"), str):
                raise ValueError("not a counter command")
            int(command["by"])
        except (ValueError, KeyError, TypeError) as exc:
            raise DecodeError(f"not a counter command: {exc}") from exc
        return command

    def decide(self, command: dict[str, Any], state: Counters, now_ms: int) -> Sequence[Any]:
        key, by = command["key"], int(command["by"])
        times = int(command.get("times", 1))
        if "delay_ms" in command:
            due = now_ms + int(command["delay_ms"])
            return [
                {"type": "scheduled", "id": f"{key}@{due}#{i}", "key": key, "by": by, "due": due}
                for i in range(times)
            ]
        total = state.totals.get(key, 0)
        events = []
        for _ in range(times):
            total += by
            events.append({"type": "incremented", "key": key, "by": by, "total": total})
        return events

    def home_key(self, command: dict[str, Any]) -> bytes | None:
        return str(command["key"]).encode() if self.routed else None

    def forward(
        self,
        command: dict[str, Any],
        value: bytes,
        key: bytes | None,
        partition: int,
        offset: int,
        home: int,
        now_ms: int,
    ) -> dict[str, Any]:
        return {
            "type": "forwarded",
            "key": command["key"],
            "value": base64.b64encode(value).decode(),
            "from": [partition, offset],
            "home": home,
            "at": now_ms,
        }

    def tick(self, state: Counters, now_ms: int) -> Sequence[Any]:
        events: list[dict[str, Any]] = []
        totals: dict[str, int] = {}
        for timer_id, timer in sorted(state.timers.items()):
            if timer["due"] <= now_ms:
                key = timer["key"]
                total = totals.get(key, state.totals.get(key, 0)) + timer["by"]
                totals[key] = total
                events.append(
                    {
                        "type": "incremented",
                        "key": key,
                        "by": timer["by"],
                        "total": total,
                        "timer": timer_id,
                    }
                )
        return events

    def evolve(self, state: Counters, event: dict[str, Any]) -> Counters:
        if event["type"] == "forwarded":
            return state
        if event["type"] == "scheduled":
            state.timers[event["id"]] = event
            state.dirty.add("timer:" + event["id"])
        else:
            state.totals[event["key"]] = event["total"]
            state.dirty.add("total:" + event["key"])
            if "timer" in event:
                state.timers.pop(event["timer"], None)
                state.dirty.add("timer:" + event["timer"])
        return state

    def encode_event(self, event: dict[str, Any]) -> bytes:
        return json.dumps(event, sort_keys=True).encode()

    def decode_event(self, value: bytes) -> dict[str, Any]:
        event: dict[str, Any] = json.loads(value)
        return event

    def event_key(self, event: dict[str, Any]) -> bytes:
        return str(event["key"]).encode()

    def event_type(self, event: dict[str, Any]) -> str:
        return str(event["type"])

    def outputs(self, state: Counters, event: dict[str, Any]) -> Iterable[Output]:
        if event["type"] == "forwarded":
            yield Output(
                self.commands,
                event["key"].encode(),
                base64.b64decode(event["value"]),
                partition=event["home"],
                headers=((FORWARDED_HEADER, "{}:{}".format(*event["from"]).encode()),),
            )
        if event["type"] == "incremented":
            yield Output(
                self.completed,
                event["key"].encode(),
                self.encode_event(event),
                headers=(("pid", str(os.getpid()).encode()),),
            )

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
        letter = {
            "raw": base64.b64encode(raw).decode(),
            "reason": reason,
            "topic": topic,
            "partition": partition,
            "offset": offset,
            "at": now_ms,
        }
        return Output(self.dlq, key, json.dumps(letter).encode())

    def dump_changes(self, state: Counters) -> Iterable[tuple[bytes, bytes | None]]:
        changes: list[tuple[bytes, bytes | None]] = []
        for name in sorted(state.dirty):
            kind, _, ident = name.partition(":")
            if kind == "total":
                changes.append((name.encode(), str(state.totals[ident]).encode()))
            else:
                timer = state.timers.get(ident)
                changes.append((name.encode(), json.dumps(timer).encode() if timer else None))
        state.dirty.clear()
        return changes

    def load_state(self, store: StoreView) -> Counters:
        state = Counters()
        for key, value in store.state_items():
            kind, _, ident = key.decode().partition(":")
            if kind == "total":
                state.totals[ident] = int(value)
            elif kind == "timer":
                state.timers[ident] = json.loads(value)
            else:
                raise ValueError(f"unknown key {key!r}")
        return state

    def persisted(self, state: Counters) -> None:
        """Everything stays in memory."""


def settings_for(bootstrap: str, prefix: str, data_dir: Path, **extra: Any) -> Settings:
    values: dict[str, Any] = {
        "kafka_bootstrap_servers": bootstrap,
        "topic_prefix": prefix,
        "group_id": f"{prefix}-processor",
        "data_dir": data_dir,
        "partitions": 4,
        "kafka_session_timeout_ms": 3000,
        "kafka_heartbeat_interval_ms": 300,
        "tick_interval_ms": 50,
    }
    values.update(extra)
    return Settings(**values)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="runtime_app")
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--data-dir", required=True, type=Path)
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format=f"%(asctime)s [{os.getpid()}] %(levelname)s %(name)s: %(message)s",
    )
    settings = settings_for(args.bootstrap, args.prefix, args.data_dir, partitions=args.partitions)
    crash = os.environ.get("TASKSTREAM_TEST_CRASH_AFTER_EVENTS")

    async def work(stop: asyncio.Event) -> None:
        runtime = StreamRuntime(
            CounterApp(args.prefix),
            settings,
            stop=stop,
            crash_after_events=int(crash) if crash else None,
        )
        await runtime.run()

    return asyncio.run(run_until_signalled(work, name="runtime-app"))


if __name__ == "__main__":
    sys.exit(main())


# ---- helpers for the runtime tests -------------------------------------------------------


async def produce(
    bootstrap: str,
    topic: str,
    records: Sequence[tuple[str | None, bytes]],
    chunk: int | None = None,
    pause_s: float = 0.0,
) -> None:
    """Produce ``records`` in order; with ``chunk``, a pause after every ``chunk`` records."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False, linger_ms=5)
    await producer.start()
    try:
        step = chunk or len(records) or 1
        for start in range(0, len(records), step):
            futures = [
                await producer.send(topic, value, key=key.encode() if key is not None else None)
                for key, value in records[start : start + step]
            ]
            await asyncio.gather(*futures)
            if pause_s:
                await asyncio.sleep(pause_s)
    finally:
        await producer.stop()


async def read_all(bootstrap: str, topic: str) -> list[Any]:
    """Every record of ``topic`` up to its current end, partition by partition, in order."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        from streams.kafka import topic_partitions
        from streams.kafka.reader import KafkaLogReader

        partitions = await topic_partitions(consumer, topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        reader = KafkaLogReader(consumer)
        ends = {tp: await reader.end_offset(topic, tp.partition) for tp in tps}
        records: list[Any] = []
        for tp in tps:
            if ends[tp] == 0:
                continue
            consumer.assign([tp])
            consumer.seek(tp, 0)
            while await consumer.position(tp) < ends[tp]:
                batch = await consumer.getmany(tp, timeout_ms=1000)
                records.extend(r for r in batch.get(tp, ()) if r.offset < ends[tp])
        return records
    finally:
        await consumer.stop()


def incr(key: str, by: int = 1, times: int = 1) -> tuple[str, bytes]:
    return key, json.dumps({"key": key, "by": by, "times": times}).encode()


def check_event_log(events: list[Any]) -> dict[str, int]:
    """Assert the log's invariants; return the final total per key.

    Each (partition, command offset, index) appears once, every group is complete, events sit
    in their command's partition, and every total is the previous total plus ``by``.
    """
    from streams.runtime.causation import cause_of

    seen: set[tuple[Any, ...]] = set()
    groups: dict[tuple[Any, ...], set[int]] = {}
    totals: dict[str, int] = {}
    for record in events:
        cause = cause_of(record.headers, record.partition)
        assert cause is not None, f"event without causation header at {record.offset}"
        ident = (*cause.group, cause.index)
        assert ident not in seen, f"duplicate event for {ident}"
        seen.add(ident)
        if cause.kind == "c":
            assert cause.partition == record.partition
        groups.setdefault((*cause.group, cause.count), set()).add(cause.index)
        event = json.loads(record.value)
        if event["type"] == "incremented":
            before = totals.get(event["key"], 0)
            assert event["total"] == before + event["by"], (event, before)
            totals[event["key"]] = event["total"]
    for (*group, count), indexes in groups.items():
        assert indexes == set(range(count)), f"incomplete group {group}: {sorted(indexes)}"
    return totals


def spawn(bootstrap: str, prefix: str, data_dir: Path, **env: str) -> Any:
    import subprocess

    root = Path(__file__).resolve().parents[2]
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.integration.runtime_app",
            "--bootstrap",
            bootstrap,
            "--prefix",
            prefix,
            "--data-dir",
            str(data_dir),
        ],
        cwd=root,
        env={**os.environ, **env},
        stderr=open(data_dir.parent / f"{data_dir.name}.log", "ab"),  # noqa: SIM115
    )


def schedule(key: str, by: int, delay_ms: int, times: int = 1) -> tuple[str, bytes]:
    return key, json.dumps({"key": key, "by": by, "delay_ms": delay_ms, "times": times}).encode()


def key_on_partition(partition: int, partitions: int, stem: str = "k") -> str:
    """A key the default partitioner sends to ``partition``."""
    from aiokafka.partitioner import DefaultPartitioner

    every = list(range(partitions))
    for i in range(10_000):
        key = f"{stem}{i}"
        if DefaultPartitioner()(key.encode(), every, every) == partition:
            return key
    raise AssertionError("no key found")


async def wait_until(check: Any, timeout_s: float = 30.0, interval_s: float = 0.2) -> Any:
    """Await ``check()`` until it returns something truthy; fail after ``timeout_s``."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s (last: {result!r})")
        await asyncio.sleep(interval_s)
