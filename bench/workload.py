"""A realistic event log made by the decider itself, without a broker.

``lifecycle_log`` drives ``decide``/``evolve`` (one ``PartitionState`` per partition) through
what a busy deployment records: sessions register, tasks are submitted (a mix of operations,
some batchable, some delayed by review), assigned, started, and answered; a share fails once
and goes the retry path; sessions heartbeat. The events are the ones the processor would
append to ``task.events``, so the replay benchmark folds the real mix, and the profile of the
domain (``python -m bench.workload``) measures decide+evolve alone.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

from schemas.commands import (
    Command,
    ItemResult,
    RegisterSession,
    ReportResult,
    RetryDue,
    SessionHeartbeat,
    SubmitTask,
    TaskStarted,
)
from schemas.events import Event, TaskAssigned, TaskRetryScheduled
from streams.distributor import domain_config
from streams.domain import DomainConfig, PartitionState, decide, evolve, tick
from streams.settings import Settings

__all__ = ["LogEvent", "lifecycle_log"]

# (operation, share of tasks): critical single tasks dominate, as in the lifecycle benchmark.
_MIX: tuple[tuple[str, int], ...] = (
    ("conversation_send", 6),
    ("contact_update", 2),
    ("workflow_trigger", 1),
    ("report_generation", 1),
)


@dataclass(frozen=True, slots=True)
class LogEvent:
    partition: int
    key: bytes
    event: Event


class _Partition:
    def __init__(self, config: DomainConfig) -> None:
        self.state = PartitionState()
        self.config = config

    def apply(self, command: Command, now_ms: int) -> list[Event]:
        events = decide(command, self.state, now_ms, self.config)
        for event in events:
            self.state = evolve(self.state, event)
        return events

    def tick(self, now_ms: int) -> list[Event]:
        events = tick(self.state, now_ms, self.config)
        for event in events:
            self.state = evolve(self.state, event)
        return events


def lifecycle_log(
    tasks: int,
    *,
    partitions: int = 4,
    clients: int = 64,
    sessions_per_client: int = 2,
    open_tasks: int = 200,
    fail_every: int = 10,
    start_ms: int = 1_700_000_000_000,
) -> Iterator[LogEvent]:
    """Events for ``tasks`` tasks through their lifecycle, about ``open_tasks`` in flight.

    Every ``fail_every``-th task fails once and is retried (retry scheduled, due, assigned
    again, then completed). Time advances 1 ms per submitted task.
    """
    settings = Settings(batch_window_ms=50)
    config = domain_config(settings)
    parts = [_Partition(config) for _ in range(partitions)]
    names = [f"client-{c:04d}" for c in range(clients)]

    def part_of(client: str) -> int:
        return int(client.rsplit("-", 1)[1]) % partitions

    now = start_ms

    def run(client: str, command: Command) -> Iterator[LogEvent]:
        p = part_of(client)
        for event in parts[p].apply(command, now):
            yield LogEvent(p, client.encode(), event)

    for client in names:
        for s in range(sessions_per_client):
            session = RegisterSession(
                client_id=client,
                session_id=f"{client}-s{s}",
                agent_id=f"agent-{client}-{s}",
                max_concurrent=1_000,
            )
            yield from run(client, session)

    weights = [op for op, share in _MIX for _ in range(share)]
    # Work handed out and not answered yet, oldest first: one entry per single task or batch.
    in_flight: list[tuple[str, TaskAssigned]] = []
    batches: dict[str, list[TaskAssigned]] = {}
    retries: list[tuple[str, TaskRetryScheduled]] = []

    def track(owner: str, event: Event) -> None:
        if isinstance(event, TaskAssigned):
            if event.batch_id is None:
                in_flight.append((owner, event))
            else:
                if event.batch_id not in batches:
                    in_flight.append((owner, event))
                batches.setdefault(event.batch_id, []).append(event)
        elif isinstance(event, TaskRetryScheduled):
            retries.append((owner, event))

    def failing(assigned: TaskAssigned) -> bool:
        return assigned.attempt == 1 and int(assigned.task_id[5:]) % fail_every == 0

    def answer(owner: str, assigned: TaskAssigned) -> Iterator[LogEvent]:
        if assigned.batch_id is not None:
            members = batches.pop(assigned.batch_id)
            items = [
                ItemResult(
                    task_id=m.task_id,
                    success=not failing(m),
                    error="upstream 503" if failing(m) else None,
                )
                for m in members
            ]
            result = ReportResult(
                client_id=owner,
                batch_id=assigned.batch_id,
                session_id=assigned.session_id,
                fencing_token=assigned.fencing_token,
                success=all(item.success for item in items),
                items=items,
                execution_time_ms=40,
            )
        else:
            yield from run(
                owner,
                TaskStarted(
                    client_id=owner, task_id=assigned.task_id, fencing_token=assigned.fencing_token
                ),
            )
            bad = failing(assigned)
            result = ReportResult(
                client_id=owner,
                task_id=assigned.task_id,
                session_id=assigned.session_id,
                fencing_token=assigned.fencing_token,
                success=not bad,
                error="upstream 503" if bad else None,
                output={} if bad else {"ok": True, "id": assigned.task_id},
                execution_time_ms=42,
            )
        yield from run(owner, result)

    for i in range(tasks):
        now += 1
        client = names[i % clients]
        submit = SubmitTask(
            client_id=client,
            task_id=f"task-{i:08d}",
            operation=weights[i % len(weights)],
            # reportType: the decider checks a report_generation config (seed 001).
            payload={
                "contact_id": f"c{i}",
                "message": "hello",
                "n": i,
                "reportType": "task_summary",
            },
        )
        produced = list(run(client, submit))
        if i % 50 == 0:
            for p, part in enumerate(parts):
                produced.extend(LogEvent(p, e.client_id.encode(), e) for e in part.tick(now))
        last = i == tasks - 1
        while produced:
            for item in produced:
                yield item
                track(item.event.client_id, item.event)
            produced = []
            while len(in_flight) > open_tasks or (last and in_flight):
                owner, assigned = in_flight.pop(0)
                for item in answer(owner, assigned):
                    yield item
                    track(owner, item.event)
                if i % 97 == 0 and assigned.session_id is not None:
                    heartbeat = SessionHeartbeat(client_id=owner, session_id=assigned.session_id)
                    yield from run(owner, heartbeat)
            while retries and (retries[0][1].due_at_ms <= now or last):
                owner, scheduled = retries.pop(0)
                due = RetryDue(
                    client_id=owner,
                    task_id=scheduled.task_id,
                    attempt=scheduled.attempt,
                    due_at_ms=scheduled.due_at_ms,
                )
                produced.extend(run(owner, due))
            if last:
                now += 5_000  # close the last batch windows
                for p, part in enumerate(parts):
                    produced.extend(LogEvent(p, e.client_id.encode(), e) for e in part.tick(now))


def _profile_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.workload")
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--open-tasks", type=int, default=200)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--profile", action="store_true", help="print a cProfile of the run")
    args = parser.parse_args(argv)
    profiler = cProfile.Profile() if args.profile else None
    started = time.process_time()
    if profiler is not None:
        profiler.enable()
    count = sum(
        1 for _ in lifecycle_log(args.tasks, open_tasks=args.open_tasks, clients=args.clients)
    )
    if profiler is not None:
        profiler.disable()
    seconds = time.process_time() - started
    print(
        f"{args.tasks} tasks, {count} events in {seconds:.2f} s CPU: "
        f"{seconds / args.tasks * 1e6:.0f} us per task (decide+evolve, no codec)"
    )
    if profiler is not None:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    return 0


if __name__ == "__main__":
    sys.exit(_profile_main(sys.argv[1:]))
