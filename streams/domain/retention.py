"""Retention: the partition state forgets finished work once the retention window passed.

Without it the state keeps a record of every task ever submitted (the idempotency check of
SubmitTask and the dependency checks read it), so a processor's memory and store grow with
its age. ``task_retention_ms`` is the window: a task that finished (completed, failed,
cancelled or rejected) and a batch job that completed are forgotten by a tick at least
that long after they finished (in sweeps, see below). Until then a repeated SubmitTask (SubmitBatchJob) of
the id is a redelivery and changes nothing; afterwards the id is unknown, exactly like one
never seen:

* a SubmitTask with a forgotten id is a new task;
* a SubmitTask that depends on a forgotten id waits for it, as for any unknown id (it may be
  submitted later); dependants must therefore be submitted within the window after their
  dependencies finished;
* commands naming a forgotten task (results, cancels, ...) are refused as ``unknown task``.

Forgetting is a decision recorded like any other: the tick emits ``TasksForgotten`` (one per
client, keyed by the client like every event) and ``evolve`` deletes the records, so a state
replayed from the log forgets exactly what the live one did. The event log and the read side
keep the history.

Live work keeps what it refers to: a finished task stays while a waiting task depends on it
(its completion is what the dependant is waiting to see) or while its batch is still open
or in flight; unfinished tasks and unfinished batch jobs are never forgotten. Batches and
sessions are removed by the lifecycle already.

Forgetting runs in sweeps, so that one event covers many tasks of its client rather than
one or two: a sweep starts when the oldest candidate finished ``sweep_ms`` (a tenth of the
window, at most a minute) before the cutoff, and forgets everything up to the cutoff. So a
finished task is forgotten between ``task_retention_ms`` and ``task_retention_ms +
sweep_ms`` after it finished (later only under a backlog of more than ``FORGET_LIMIT`` a
tick).

Cost: the candidates are a heap ordered by (finished at, kind, id) in the state, rebuilt on
load; a tick with nothing due looks at its top only. A tick forgets at most
``FORGET_LIMIT`` ids, so one tick never writes a huge record (500 ids of at most 512
characters: 256 KB at worst, ~7 KB typically); the rest go on the next ticks (ten a second
per partition by default). The choice depends on the records alone (never on the heap's
layout), so a recovered state ticks exactly like the live one.
"""

from __future__ import annotations

import itertools
from typing import Final

from schemas.events import TasksForgotten
from streams.domain.context import Decision
from streams.domain.state import RETIRED_TASK

FORGET_LIMIT: Final = 500
"""Ids (tasks and batch jobs) one tick forgets at most."""
SWEEP_MAX_MS: Final = 60_000


def sweep_ms(retention_ms: int) -> int:
    """How long past the window the oldest entry may wait before a sweep starts."""
    return min(SWEEP_MAX_MS, retention_ms // 10)


def forget(ctx: Decision) -> None:
    """Emit ``TasksForgotten`` for what finished ``task_retention_ms`` or longer ago."""
    st = ctx.state
    retention_ms = ctx.config.task_retention_ms
    cutoff = ctx.now - retention_ms
    # The entries are in memory (put since the last flush) and in the archive: the choice
    # depends on the records alone, never on where an entry is kept.
    due = (e for e in st.retired_until(cutoff) if st.forgettable(e) is not None)
    first = next(due, None)
    if first is None or first[0] > cutoff - sweep_ms(retention_ms):
        return
    by_client: dict[str, tuple[list[str], list[str]]] = {}
    for count, entry in enumerate(itertools.chain((first,), due)):
        if count == FORGET_LIMIT:
            break
        client_id = st.forgettable(entry)
        assert client_id is not None
        task_ids, job_ids = by_client.setdefault(client_id, ([], []))
        (task_ids if entry[1] == RETIRED_TASK else job_ids).append(entry[2])
    for client_id in sorted(by_client):
        task_ids, job_ids = by_client[client_id]
        ctx.emit(
            TasksForgotten(
                client_id=client_id,
                occurred_at_ms=ctx.now,
                finished_by_ms=cutoff,
                task_ids=task_ids,
                batch_job_ids=job_ids,
            )
        )
