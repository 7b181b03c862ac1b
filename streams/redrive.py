"""Redrive dead letters: submit dead-lettered tasks again, once.

The rule that makes a redrive safe to repeat:

* a dead letter for task ``T`` is redriven as task ``redrive_id(T)``: ``T.r1``, or ``T.r<n+1>``
  when ``T`` is itself a redrive ``<base>.r<n>``. The new id depends on ``T`` alone;
* its specification is the ``submit`` document (the original SubmitTask, defaults resolved) of
  the *first* dead letter of ``T`` that carries one, in log order; the command is keyed by the
  original ``client_id``, so it lands on the partition that holds the client's state.

``task.dlq`` only grows, so redriving the same entries again produces the very same SubmitTask
commands, and the processor treats an identical submit of a known task id as a redelivery: no
event, no second task. A redriven task that is dead-lettered again is a *new* entry (``T.r1``)
and a later redrive submits it as ``T.r2``; the entry ``T`` itself never adds a task twice
while the processor remembers ``T.r1`` (``TASKSTREAM_TASK_RETENTION_MS`` after it finished;
a redrive repeated later than that submits it again, as a new task).

Entries without a ``submit`` document (undecodable or invalid input, or a refusal whose
command was not kept) cannot be redriven: they are reported as ``not_redrivable`` with the
reason. Dependencies are submitted as recorded (a redriven task still depends on the original
ids, not on their redrives).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from schemas.codec import CODEC
from schemas.commands import Command, SubmitTask
from schemas.errors import DecodeError
from schemas.records import DeadLetter
from streams.domain.submission import SubmitRefused
from streams.errors import TaskstreamError
from streams.kafka import consumer_kwargs, topic_partitions
from streams.settings import Settings
from streams.submit_door import SubmitDoor, submit_door

__all__ = [
    "CommandSender",
    "DeadLetterEntry",
    "RedriveError",
    "RedriveItem",
    "RedriveReport",
    "Selection",
    "plan_redrive",
    "read_dead_letters",
    "redrive",
    "redrive_id",
    "redrive_log",
]

_REDRIVEN = re.compile(r"^(?P<base>.+)\.r(?P<n>[1-9][0-9]*)$", re.DOTALL)


class RedriveError(TaskstreamError):
    """The dead-letter topic cannot be read."""


class CommandSender(Protocol):
    """Anything that puts a command on ``task.commands`` keyed by its client id
    (``streams.client.TaskstreamClient``)."""

    async def send(self, command: Command) -> object: ...


def redrive_id(task_id: str) -> str:
    """The id a dead letter of ``task_id`` is redriven under (see the module rule)."""
    match = _REDRIVEN.match(task_id)
    if match is None:
        return f"{task_id}.r1"
    return f"{match['base']}.r{int(match['n']) + 1}"


@dataclass(frozen=True, slots=True)
class DeadLetterEntry:
    """One record of ``task.dlq``: the dead letter, or why the record itself is unusable."""

    partition: int
    offset: int
    letter: DeadLetter | None
    problem: str | None = None

    @property
    def source(self) -> str:
        return f"dlq {self.partition}@{self.offset}"


class Selection(BaseModel):
    """Which dead letters to redrive: ``task_ids``, ``all``, or filters (all must match)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    task_ids: list[str] | None = Field(default=None, min_length=1, max_length=10_000)
    all: bool = False
    reason: str | None = Field(default=None, min_length=1)
    client_id: str | None = Field(default=None, min_length=1)
    operation: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one_way(self) -> Selection:
        filters = any(v is not None for v in (self.reason, self.client_id, self.operation))
        ways = [self.task_ids is not None, self.all, filters]
        if sum(ways) != 1:
            raise ValueError(
                "give exactly one of task_ids, all=true, or filters (reason, client_id, operation)"
            )
        return self

    def matches(self, entry: DeadLetterEntry) -> bool:
        if self.all:
            return True
        letter = entry.letter
        if letter is None:
            return False
        if self.task_ids is not None:
            return letter.task_id in self.task_ids
        return (
            (self.reason is None or letter.reason == self.reason)
            and (self.client_id is None or letter.client_id == self.client_id)
            and (self.operation is None or letter.operation == self.operation)
        )


class RedriveItem(BaseModel):
    task_id: str | None
    client_id: str | None
    operation: str | None
    dead_letter_reason: str | None
    source: str
    """Where the (first) dead letter is: ``dlq <partition>@<offset>``."""
    new_task_id: str | None = None
    link: str | None = None
    why: str | None = None
    """Why the entry was not redriven."""


class RedriveReport(BaseModel):
    redriven: list[RedriveItem] = Field(default_factory=list)
    """Submitted under ``new_task_id`` (a repeat of an earlier redrive is a no-op for the
    processor; entries the read side already shows are in ``already_redriven``)."""
    already_redriven: list[RedriveItem] = Field(default_factory=list)
    not_redrivable: list[RedriveItem] = Field(default_factory=list)
    not_found: list[str] = Field(default_factory=list)
    """Requested task ids with no dead letter."""


def task_link(task_id: str) -> str:
    return "/tasks/" + quote(task_id, safe="/")


def _item(entry: DeadLetterEntry, **extra: str | None) -> RedriveItem:
    letter = entry.letter
    return RedriveItem(
        task_id=letter.task_id if letter else None,
        client_id=letter.client_id if letter else None,
        operation=letter.operation if letter else None,
        dead_letter_reason=letter.reason if letter else None,
        source=entry.source,
        **extra,
    )


def _submit_of(letter: DeadLetter, new_id: str, door: SubmitDoor) -> SubmitTask | str:
    """The SubmitTask redriving ``letter`` under ``new_id`` (through the submission door, so a
    config that is no longer valid is caught here), or why there is none."""
    if not letter.submit:
        return "no submit document in the dead letter (undecodable or unkept input)"
    document: dict[str, Any] = {
        k: v for k, v in letter.submit.items() if k in SubmitTask.model_fields
    }
    document["task_id"] = new_id
    document["client_id"] = document.get("client_id") or letter.client_id
    try:
        return door(**document)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "submit"
        return f"the submit document is not a valid SubmitTask: {where}: {first['msg']}"
    except SubmitRefused as exc:
        return f"the submit document is refused: {exc}"


def plan_redrive(
    entries: Iterable[DeadLetterEntry], selection: Selection, door: SubmitDoor | None = None
) -> tuple[list[tuple[DeadLetterEntry, SubmitTask]], RedriveReport]:
    """Pure: the commands a redrive of ``selection`` sends, and the entries it cannot use.
    ``door`` builds each SubmitTask (default: ``submit_door()``)."""
    door = door if door is not None else submit_door()
    report = RedriveReport()
    ordered = sorted(
        entries,
        key=lambda e: (e.letter.occurred_at_ms if e.letter else 0, e.partition, e.offset),
    )
    chosen: dict[str, DeadLetterEntry] = {}
    unusable: dict[str, tuple[DeadLetterEntry, str]] = {}
    for entry in ordered:
        if not selection.matches(entry):
            continue
        letter = entry.letter
        if letter is None or letter.task_id is None:
            why = entry.problem or "no task in the dead letter (undecodable or invalid input)"
            report.not_redrivable.append(_item(entry, why=why))
            continue
        if letter.task_id in chosen:
            continue
        if not letter.submit:
            unusable.setdefault(
                letter.task_id,
                (entry, "no submit document in the dead letter (the refused input was not kept)"),
            )
            continue
        chosen[letter.task_id] = entry
    plan: list[tuple[DeadLetterEntry, SubmitTask]] = []
    for task_id, entry in chosen.items():
        assert entry.letter is not None
        submit = _submit_of(entry.letter, redrive_id(task_id), door)
        if isinstance(submit, str):
            report.not_redrivable.append(_item(entry, why=submit))
        else:
            plan.append((entry, submit))
    for task_id, (entry, why) in unusable.items():
        if task_id not in chosen:
            report.not_redrivable.append(_item(entry, why=why))
    if selection.task_ids is not None:
        seen = set(chosen) | set(unusable)
        report.not_found = [t for t in dict.fromkeys(selection.task_ids) if t not in seen]
    return plan, report


async def redrive(
    entries: Iterable[DeadLetterEntry],
    selection: Selection,
    sender: CommandSender,
    *,
    known: Callable[[str], bool] | None = None,
    door: SubmitDoor | None = None,
) -> RedriveReport:
    """Send the SubmitTask of every selected dead letter (see the module rule).

    ``known(new_task_id)`` (optional, e.g. the read side) says a redrive already reached the
    processor: such entries are reported as ``already_redriven`` and not sent again.
    """
    plan, report = plan_redrive(entries, selection, door)
    for entry, submit in plan:
        item = _item(entry, new_task_id=submit.task_id, link=task_link(submit.task_id))
        if known is not None and known(submit.task_id):
            report.already_redriven.append(item)
            continue
        await sender.send(submit)
        report.redriven.append(item)
    return report


async def read_dead_letters(
    settings: Settings, *, timeout_s: float = 30.0
) -> list[DeadLetterEntry]:
    """Every record of ``task.dlq`` up to its current end (all partitions, no group)."""
    topic = settings.topic("dlq")
    consumer = AIOKafkaConsumer(**consumer_kwargs(settings))
    try:
        await consumer.start()
        try:
            # Listing all topics never auto-creates one (naming a missing topic might).
            partitions = await topic_partitions(consumer, topic) or set()
            if not partitions:
                return []
            return await _read_to_end(
                consumer, [TopicPartition(topic, p) for p in sorted(partitions)], timeout_s
            )
        finally:
            await consumer.stop()
    except KafkaError as exc:
        raise RedriveError(f"cannot read {topic}: {exc}") from exc


async def _read_to_end(
    consumer: AIOKafkaConsumer, tps: Sequence[TopicPartition], timeout_s: float
) -> list[DeadLetterEntry]:
    """Read until every partition's position reaches a high watermark fetched after the start
    (``end_offsets`` is not enough: some brokers answer the last batch's base offset + 1)."""
    consumer.assign(list(tps))
    await consumer.seek_to_beginning(*tps)
    started_ms = int(time.time() * 1000)
    deadline = time.monotonic() + timeout_s
    entries: list[DeadLetterEntry] = []
    while True:
        batch = await consumer.getmany(timeout_ms=200, max_records=5000)
        for tp, records in batch.items():
            for record in records:
                entries.append(_entry(tp.partition, record.offset, record.value))
        done = True
        for tp in tps:
            hw = consumer.highwater(tp)
            polled = consumer.last_poll_timestamp(tp)
            if hw is None or polled is None or polled < started_ms:
                done = False
            elif await consumer.position(tp) < hw:
                done = False
        if done:
            return entries
        if time.monotonic() > deadline:
            raise RedriveError(f"could not read {tps[0].topic} to its end within {timeout_s} s")
        await asyncio.sleep(0)


def _entry(partition: int, offset: int, value: bytes | None) -> DeadLetterEntry:
    if value is None:
        return DeadLetterEntry(partition, offset, None, "empty record")
    try:
        model = CODEC.decode(value)
    except DecodeError as exc:
        return DeadLetterEntry(partition, offset, None, f"undecodable dead letter: {exc}")
    if not isinstance(model, DeadLetter):
        return DeadLetterEntry(
            partition, offset, None, f"a {type(model).__name__}, not a dead letter"
        )
    return DeadLetterEntry(partition, offset, model)


async def redrive_log(
    settings: Settings,
    selection: Selection,
    sender: CommandSender,
    *,
    known: Callable[[str], bool] | None = None,
) -> RedriveReport:
    """Read ``task.dlq`` and redrive ``selection`` (what ``taskstream dlq redrive`` runs)."""
    entries = await read_dead_letters(settings)
    return await redrive(entries, selection, sender, known=known, door=submit_door(settings))
