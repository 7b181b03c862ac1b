"""The task distributor as an ``Application`` for the stream runtime.

A thin adapter: bytes <-> models through the Avro codec, the pure decider in
``streams.domain`` for every decision, and the side records each event implies (work for
executors, outcomes, delayed retries, dead letters).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from schemas import events as ev
from schemas.catalog import PRIORITY_NAMES, Catalog, load_catalog, parse_rate_limit
from schemas.codec import CODEC
from schemas.commands import POOL_COMMANDS, Command, RetryDue
from schemas.errors import DecodeError
from schemas.records import Assignment, AssignmentItem, DeadLetter
from streams.domain import (
    DomainConfig,
    PartitionState,
    decide,
    decide_folded,
    evolve,
    tick,
    tick_folded,
)
from streams.domain.archive import flushed
from streams.domain.config import DEFAULTS
from streams.domain.notices import notice_target
from streams.domain.outcomes import outcome_record
from streams.domain.state import TaskRecord
from streams.errors import RecordTooLargeError
from streams.kafka.headers import FORWARDED_HEADER, NOTIFY_HEADER, TYPE_HEADER
from streams.runtime.protocol import HOME, Output
from streams.runtime.store import StoreView
from streams.settings import Settings, retry_tier_name
from streams.state_codec import dump_changes, open_state

# A dead letter's reason is cut to this many characters (reasons quote input, which is hostile).
REASON_LIMIT = 2_000
# Outcome events whose bytes are kept for their second use (see ``_outcome_encoded``): a
# cycle's results are encoded as events and outcome records within one decision.
_OUTCOME_CACHE = 256


def bounded_reason(reason: str) -> str:
    """A reason fit for a dead letter: at most ``REASON_LIMIT`` characters, valid UTF-8."""
    if len(reason) > REASON_LIMIT:
        reason = reason[: REASON_LIMIT - 1] + "…"
    return reason.encode("utf-8", "replace").decode("utf-8")


def fit_dead_letter(letter: DeadLetter, limit: int) -> bytes:
    """``letter`` encoded within ``limit`` bytes where it can be.

    A dead letter quotes its input (raw bytes, the submitted task, the attempts), so it can be
    larger than the input the broker accepted; an unproducible dead letter would stop the
    processor on every restart. Over the limit, it sheds in this order: the submitted payload,
    the whole submit document, all attempts but the last three, then the tail of the raw bytes,
    each time saying so in the reason.
    """
    value = CODEC.encode(letter)
    if len(value) <= limit:
        return value
    size = len(value)
    if letter.submit.get("payload"):
        note = f"omitted: the dead letter was {size} bytes, over the limit of {limit}"
        letter = letter.model_copy(
            update={"submit": {**letter.submit, "payload": {"_omitted": note}}}
        )
        value = CODEC.encode(letter)
    if len(value) > limit and letter.submit:
        note = f"omitted: the dead letter was {size} bytes, over the limit of {limit}"
        letter = letter.model_copy(update={"submit": {"_omitted": note}})
        value = CODEC.encode(letter)
    if len(value) > limit:
        attempts = json.loads(letter.attempts_json)
        if len(attempts) > 3:
            letter = letter.model_copy(update={"attempts_json": json.dumps(attempts[-3:])})
            value = CODEC.encode(letter)
    if len(value) > limit and letter.raw:
        raw = letter.raw
        keep = max(0, len(raw) - (len(value) - limit) - 100)  # 100: the note and varints
        letter = letter.model_copy(
            update={
                "raw": raw[:keep],
                "reason": f"{letter.reason} (raw bytes cut to the first {keep} of {len(raw)})",
            }
        )
        value = CODEC.encode(letter)
    return value


def submit_document(task: TaskRecord) -> dict[str, Any]:
    """The SubmitTask a task was accepted from (defaults resolved), for dead letters."""
    return {
        "client_id": task.client_id,
        "task_id": task.task_id,
        "operation": task.operation,
        "payload": task.payload if task.payload is not None else {},
        "priority": task.priority if task.explicit_priority else None,
        "max_retries": task.max_retries,
        "timeout_ms": task.timeout_ms,
        "scheduled_for_ms": task.scheduled_for_ms,
        "requires_review": task.requires_review,
        "depends_on": list(task.depends_on),
        "capabilities": list(task.capabilities),
    }


def domain_config(settings: Settings, catalog: Catalog | None = None) -> DomainConfig:
    """The decider's config from the process settings (the domain never reads settings)."""
    catalog = catalog if catalog is not None else load_catalog(settings.operations_file)
    clients = getattr(catalog, "clients", {})
    by_name = {name: priority for priority, name in PRIORITY_NAMES.items()}
    return DomainConfig(
        catalog=catalog,
        batch_window_ms=settings.batch_window_ms,
        max_batch_size=settings.max_batch_size,
        max_retries=settings.max_retries,
        retry_base_ms=settings.retry_base_ms,
        retry_max_ms=settings.retry_max_ms,
        session_stale_ms=settings.session_stale_ms,
        default_timeout_ms=settings.default_timeout_ms,
        aging_step_ms=settings.aging_step_ms,
        dispatch_strategy=settings.dispatch_strategy,
        circuit_cooldown_ms=settings.circuit_cooldown_ms,
        session_healthy_above=settings.session_healthy_above,
        session_unhealthy_below=settings.session_unhealthy_below,
        session_reuse_threshold=settings.session_reuse_threshold,
        session_probe_recovery_score=settings.session_probe_recovery_score,
        max_workload=settings.max_workload,
        max_payload_bytes=settings.max_payload_bytes,
        max_queued_per_client=settings.max_queued_per_client,
        task_retention_ms=settings.task_retention_ms,
        client_rate_limit=parse_rate_limit(settings.client_rate_limit),
        client_rate_limits={
            client_id: spec.rate_limit
            for client_id, spec in clients.items()
            if spec.rate_limit is not None
        },
        sla_ms={**DEFAULTS.sla_ms, **{by_name[n]: ms for n, ms in settings.sla_ms.items()}},
        starved_after_ms=settings.starved_after_ms,
        tick_interval_ms=settings.tick_interval_ms,
    )


class Distributor:
    """Implements ``streams.runtime.protocol.Application[PartitionState]``."""

    def __init__(self, settings: Settings, catalog: Catalog | None = None) -> None:
        self.settings = settings
        self.catalog = catalog if catalog is not None else load_catalog(settings.operations_file)
        self.config = domain_config(settings, self.catalog)
        self._topic_commands = settings.topic("commands")
        self._topic_assignments = settings.topic("assignments")
        self._topic_pool = settings.topic("pool")
        self._topic_completed = settings.topic("completed")
        self._topic_failed = settings.topic("failed")
        self._topic_dlq = settings.topic("dlq")
        self._max_record = settings.max_payload_bytes
        # An ended task's outcome record is its TaskCompleted / TaskFailed event itself: the
        # bytes written to the outcome topic are reused for the event log (or the other way).
        self._outcome_bytes: dict[int, tuple[ev.Event, bytes]] = {}
        self._outputs: dict[type[ev.Event], Callable[[PartitionState, Any], list[Output]]] = {
            ev.TaskAssigned: self._assigned,
            ev.BatchProcessed: self._batch,
            ev.TaskCancelled: self._cancelled,
            ev.TaskCompleted: self._outcome,
            ev.TaskFailed: self._outcome,
            ev.TaskRetryScheduled: self._retry,
            ev.TaskDeadLettered: self._dead_lettered,
            ev.TaskRejected: self._rejected,
            ev.CommandForwarded: self._forwarded,
        }

    # -- decider -------------------------------------------------------------------------------

    def initial_state(self) -> PartitionState:
        return PartitionState()

    def decide(self, command: Any, state: PartitionState, now_ms: int) -> Sequence[Any]:
        return decide(command, state, now_ms, self.config)

    def home_key(self, command: Any) -> bytes | None:
        # A client's commands, sessions, tasks and events live on its home partition; a pool
        # executor's capacity is for the partition it produced it to (``domain.pool``).
        if isinstance(command, POOL_COMMANDS):
            return None
        return str(command.client_id).encode()

    def forward(
        self,
        command: Any,
        value: bytes,
        key: bytes | None,
        partition: int,
        offset: int,
        home: int,
        now_ms: int,
    ) -> ev.CommandForwarded:
        task_id = getattr(command, "task_id", None)
        return ev.CommandForwarded(
            client_id=command.client_id,
            occurred_at_ms=now_ms,
            command=type(command).__name__,
            task_id=task_id if isinstance(task_id, str) else None,
            source_partition=partition,
            source_offset=offset,
            home_partition=home,
            key=key,
            value=value,
        )

    def tick(self, state: PartitionState, now_ms: int) -> Sequence[Any]:
        return tick(state, now_ms, self.config)

    # The live path (``FoldingApplication``): each event is folded once, in the decision, and
    # its side records are built from the state right after it, as ``outputs`` would be.

    def decide_folded(
        self, command: Any, state: PartitionState, now_ms: int
    ) -> tuple[Sequence[Any], list[Output]]:
        outputs: list[Output] = []
        events = decide_folded(command, state, now_ms, self.config, self._observer(outputs))
        return events, outputs

    def tick_folded(self, state: PartitionState, now_ms: int) -> tuple[Sequence[Any], list[Output]]:
        outputs: list[Output] = []
        events = tick_folded(state, now_ms, self.config, self._observer(outputs))
        return events, outputs

    def _observer(self, outputs: list[Output]) -> Callable[[PartitionState, Any], None]:
        builders = self._outputs

        def observe(state: PartitionState, event: Any) -> None:
            build = builders.get(type(event))
            if build is not None:
                outputs.extend(build(state, event))

        return observe

    def evolve(self, state: PartitionState, event: Any) -> PartitionState:
        if isinstance(event, ev.CommandForwarded):
            return state  # the command's state lives on its home partition
        return evolve(state, event)

    # -- codec ---------------------------------------------------------------------------------

    def decode_command(self, value: bytes) -> Any:
        if len(value) > self._max_record:
            raise RecordTooLargeError(
                f"record of {len(value)} bytes is over the limit of {self._max_record} bytes "
                "(TASKSTREAM_MAX_PAYLOAD_BYTES)"
            )
        model = CODEC.decode(value)
        if not isinstance(model, Command):
            raise DecodeError(f"{type(model).__name__} is not a command")
        return model

    def encode_event(self, event: Any) -> bytes:
        if isinstance(event, ev.TaskCompleted | ev.TaskFailed):
            return self._outcome_encoded(event)
        return CODEC.encode(event)

    def _outcome_encoded(self, event: ev.TaskCompleted | ev.TaskFailed) -> bytes:
        """The event's Avro bytes, encoded once for the event log and the outcome topic.
        Keyed by identity (events are frozen models); the entry holds the event, so its id is
        not reused while it is kept, and at most ``_OUTCOME_CACHE`` are kept."""
        cached = self._outcome_bytes.get(id(event))
        if cached is not None and cached[0] is event:
            return cached[1]
        value = CODEC.encode(event)
        if len(self._outcome_bytes) >= _OUTCOME_CACHE:
            self._outcome_bytes.clear()
        self._outcome_bytes[id(event)] = (event, value)
        return value

    def decode_event(self, value: bytes) -> Any:
        # Events are this processor's own records (recovery): no second pydantic validation.
        model = CODEC.decode_trusted(value)
        if not isinstance(model, ev.Event):
            raise DecodeError(f"{type(model).__name__} is not an event")
        return model

    def event_key(self, event: Any) -> bytes:
        return str(event.client_id).encode()

    def event_type(self, event: Any) -> str:
        return str(event.TYPE)

    # -- persistence ---------------------------------------------------------------------------

    def dump_changes(self, state: PartitionState) -> Iterable[tuple[bytes, bytes | None]]:
        return list(dump_changes(state))

    def load_state(self, store: StoreView) -> PartitionState:
        return open_state(store)

    def persisted(self, state: PartitionState) -> None:
        flushed(state)

    # -- side records --------------------------------------------------------------------------

    def outputs(self, state: PartitionState, event: Any) -> Iterable[Output]:
        build = self._outputs.get(type(event))
        return build(state, event) if build is not None else ()

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
        client_id = _client_of(raw, key)
        letter = DeadLetter(
            reason=bounded_reason(reason),
            client_id=client_id,
            source_topic=topic,
            source_partition=partition,
            source_offset=offset,
            raw=raw,
            occurred_at_ms=now_ms,
        )
        # The record's own key, so the dead letter lands with its client's and can be traced.
        if key is None and client_id is not None:
            key = client_id.encode()
        return Output(
            topic=self._topic_dlq,
            key=key,
            value=fit_dead_letter(letter, self._max_record),
            headers=((TYPE_HEADER, b"DeadLetter"),),
        )

    @staticmethod
    def _out(topic: str, key: str | None, model: Any, value: bytes | None = None) -> Output:
        """``model`` as a side record (``value``: its Avro bytes, when already encoded)."""
        return Output(
            topic=topic,
            key=key.encode() if key is not None else None,
            value=CODEC.encode(model) if value is None else value,
            headers=((TYPE_HEADER, type(model).__name__.encode()),),
        )

    def _dead(self, key: str | None, letter: DeadLetter) -> Output:
        return Output(
            topic=self._topic_dlq,
            key=key.encode() if key is not None else None,
            value=fit_dead_letter(letter, self._max_record),
            headers=((TYPE_HEADER, b"DeadLetter"),),
        )

    def _work(self, assignment: Assignment) -> Output:
        if assignment.session_id is None:
            # On the task.pool partition numbered like the client's home: its consumer is the
            # pool member whose capacity that partition counts (``domain.pool``).
            return self._out(self._topic_pool, assignment.task_id, assignment)._replace(
                partition=HOME
            )
        return self._out(self._topic_assignments, assignment.session_id, assignment)

    def _assigned(self, state: PartitionState, e: ev.TaskAssigned) -> list[Output]:
        if e.batch_id is not None:
            return []  # the batch travels as one assignment (BatchProcessed)
        task = state.tasks[e.task_id]
        return [
            self._work(
                Assignment(
                    kind="task",
                    client_id=e.client_id,
                    session_id=e.session_id,
                    operation=e.operation,
                    task_id=e.task_id,
                    attempt=e.attempt,
                    fencing_token=e.fencing_token,
                    deadline_at_ms=e.deadline_at_ms,
                    timeout_ms=task.timeout_ms,
                    priority=e.priority,
                    items=[AssignmentItem(task_id=e.task_id, payload=task.payload or {})],
                )
            )
        ]

    def _batch(self, state: PartitionState, e: ev.BatchProcessed) -> list[Output]:
        tasks = [state.tasks[t] for t in e.task_ids]
        batch = state.batches.get(e.batch_id)
        return [
            self._work(
                Assignment(
                    kind="batch",
                    client_id=e.client_id,
                    session_id=e.session_id,
                    operation=e.operation,
                    batch_id=e.batch_id,
                    attempt=max((t.attempt for t in tasks), default=1),
                    fencing_token=e.fencing_token,
                    deadline_at_ms=batch.deadline_at_ms if batch is not None else 0,
                    timeout_ms=max((t.timeout_ms for t in tasks), default=0),
                    priority=min((t.queue_priority for t in tasks), default=3),
                    items=[
                        AssignmentItem(task_id=t.task_id, payload=t.payload or {}) for t in tasks
                    ],
                )
            )
        ]

    def _cancelled(self, state: PartitionState, e: ev.TaskCancelled) -> list[Output]:
        outcome = self._outcome(state, e)
        if e.fencing_token is None:
            return outcome  # it was not handed out: nobody to tell
        task = state.task(e.task_id)
        return [
            self._work(
                Assignment(
                    kind="cancel",
                    client_id=e.client_id,
                    session_id=e.session_id,
                    operation=task.operation if task is not None else "",
                    task_id=e.task_id,
                    batch_id=task.batch_id if task is not None else None,
                    attempt=task.attempt if task is not None else 0,
                    fencing_token=e.fencing_token,
                    reason=e.reason,
                )
            ),
            *outcome,
        ]

    def _outcome(self, state: PartitionState, e: ev.Event) -> list[Output]:
        """The task's one outcome record, if ``e`` ended a task (``domain.outcomes``)."""
        record = outcome_record(state, e)
        if record is None:
            return []
        completed = isinstance(record, ev.TaskCompleted)
        topic = self._topic_completed if completed else self._topic_failed
        out = self._out(topic, record.client_id, record, self._outcome_encoded(record))
        task = state.task(record.task_id)
        if task is not None and task.client_id == record.client_id:
            target = notice_target(task.payload, record)
            if target is not None:
                mark = json.dumps({"url": target}, separators=(",", ":")).encode()
                out = out._replace(headers=(*out.headers, (NOTIFY_HEADER, mark)))
        return [out]

    def _delay(self, tier_ms: int, due: RetryDue) -> Output:
        # On the tier partition numbered like the client's home: the delay agent sends the
        # RetryDue back to the command partition its HOME_HEADER names.
        tier = self.settings.topic(retry_tier_name(tier_ms))
        return self._out(tier, due.client_id, due)._replace(partition=HOME)

    def _forwarded(self, state: PartitionState, e: ev.CommandForwarded) -> list[Output]:
        return [
            Output(
                topic=self._topic_commands,
                key=e.key,
                value=e.value,
                partition=e.home_partition,
                headers=(
                    (FORWARDED_HEADER, b"%d:%d" % (e.source_partition, e.source_offset)),
                    (TYPE_HEADER, e.command.encode()),
                ),
            )
        ]

    def _retry(self, state: PartitionState, e: ev.TaskRetryScheduled) -> list[Output]:
        due = RetryDue(
            client_id=e.client_id,
            task_id=e.task_id,
            attempt=e.attempt,
            due_at_ms=e.due_at_ms,
            kind="retry",
        )
        return [self._delay(e.tier_ms, due)]

    def _dead_lettered(self, state: PartitionState, e: ev.TaskDeadLettered) -> list[Output]:
        task = state.task(e.task_id)
        letter = DeadLetter(
            reason=bounded_reason(e.reason),
            client_id=e.client_id,
            task_id=e.task_id,
            operation=e.operation,
            attempts_json=json.dumps(
                [{**a.model_dump(), "error": bounded_reason(a.error)} for a in e.attempts]
            ),
            submit=submit_document(task) if task is not None else {},
            occurred_at_ms=e.occurred_at_ms,
        )
        return [self._dead(e.client_id, letter)]

    def _rejected(self, state: PartitionState, e: ev.TaskRejected) -> list[Output]:
        outcome = self._outcome(state, e)
        if e.command != "SubmitTask":
            return outcome
        submit = e.submit  # the refused submit travels in its event (recovery rebuilds this)
        operation = e.operation if e.operation is not None else submit.get("operation")
        letter = DeadLetter(
            reason=bounded_reason(e.reason),
            client_id=e.client_id,
            task_id=e.task_id,
            operation=operation if isinstance(operation, str) else None,
            submit=submit,
            occurred_at_ms=e.occurred_at_ms,
        )
        return [*outcome, self._dead(e.client_id, letter)]


def _client_of(raw: bytes, key: bytes | None) -> str | None:
    """The client an unusable record belongs to, where it can be read: its key as text, else
    the ``client_id`` of a body that decodes but does not validate."""
    if key:
        try:
            return key.decode()
        except UnicodeDecodeError:
            pass
    try:
        model = CODEC.decode_trusted(raw)
    except Exception:  # hostile bytes: any failure means "cannot be read"
        return None
    client_id = getattr(model, "client_id", None)
    return client_id if isinstance(client_id, str) and client_id else None
