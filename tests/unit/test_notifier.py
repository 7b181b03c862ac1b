"""The notifier's pure parts (what a marked outcome record asks for, the body, the retry rule)
and its sender against a local receiver: retried on 5xx with one Idempotency-Key, given up on
other answers and on a target the outbound guard refuses."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from schemas import events as ev
from schemas.codec import CODEC
from streams.executor.handlers.outbound import OutboundPolicy
from streams.kafka.headers import NOTIFY_HEADER, TYPE_HEADER
from streams.notifier import (
    MAX_BACKOFF_MS,
    Notice,
    NoticeSender,
    idempotency_key,
    notice_document,
    notice_of,
    retry_delay_ms,
    verdict,
)
from streams.secrets import Keyring, new_key_entry
from tests.support.receiver import receiver

DONE = ev.TaskCompleted(
    client_id="A",
    task_id="t1",
    occurred_at_ms=5,
    operation="integration_sync",
    attempt=3,
    output={"n": 1},
)
FAILED = ev.TaskFailed(
    client_id="A",
    task_id="t2",
    occurred_at_ms=6,
    operation="integration_sync",
    attempt=2,
    error="boom",
    attempts=[ev.AttemptRecord(attempt=1, error="x", at_ms=1)],
)


def mark(url: object) -> tuple[str, bytes]:
    return (NOTIFY_HEADER, json.dumps({"url": url}).encode())


def test_only_a_marked_outcome_record_is_a_notice() -> None:
    value = CODEC.encode(DONE)
    notice = notice_of(value, [(TYPE_HEADER, b"TaskCompleted"), mark("https://h/x")])
    assert notice is not None
    assert (notice.task_id, notice.outcome, notice.target) == ("t1", "completed", "https://h/x")
    assert notice.key == "t1:completed" == idempotency_key("t1", "completed")
    assert notice_of(value, [(TYPE_HEADER, b"TaskCompleted")]) is None
    assert notice_of(value, None) is None
    assert notice_of(value, [(NOTIFY_HEADER, b"not json")]) is None
    assert notice_of(b"\x00junk", [mark("https://h/x")]) is None


def test_the_notice_body_says_the_outcome() -> None:
    done = notice_document(DONE)
    assert (done["event"], done["outcome"], done["attempt"], done["output"]) == (
        "task.completed",
        "completed",
        3,
        {"n": 1},
    )
    failed = notice_document(FAILED)
    assert (failed["event"], failed["outcome"], failed["error"]) == (
        "task.failed",
        "failed",
        "boom",
    )
    assert failed["attempts"][0]["error"] == "x" and "output" not in failed


def test_what_is_retried_and_how_long_it_waits() -> None:
    assert [verdict(s) for s in (200, 204, 500, 503, 408, 429, 400, 404, 410)] == [
        "delivered", "delivered", "retry", "retry", "retry", "retry",
        "give_up", "give_up", "give_up",
    ]  # fmt: skip
    assert [retry_delay_ms(n, 500) for n in (1, 2, 3)] == [500, 1000, 2000]
    assert retry_delay_ms(30, 500) == MAX_BACKOFF_MS


def sender(**kw: object) -> NoticeSender:
    options: dict[str, object] = {
        "outbound": OutboundPolicy.parse("127.0.0.1"),
        "timeout_ms": 2000,
        "max_attempts": 4,
        "backoff_ms": 1,
    }
    options.update(kw)
    return NoticeSender(**options)  # type: ignore[arg-type]


def notice(url: object, client_id: str = "A") -> Notice:
    return Notice("t1", client_id, "completed", url, notice_document(DONE))


async def test_a_5xx_is_retried_with_the_same_idempotency_key_until_delivered() -> None:
    async with receiver() as hook:
        hook.script["/n"] = [503, 502]
        s = sender()
        try:
            assert await s.send(notice(f"{hook.url}/n")) is True
        finally:
            await s.close()
    assert [r.headers["Idempotency-Key"] for r in hook.at("/n")] == ["t1:completed"] * 3
    assert hook.at("/n")[0].body["task_id"] == "t1"
    assert (s.delivered, s.retried, s.given_up) == (1, 2, 0)


async def test_a_4xx_or_too_many_failures_give_up_logged(caplog: pytest.LogCaptureFixture) -> None:
    async with receiver() as hook:
        hook.script["/gone"] = [404]
        hook.script["/down"] = [500] * 10
        s = sender(max_attempts=3)
        try:
            assert await s.send(notice(f"{hook.url}/gone?token=s3cret")) is False
            assert await s.send(notice(f"{hook.url}/down")) is False
        finally:
            await s.close()
    assert (len(hook.at("/gone")), len(hook.at("/down"))) == (1, 3)
    assert s.given_up == 2
    assert "gave up the notice t1:completed" in caplog.text and "s3cret" not in caplog.text


async def test_the_outbound_guard_applies_to_the_target() -> None:
    async with receiver() as hook:
        s = sender(outbound=OutboundPolicy())  # public addresses only
        try:
            assert await s.send(notice(f"{hook.url}/n")) is False
        finally:
            await s.close()
    assert hook.seen == [] and s.given_up == 1


async def test_a_sealed_target_is_opened_for_its_client(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    keyring = Keyring.parse(new_key_entry())
    async with receiver() as hook:
        sealed = keyring.seal_value(f"{hook.url}/sealed", "A")
        s = sender(keyring=keyring)
        try:
            assert await s.send(notice(sealed)) is True
            assert await s.send(notice(sealed, client_id="B")) is False  # not B's
            assert await sender().send(notice(sealed)) is False  # no key ring
        finally:
            await s.close()
    assert len(hook.at("/sealed")) == 1


async def test_a_stop_cuts_the_backoff_short_undelivered() -> None:
    async with receiver() as hook:
        hook.script["/n"] = [503] * 10
        s = sender(backoff_ms=60_000)
        stop = asyncio.Event()
        try:
            sending = asyncio.create_task(s.send(notice(f"{hook.url}/n"), stop))
            await asyncio.wait_for(hook.arrived.wait(), 2)
            stop.set()
            assert await asyncio.wait_for(sending, 2) is None
        finally:
            await s.close()


def test_the_notifier_metrics_parse_with_prometheus_client() -> None:
    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from streams import part_metrics
    from streams.notifier import NotifierPart
    from streams.observe import Observer
    from streams.settings import Settings

    part = NotifierPart(Settings(kafka_bootstrap_servers="127.0.0.1:9"), sender=sender())
    part.sender.delivered = 2
    observer = Observer(
        "notifier",
        lambda: part_metrics.notifier_health(part),
        lambda: part_metrics.notifier_samples(part),
    )
    text = generate_latest(observer.registry).decode()
    values = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}
    assert values["taskstream_notifier_notices_delivered"] == 2
    assert values["taskstream_notifier_notices_given_up"] == 0
    assert "taskstream_notifier_outcomes_read" in values
    assert part_metrics.notifier_health(part)["status"] == "ok"
