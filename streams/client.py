"""The client SDK: put commands on ``task.commands`` and read outcomes back.

Commands are validated with the wire models and size-checked *before* anything is produced, so
a bad request fails in the caller with a typed error instead of becoming a dead letter later.
Credentials in payloads are sealed on the way out (``streams.secrets``; without
``TASKSTREAM_SECRETS_KEY`` a payload carrying one is refused), and commands name who sent them
(``actor``: ``TASKSTREAM_ACTOR``, else ``<user>@<host>``).
Every command is keyed by ``client_id`` and sent to the client's home partition by number
(``streams.kafka.routing``), the partition that owns the client's tasks and sessions.

Before its first send the client checks the topic layout (``streams.kafka.topics.layout_problems``)
from its producer's metadata: producing to a missing ``task.commands`` would have the broker
auto-create it with its default partition count, so a missing or mismatched layout raises
``TopicLayoutError`` saying what to run (``taskstream topics create``) or set.

Outcomes (``task.completed`` / ``task.failed``) are read in a consumer group; an outcome's
offset is committed only once the caller asks for the next one (or closes the stream without
an error), i.e. after the loop body handled it. A crash redelivers the outcome in hand.
Every submitted task id ends with one outcome: a ``TaskCompleted``, or a ``TaskFailed`` whose
``outcome`` is ``failed``, ``cancelled``, ``rejected`` (by a reviewer) or ``refused`` (the
submit was invalid); ``outcome.outcome`` reads the same on both (``completed`` on the first).

    async with TaskstreamClient(settings) as client:
        task_id = await client.submit("client-1", "send_sms", {"to": "+15550100"})
        async for outcome in client.outcomes(group_id="billing"):
            ...
"""

from __future__ import annotations

import asyncio
import getpass
import logging
import os
import socket
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from pydantic import ValidationError
from pydantic_core import PydanticSerializationError

from schemas.codec import CODEC
from schemas.commands import (
    ApproveTask,
    CancelBatchJob,
    CancelTask,
    CleanupSessions,
    Command,
    ExpediteTask,
    RegisterSession,
    RejectTask,
    ReleaseSession,
    SessionHeartbeat,
    SubmitBatchJob,
    SubmitTask,
)
from schemas.errors import EncodeError
from schemas.fields import MAX_ID_LENGTH
from streams.client_management import TaskManagementCommands
from streams.client_schedules import ScheduleCommands
from streams.errors import (
    BrokerError,
    ClientClosedError,
    InvalidCommandError,
    PayloadTooLargeError,
    TopicLayoutError,
)
from streams.kafka import producer_kwargs
from streams.kafka.headers import TYPE_HEADER
from streams.kafka.routing import home_partition
from streams.outcome_stream import Outcome, OutcomeStream
from streams.secrets import Keyring, seal_command
from streams.settings import Settings

__all__ = ["OutcomeStream", "Outcome", "Sent", "TaskstreamClient"]

log = logging.getLogger(__name__)

C = TypeVar("C", bound=Command)


@dataclass(frozen=True, slots=True)
class Sent:
    """Where a command landed."""

    topic: str
    partition: int
    offset: int


def _build(model: type[C], **fields: Any) -> C:
    try:
        return model(**fields)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'command'}: {e['msg']}"
            for e in exc.errors(include_url=False)
        )
        raise InvalidCommandError(f"invalid {model.__name__}: {problems}") from None


def default_actor() -> str:
    """``<user>@<host>`` of this process: who its commands say sent them without
    ``TASKSTREAM_ACTOR``."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers) and no LOGNAME/USER
        user = f"uid{os.getuid()}"
    return f"{user}@{socket.gethostname()}"[:200]


def with_actor(command: C, actor: str) -> C:
    """``command`` naming ``actor`` as its sender, unless it names one already (the gateway
    sets the token's name) or has no such field (executor commands)."""
    if "actor" not in type(command).model_fields or getattr(command, "actor", None):
        return command
    return command.model_copy(update={"actor": actor})


def encode_command(command: Command, max_bytes: int, *, validated: bool = False) -> bytes:
    """Validate and encode ``command``; refuse it when its encoding exceeds ``max_bytes``.
    ``validated``: the client built it itself a moment ago (``submit``), through the model's
    validation; it is not validated a second time."""
    if not isinstance(command, Command):
        raise InvalidCommandError(
            f"expected a command model (SubmitTask, CancelTask, …), got {type(command).__name__}"
        )
    if not validated:
        # Models built with model_construct skip validation; check again before it goes out.
        try:
            fields = command.model_dump()
        except PydanticSerializationError as exc:
            raise InvalidCommandError(f"invalid {type(command).__name__}: {exc}") from None
        _build(type(command), **fields)
    try:
        value = CODEC.encode(command)
    except EncodeError as exc:
        raise InvalidCommandError(str(exc)) from None
    if len(value) > max_bytes:
        raise PayloadTooLargeError(
            f"{type(command).__name__} for client {command.client_id!r} is {len(value):,} bytes "
            f"encoded; the limit is {max_bytes:,} (TASKSTREAM_MAX_PAYLOAD_BYTES). "
            "Store large inputs elsewhere and pass a reference."
        )
    return value


class TaskstreamClient(ScheduleCommands, TaskManagementCommands):
    """Produces commands and reads outcomes. Use ``async with`` (or ``start``/``close``)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._keyring = Keyring.from_settings(settings)
        self.actor = settings.actor or default_actor()
        self.commands_topic = settings.topic("commands")
        self._producer: Any = None
        self._built: Command | None = None  # the command ``submit`` has just built
        self._partitions: int | None = None  # of the commands topic, once the layout checked
        self._layout_lock = asyncio.Lock()  # one layout check for concurrent first sends
        self._streams: list[OutcomeStream] = []
        # When this client sent each SubmitTask (wall clock, ms): where ``wait`` starts reading.
        self._submitted_at_ms: dict[str, int] = {}

    async def __aenter__(self) -> TaskstreamClient:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close(handled=exc is None)

    async def start(self) -> None:
        if self._producer is not None:
            return
        producer = AIOKafkaProducer(**producer_kwargs(self.settings))
        try:
            await producer.start()
        except KafkaError as exc:
            await producer.stop()
            raise BrokerError(f"client cannot reach Kafka: {exc}") from exc
        self._producer = producer

    async def close(self, *, handled: bool = True) -> None:
        """Close open outcome streams (committing the outcome in hand only if ``handled``)."""
        streams, self._streams = self._streams, []
        for stream in streams:
            await stream.close(handled=handled)
        if self._producer is not None:
            producer, self._producer = self._producer, None
            self._partitions = None
            await producer.stop()

    async def check_layout(self) -> int:
        """Check the topic layout (see the module docstring); returns the command topic's
        partition count. ``send`` calls it once, before the first command.

        The client does not own the layout: it takes the partition count ``task.commands``
        has (not ``TASKSTREAM_PARTITIONS``) and checks that the rest fits it: every topic
        there, events co-partitioned with commands, tiers at least as wide."""
        from streams.kafka.topics import layout_problems, topic_layout

        if self._producer is None:
            raise ClientClosedError("TaskstreamClient is not started; use `async with`")
        try:
            # All topics, named none: asking for a missing topic by name may auto-create it.
            cluster = await self._producer.client.fetch_all_metadata()
        except KafkaError as exc:
            raise BrokerError(f"client cannot read the topic layout: {exc}") from exc
        names = {spec.name for spec in topic_layout(self.settings)}
        existing = {
            topic: len(cluster.partitions_for_topic(topic) or ())
            for topic in cluster.topics()
            if topic in names
        }
        count = existing.get(self.commands_topic)
        as_found = self.settings.model_copy(update={"partitions": count or 1})
        problems = layout_problems(as_found if count else self.settings, existing)
        if problems:
            raise TopicLayoutError(f"not sending to {self.commands_topic}: " + "; ".join(problems))
        self._partitions = existing[self.commands_topic]
        return self._partitions

    async def _checked_layout(self) -> int:
        """The command topic's partition count, the layout checked once: sends that start
        together wait for one check instead of each fetching the cluster's metadata."""
        async with self._layout_lock:
            return self._partitions or await self.check_layout()

    # --- commands ----------------------------------------------------------------------

    async def send(self, command: Command) -> Sent:
        """Validate, seal its payload credentials (``streams.secrets``), size-check and produce
        any command; returns where it landed."""
        if self._producer is None:
            raise ClientClosedError("TaskstreamClient is not started; use `async with`")
        # A submit's command was built through validation a moment ago (``submit`` marks it):
        # it is not validated a second time, unless the actor added below could fail it.
        validated = (
            command is self._built
            and isinstance(self.actor, str)
            and len(self.actor) <= MAX_ID_LENGTH
        )
        command = seal_command(self._keyring, with_actor(command, self.actor))
        value = encode_command(command, self.settings.max_payload_bytes, validated=validated)
        partitions = self._partitions or await self._checked_layout()
        self._note_submitted([command])
        try:
            meta = await self._producer.send_and_wait(
                self.commands_topic,
                value,
                key=command.client_id.encode(),
                partition=home_partition(command.client_id, partitions),
                headers=[(TYPE_HEADER, type(command).__name__.encode())],
            )
        except KafkaError as exc:
            raise BrokerError(f"could not send {type(command).__name__}: {exc}") from exc
        return Sent(meta.topic, meta.partition, meta.offset)

    async def submit(
        self,
        client_id: str,
        operation: str,
        payload: Mapping[str, Any] | None = None,
        *,
        task_id: str | None = None,
        priority: int | None = None,
        max_retries: int | None = None,
        timeout_ms: int | None = None,
        scheduled_for_ms: int | None = None,
        requires_review: bool = False,
        depends_on: Iterable[str] = (),
        capabilities: Iterable[str] = (),
        **managed: Any,
    ) -> str:
        """Submit a task; returns its id (a new uuid4 unless ``task_id`` is given).
        ``managed``: title, description, tags, metadata, due_at_ms, assigned_to, steps,
        template, attachments (``SubmitTask``'s fields; attachments as ``TaskAttachment`` or
        mappings with ``url``, ``name`` and optionally ``size_bytes``, ``content_type``)."""
        command = self.submit_command(
            client_id,
            operation,
            payload,
            task_id=task_id,
            priority=priority,
            max_retries=max_retries,
            timeout_ms=timeout_ms,
            scheduled_for_ms=scheduled_for_ms,
            requires_review=requires_review,
            depends_on=depends_on,
            capabilities=capabilities,
            **managed,
        )
        self._built = command
        try:
            await self.send(command)
        finally:
            self._built = None
        return command.task_id

    def submit_command(
        self,
        client_id: str,
        operation: str,
        payload: Mapping[str, Any] | None = None,
        *,
        task_id: str | None = None,
        priority: int | None = None,
        max_retries: int | None = None,
        timeout_ms: int | None = None,
        scheduled_for_ms: int | None = None,
        requires_review: bool = False,
        depends_on: Iterable[str] = (),
        capabilities: Iterable[str] = (),
        **managed: Any,
    ) -> SubmitTask:
        """The ``SubmitTask`` that ``submit`` with these arguments sends, built and checked by
        the one submission door (``TaskManagementCommands.build_submit``)."""
        return self.build_submit(
            **managed,
            client_id=client_id,
            task_id=task_id if task_id is not None else str(uuid.uuid4()),
            operation=operation,
            payload=dict(payload) if payload is not None else {},
            priority=priority,
            max_retries=max_retries,
            timeout_ms=timeout_ms,
            scheduled_for_ms=scheduled_for_ms,
            requires_review=requires_review,
            depends_on=list(depends_on),
            capabilities=list(capabilities),
        )

    async def submit_many(self, tasks: Iterable[Mapping[str, Any]]) -> list[str]:
        """Submit several tasks in one call: each mapping holds ``submit``'s arguments
        (``client_id``, ``operation``, ``payload``, ``task_id``, ``priority``, …). Every task is
        built and checked first, so one invalid task sends none (``InvalidCommandError`` names
        its index); then all are produced and acknowledged together. Returns the ids in order."""
        commands = []
        for index, spec in enumerate(tasks):
            try:
                commands.append(self.submit_command(**spec))
            except InvalidCommandError as exc:
                raise InvalidCommandError(f"tasks[{index}]: {exc}") from None
            except TypeError as exc:
                raise InvalidCommandError(f"tasks[{index}]: {exc}") from None
        await self.send_many(commands)
        return [c.task_id for c in commands]

    async def send_many(self, commands: Iterable[Command]) -> list[Sent]:
        """``send`` for several commands: all are checked and encoded before the first is
        produced, then produced together and awaited once (one flush, not one round trip
        each). Order per client is kept (one partition per client, one producer)."""
        if self._producer is None:
            raise ClientClosedError("TaskstreamClient is not started; use `async with`")
        prepared = []
        for command in commands:
            command = seal_command(self._keyring, with_actor(command, self.actor))
            prepared.append((command, encode_command(command, self.settings.max_payload_bytes)))
        partitions = self._partitions or await self._checked_layout()
        self._note_submitted(c for c, _ in prepared)
        try:
            futures = [
                await self._producer.send(
                    self.commands_topic,
                    value,
                    key=command.client_id.encode(),
                    partition=home_partition(command.client_id, partitions),
                    headers=[(TYPE_HEADER, type(command).__name__.encode())],
                )
                for command, value in prepared
            ]
            metas = await asyncio.gather(*futures)
        except KafkaError as exc:
            raise BrokerError(f"could not send {len(prepared)} commands: {exc}") from exc
        return [Sent(m.topic, m.partition, m.offset) for m in metas]

    def _note_submitted(self, commands: Iterable[Command]) -> None:
        now_ms = int(time.time() * 1000)
        for command in commands:
            if isinstance(command, SubmitTask):
                self._submitted_at_ms.setdefault(command.task_id, now_ms)
        if len(self._submitted_at_ms) > 100_000:  # a long-lived client: keep the newest half
            keep = list(self._submitted_at_ms.items())[50_000:]
            self._submitted_at_ms = dict(keep)

    async def get_task(self, task_id: str) -> dict[str, Any]:
        """The task as the HTTP view shows it (``GET /tasks/{id}``: state, attempts, result,
        history), from the view at ``TASKSTREAM_HTTP_HOST``/``_PORT`` with
        ``TASKSTREAM_HTTP_TOKEN``. Raises ``NotFoundError`` when the view knows no such task."""
        from urllib.parse import quote

        from streams.view_client import view_get

        row: dict[str, Any] = await view_get(self.settings, "/tasks/" + quote(task_id, safe=""))
        return row

    async def wait(
        self,
        task_ids: Iterable[str],
        timeout: float = 60.0,  # noqa: ASYNC109 (the seed's wait(task_ids, timeout))
        *,
        since_ms: int | None = None,
    ) -> dict[str, Outcome]:
        """Wait until each of ``task_ids`` has its outcome (``TaskCompleted`` or
        ``TaskFailed``); returns them by task id. Reads the outcome topics from ``since_ms``
        (default: when this client first submitted one of them, else an hour ago) without a
        consumer group, so it takes nothing from ``outcomes()`` streams. Raises
        ``WaitTimeout`` (a ``TimeoutError``, with ``.missing`` and ``.done``) after
        ``timeout`` seconds."""
        from streams.outcome_wait import wait_for_outcomes

        ids = list(dict.fromkeys(task_ids))
        if since_ms is None:
            now_ms = int(time.time() * 1000)
            known = [self._submitted_at_ms[i] for i in ids if i in self._submitted_at_ms]
            since_ms = min(known) - self.settings.max_clock_skew_ms if known else now_ms - 3_600_000
        return await wait_for_outcomes(self.settings, ids, since_ms=since_ms, timeout_s=timeout)

    async def submit_batch_job(
        self,
        client_id: str,
        operation: str,
        items: Iterable[Mapping[str, Any]],
        *,
        batch_job_id: str | None = None,
        parallelism: int = 1,
        priority: int | None = None,
        max_retries: int | None = None,
        timeout_ms: int | None = None,
        capabilities: Iterable[str] = (),
    ) -> str:
        """Submit a batch job; returns its id (a new uuid4 unless ``batch_job_id`` is given).

        Each item is ``{"payload": {...}}`` with an optional ``"task_id"``; the children run
        as tasks of ``operation``, at most ``parallelism`` unfinished at once. Follow it with
        ``GET /batch-jobs/{id}`` on the view.
        """
        command = _build(
            SubmitBatchJob,
            client_id=client_id,
            batch_job_id=batch_job_id if batch_job_id is not None else str(uuid.uuid4()),
            operation=operation,
            items=[dict(item) for item in items],
            parallelism=parallelism,
            priority=priority,
            max_retries=max_retries,
            timeout_ms=timeout_ms,
            capabilities=list(capabilities),
        )
        await self.send(command)
        return command.batch_job_id

    async def cancel_batch_job(
        self, client_id: str, batch_job_id: str, reason: str | None = None
    ) -> Sent:
        """Cancel a batch job: held items are never released, unfinished children are
        cancelled, the job ends ``cancelled`` (``batch_job.cancelled`` on ``task.events``)."""
        return await self.send(
            _build(CancelBatchJob, client_id=client_id, batch_job_id=batch_job_id, reason=reason)
        )

    async def list_batch_jobs(self, **filters: Any) -> dict[str, Any]:
        """A page of ``GET /batch-jobs`` from the view (filters: ``client_id``, ``status``,
        ``operation``, ``limit``, ``cursor``): ``{"items": [...], "next_cursor": ...}``."""
        return await self._view_page("/batch-jobs", filters)

    async def list_batches(self, **filters: Any) -> dict[str, Any]:
        """A page of ``GET /batches`` from the view (filters: ``client_id``, ``status``,
        ``operation``, ``session_id``, ``limit``, ``cursor``)."""
        return await self._view_page("/batches", filters)

    async def _view_page(self, path: str, filters: Mapping[str, Any]) -> dict[str, Any]:
        from streams.view_client import view_get

        params = {k: str(v) for k, v in filters.items() if v is not None}
        page: dict[str, Any] = await view_get(self.settings, path, params)
        return page

    async def cancel(self, client_id: str, task_id: str, reason: str | None = None) -> Sent:
        return await self.send(
            _build(CancelTask, client_id=client_id, task_id=task_id, reason=reason)
        )

    async def approve(self, client_id: str, task_id: str, reviewer: str | None = None) -> Sent:
        return await self.send(
            _build(ApproveTask, client_id=client_id, task_id=task_id, reviewer=reviewer)
        )

    async def reject(
        self,
        client_id: str,
        task_id: str,
        reviewer: str | None = None,
        reason: str | None = None,
    ) -> Sent:
        return await self.send(
            _build(
                RejectTask, client_id=client_id, task_id=task_id, reviewer=reviewer, reason=reason
            )
        )

    async def expedite(self, client_id: str, task_id: str) -> Sent:
        return await self.send(_build(ExpediteTask, client_id=client_id, task_id=task_id))

    async def register_session(
        self,
        client_id: str,
        session_id: str,
        agent_id: str,
        *,
        max_concurrent: int = 1,
        capabilities: Iterable[str] = (),
    ) -> Sent:
        return await self.send(
            _build(
                RegisterSession,
                client_id=client_id,
                session_id=session_id,
                agent_id=agent_id,
                max_concurrent=max_concurrent,
                capabilities=list(capabilities),
            )
        )

    async def release_session(
        self, client_id: str, session_id: str, reason: str | None = None
    ) -> Sent:
        return await self.send(
            _build(ReleaseSession, client_id=client_id, session_id=session_id, reason=reason)
        )

    async def heartbeat(
        self, client_id: str, session_id: str, workload: float | None = None
    ) -> Sent:
        """The session is alive; ``workload`` (0..1) is how busy its agent is."""
        return await self.send(
            _build(SessionHeartbeat, client_id=client_id, session_id=session_id, workload=workload)
        )

    async def cleanup_sessions(self, client_id: str) -> Sent:
        """Clean the client's stale sessions now (the seed's ``cleanupStaleSessions()``)."""
        return await self.send(_build(CleanupSessions, client_id=client_id))

    # --- outcomes ----------------------------------------------------------------------

    def outcomes(self, group_id: str) -> OutcomeStream:
        """Every task's ending, read in consumer group ``group_id``: ``TaskCompleted``, or
        ``TaskFailed`` with ``outcome`` failed, cancelled, rejected or refused.

        ``async for`` over it directly (closed with the client), or ``async with`` it to
        close it yourself. Leaving either block by an exception keeps the outcome in hand
        uncommitted, so it is delivered again.
        """
        if not group_id:
            raise InvalidCommandError("outcomes() needs a consumer group id")
        stream = OutcomeStream(self.settings, group_id)
        self._streams.append(stream)
        return stream
