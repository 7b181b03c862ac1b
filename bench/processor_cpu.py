"""The processor's CPU per task without a broker: ``python -m bench.processor_cpu [TASKS]``.

The distributor (``streams.distributor.Distributor``) on the real ``Processor`` and a RocksDB
partition store in a temporary directory; the broker is a fake sink that only counts records.
Eight clients with two sessions each (room for any number of tasks) get ``conversation_send``
tasks, 400 submits per cycle; every assignment of a cycle is answered with a successful
``ReportResult`` in the next. The figure is CPU seconds (``process_time``) per task from the
first submit to the last completion: decode, decide, fold, encode, side records, staging and
the store's write, without the waits and the client library a broker adds (the lifecycle
benchmark measures those).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, NamedTuple

from schemas.codec import CODEC
from schemas.commands import RegisterSession, ReportResult, SubmitTask
from schemas.records import Assignment
from streams.distributor import Distributor
from streams.runtime.partition import PartitionRun
from streams.runtime.processing import Processor, RuntimeTopics
from streams.runtime.store import PartitionStore
from streams.settings import Settings

PREFIX = "cpu"
PER_CYCLE = 400


class _Record(NamedTuple):
    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


class _Sink:
    """Takes every record, answers as if the broker had acknowledged it at once."""

    def __init__(self) -> None:
        self.pending: list[tuple[str, int | None, bytes]] = []
        self.ends: dict[tuple[str, int], int] = {}
        self.assignments: list[bytes] = []

    def add(
        self, topic: str, partition: int | None, key: bytes | None, value: bytes, headers: Any = ()
    ) -> None:
        self.pending.append((topic, partition, value))

    async def flush(self) -> dict[tuple[str, int], int]:
        for topic, partition, value in self.pending:
            where = (topic, partition if partition is not None and partition >= 0 else 0)
            self.ends[where] = self.ends.get(where, 0) + 1
            if topic == f"{PREFIX}.assignments":
                self.assignments.append(value)
        self.pending = []
        return dict(self.ends)

    async def place(self, topic: str, key: bytes | None) -> int:
        return 0

    async def position(self, topic: str, partition: int) -> int:
        return self.ends.get((topic, partition), 0)


async def run(tasks: int) -> float:
    """CPU seconds per task."""
    with tempfile.TemporaryDirectory(prefix="taskstream-cpu-") as tmp:
        settings = Settings(
            topic_prefix=PREFIX, partitions=1, data_dir=Path(tmp), client_rate_limit="none"
        )
        app = Distributor(settings)
        sink = _Sink()

        async def commit(offsets: Any) -> None:
            pass

        processor = Processor(
            app, RuntimeTopics(f"{PREFIX}.commands", f"{PREFIX}.events"), sink, commit
        )
        store, _ = PartitionStore.open(Path(tmp) / "p0")
        run = PartitionRun(
            partition=0,
            store=store,
            state=app.load_state(store),
            next_command_offset=0,
            next_event_offset=0,
        )
        offset, clock = 0, 1_700_000_000_000

        def record(model: Any) -> _Record:
            nonlocal offset, clock
            offset, clock = offset + 1, clock + 1
            key = model.client_id.encode()
            return _Record(f"{PREFIX}.commands", 0, offset - 1, clock, key, CODEC.encode(model), [])

        clients = [f"client-{i}" for i in range(8)]
        processor.apply_commands(
            run,
            [
                record(
                    RegisterSession(
                        client_id=c, session_id=f"{c}-s{j}", agent_id="cpu", max_concurrent=10**6
                    )
                )
                for c in clients
                for j in range(2)
            ],
        )
        await processor.complete()
        submitted = done = 0
        started = time.process_time()
        while done < tasks:
            batch = []
            answered, sink.assignments = sink.assignments, []
            for value in answered:
                work = CODEC.decode_as(value, Assignment)
                result = ReportResult(
                    client_id=work.client_id,
                    task_id=work.task_id,
                    fencing_token=work.fencing_token,
                    success=True,
                    output={"ok": True},
                )
                batch.append(record(result))
                done += 1
            more = min(PER_CYCLE, tasks - submitted)
            for i in range(submitted, submitted + more):
                submit = SubmitTask(
                    client_id=clients[i % len(clients)],
                    task_id=f"t-{i}",
                    operation="conversation_send",
                    payload={"message": "hi", "contactId": "c1"},
                )
                batch.append(record(submit))
            submitted += more
            processor.apply_commands(run, batch)
            await processor.complete()
        seconds = time.process_time() - started
        store.close()
        return seconds / tasks


def main(argv: list[str]) -> int:
    tasks = int(argv[0]) if argv else 20_000
    per_task = asyncio.run(run(tasks))
    print(f"{tasks} tasks: {per_task * 1e6:.0f} us CPU per task (processor, no broker)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
