"""The notifier part (``taskstream notifier``): one notice per task outcome that asked for one.

It reads the outcome topics (``task.completed``, ``task.failed``) in consumer group
``<group_id>-notifier``. The processor marks the outcome record of a task that asked for a
notice of that outcome with ``ts-notify`` (its target; ``streams.domain.notices``); every
other record is passed over. A notice is a JSON POST (``notice_document``) with an
``Idempotency-Key`` of the task id and outcome, so a receiver can drop the repeat a crash
between delivery and commit may cause. 5xx, 408, 429 and transport errors are retried with a
doubling backoff (``Settings.notify_backoff_ms``, up to ``notify_max_attempts`` tries); any
other answer, or the outbound guard refusing the target (``TASKSTREAM_OUTBOUND_ALLOW``, as for
the handlers), ends it. A notice that is given up is logged (URL masked) and counted. The
offsets of a poll are committed only once each of its notices was delivered or given up.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from schemas import events as ev
from schemas.codec import CODEC
from schemas.credentials import is_sealed, url_credentials
from schemas.errors import DecodeError
from schemas.masking import Masker
from streams.errors import BrokerError
from streams.executor.errors import HandlerError
from streams.executor.handlers.errors import NotificationError, OutboundRefusedError
from streams.executor.handlers.http import HttpClient
from streams.executor.handlers.outbound import OutboundPolicy
from streams.kafka.headers import NOTIFY_HEADER
from streams.kafka.membership import group_consumer
from streams.secrets import Keyring, SealedValueError
from streams.settings import Settings

__all__ = [
    "MAX_BACKOFF_MS",
    "Notice",
    "NotifierPart",
    "NoticeSender",
    "idempotency_key",
    "notice_document",
    "notice_of",
    "retry_delay_ms",
    "verdict",
]

log = logging.getLogger(__name__)

MAX_BACKOFF_MS = 30_000
POLL_MS = 500
MAX_IN_FLIGHT = 32
"""Notices of one poll sent at the same time, at most."""

Outcome = ev.TaskCompleted | ev.TaskFailed


# --- what is sent (pure) -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Notice:
    task_id: str
    client_id: str
    outcome: str
    target: Any
    """The ``notifyWebhookUrl``: a URL, or its sealed value."""
    body: Mapping[str, Any]

    @property
    def key(self) -> str:
        return idempotency_key(self.task_id, self.outcome)


def idempotency_key(task_id: str, outcome: str) -> str:
    """The ``Idempotency-Key`` of a task's notice: one per task and outcome."""
    return f"{task_id}:{outcome}"


def notice_document(outcome: Outcome) -> dict[str, Any]:
    """The JSON body of the notice of ``outcome``."""
    body: dict[str, Any] = {
        "event": outcome.TYPE,
        "outcome": outcome.outcome,
        "task_id": outcome.task_id,
        "client_id": outcome.client_id,
        "operation": outcome.operation,
        "attempt": outcome.attempt,
        "occurred_at_ms": outcome.occurred_at_ms,
    }
    if isinstance(outcome, ev.TaskCompleted):
        body["session_id"] = outcome.session_id
        body["execution_time_ms"] = outcome.execution_time_ms
        body["output"] = dict(outcome.output)
    else:
        body["error"] = outcome.error
        body["reason"] = outcome.reason
        body["attempts"] = [a.model_dump() for a in outcome.attempts]
    return body


def notice_of(value: bytes | None, headers: Iterable[tuple[str, bytes]] | None) -> Notice | None:
    """The notice an outcome record asks for, or ``None`` (no mark, or not an outcome)."""
    mark = next((v for k, v in headers or () if k == NOTIFY_HEADER), None)
    if mark is None or value is None:
        return None
    try:
        target = json.loads(mark)["url"]
        outcome = CODEC.decode(value)
    except (ValueError, KeyError, TypeError, DecodeError) as exc:
        log.warning("notifier: passing over an outcome record with a bad mark: %s", exc)
        return None
    if not isinstance(outcome, ev.TaskCompleted | ev.TaskFailed):
        return None
    return Notice(
        outcome.task_id, outcome.client_id, outcome.outcome, target, notice_document(outcome)
    )


def verdict(status: int) -> Literal["delivered", "retry", "give_up"]:
    """What an answer means: 2xx delivered; 5xx, 408 and 429 worth another try; else final."""
    if 200 <= status < 300:
        return "delivered"
    if status >= 500 or status in (408, 429):
        return "retry"
    return "give_up"


def retry_delay_ms(tries: int, first_ms: int) -> int:
    """The wait after try number ``tries`` (1 -> ``first_ms``), doubling to ``MAX_BACKOFF_MS``."""
    return int(min(MAX_BACKOFF_MS, first_ms * 2 ** max(0, tries - 1)))


# --- sending -------------------------------------------------------------------------------


class NoticeSender:
    """POSTs notices, retrying as ``verdict`` says; every connection passes the outbound guard."""

    def __init__(
        self,
        *,
        outbound: OutboundPolicy,
        timeout_ms: int,
        max_attempts: int,
        backoff_ms: int,
        keyring: Keyring | None = None,
    ) -> None:
        self.http = HttpClient(outbound)
        self.timeout_ms = timeout_ms
        self.max_attempts = max_attempts
        self.backoff_ms = backoff_ms
        self.keyring = keyring
        self.delivered = 0
        self.given_up = 0
        self.retried = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> NoticeSender:
        return cls(
            outbound=OutboundPolicy.parse(settings.outbound_allow),
            timeout_ms=settings.webhook_timeout_ms,
            max_attempts=settings.notify_max_attempts,
            backoff_ms=settings.notify_backoff_ms,
            keyring=Keyring.from_settings(settings),
        )

    async def close(self) -> None:
        await self.http.close()

    def _url(self, notice: Notice) -> str:
        target = notice.target
        if is_sealed(target):
            if self.keyring is None:
                raise SealedValueError("the notice's URL is sealed and the notifier has no key")
            target = self.keyring.open_value(target, notice.client_id)
        if not isinstance(target, str) or not target.startswith(("http://", "https://")):
            raise SealedValueError("the notice's target is not an http(s) URL")
        return target

    async def send(self, notice: Notice, stop: asyncio.Event | None = None) -> bool | None:
        """Deliver ``notice``: ``True`` delivered, ``False`` given up (logged), ``None`` cut
        short by ``stop`` during a backoff (its offset is then not committed)."""
        try:
            url = self._url(notice)
        except SealedValueError as exc:
            return self._give_up(notice, "?", str(exc))
        masker = Masker(url_credentials(url))
        headers = {"Content-Type": "application/json", "Idempotency-Key": notice.key}
        what = f"notice {notice.key}"
        tries = 0
        while True:
            tries += 1
            try:
                answer = await self.http.fetch(
                    "POST",
                    url,
                    what=what,
                    error=NotificationError,
                    masker=masker,
                    timeout_ms=self.timeout_ms,
                    headers=headers,
                    json_body=dict(notice.body),
                )
                outcome = verdict(answer.status)
                problem = f"HTTP {answer.status}"
            except OutboundRefusedError as exc:
                return self._give_up(notice, masker.url(url), str(exc))
            except HandlerError as exc:
                outcome, problem = "retry", str(exc)
            if outcome == "delivered":
                self.delivered += 1
                return True
            if outcome == "give_up" or tries >= self.max_attempts:
                return self._give_up(notice, masker.url(url), f"{problem} after {tries} tries")
            self.retried += 1
            delay_s = retry_delay_ms(tries, self.backoff_ms) / 1000
            if stop is None:
                await asyncio.sleep(delay_s)
            else:
                try:
                    await asyncio.wait_for(stop.wait(), delay_s)
                except TimeoutError:
                    pass
                else:
                    return None

    def _give_up(self, notice: Notice, safe_url: str, problem: str) -> bool:
        self.given_up += 1
        log.warning("notifier: gave up the notice %s to %s: %s", notice.key, safe_url, problem)
        return False


# --- the part ------------------------------------------------------------------------------


class NotifierPart:
    """One member of the notifier group; run several for availability (notices of different
    partitions go out in parallel, those of one poll together)."""

    def __init__(self, settings: Settings, sender: NoticeSender | None = None) -> None:
        self.settings = settings
        self.group_id = f"{settings.group_id}-notifier"
        self.topics = [settings.topic("completed"), settings.topic("failed")]
        self.sender = sender if sender is not None else NoticeSender.from_settings(settings)
        self.ready = asyncio.Event()
        self.outcomes_read = 0
        self._consumer: Any = None

    async def run(self, stop: asyncio.Event) -> None:
        self._consumer = group_consumer(self.settings, self.group_id, part="notifier")
        try:
            await self._consumer.start()
        except KafkaError as exc:
            await self._close()
            raise BrokerError(f"notifier cannot reach Kafka: {exc}") from exc
        try:
            self._consumer.subscribe(self.topics)
            while not stop.is_set():
                await self._step(stop)
        finally:
            await self._close()

    async def _step(self, stop: asyncio.Event) -> None:
        batch = await self._consumer.getmany(timeout_ms=POLL_MS)
        if self._consumer.assignment():
            self.ready.set()
        if not batch:
            return
        notices: list[Notice] = []
        offsets: dict[TopicPartition, int] = {}
        for tp, records in batch.items():
            for record in records:
                self.outcomes_read += 1
                notice = notice_of(record.value, record.headers)
                if notice is not None:
                    notices.append(notice)
            offsets[tp] = records[-1].offset + 1
        room = asyncio.Semaphore(MAX_IN_FLIGHT)

        async def send(notice: Notice) -> bool | None:
            async with room:
                return await self.sender.send(notice, stop)

        sent = await asyncio.gather(*(send(n) for n in notices))
        if None in sent:
            return  # a notice cut short by the stop goes out from the committed offset again
        try:
            await self._consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            log.warning("notifier: commit failed, these notices may go out again: %s", exc)

    async def _close(self) -> None:
        try:
            if self._consumer is not None:
                await self._consumer.stop()
        finally:
            await self.sender.close()
