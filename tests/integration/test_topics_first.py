"""Topics first (issue 13): ``taskstream topics create`` / ``check``, the SDK's and the gateway's
layout check before their first send, and the way out when an upstream system produced before
taskstream ever started (the broker auto-created ``task.commands`` with its own count)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from api.view import create_app
from projections.memory import MemorySource
from projections.reader import ProjectionReader
from schemas import events as ev
from schemas.commands import CancelTask
from streams import cli
from streams.client import TaskstreamClient
from streams.errors import TopicLayoutError
from streams.kafka.profile import broker_profile
from streams.kafka.routing import home_partition
from streams.kafka.topics import check_topics, create_topics, ensure_topics, topic_layout
from streams.settings import Settings
from tests.integration.distributor_harness import FAST, register, rig, submit
from tests.support.librdkafka import RdProducer

pytestmark = pytest.mark.integration

PARTITIONS = 8  # more than either broker's auto-created count (Kafka 1, the embedded one 4)


async def counts(settings: Settings) -> dict[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        described = await admin.describe_topics()
    finally:
        await admin.close()
    prefix = settings.topic_prefix + "."
    return {t["topic"]: len(t["partitions"]) for t in described if t["topic"].startswith(prefix)}


async def run_cli(monkeypatch: pytest.MonkeyPatch, settings: Settings, *argv: str) -> int:
    """``taskstream ARGV`` with the test's settings in the environment (in a thread: the CLI
    runs its own event loop)."""
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", str(settings.kafka_bootstrap_servers))
    monkeypatch.setenv("TASKSTREAM_TOPIC_PREFIX", settings.topic_prefix)
    monkeypatch.setenv("TASKSTREAM_PARTITIONS", str(settings.partitions))
    monkeypatch.setenv("TASKSTREAM_DATA_DIR", str(settings.data_dir))
    return await asyncio.to_thread(cli.main, list(argv))


async def test_producing_before_the_first_start_then_topics_create_then_starting_works(
    make_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = make_settings(partitions=PARTITIONS, **FAST)
    assert settings.kafka_bootstrap_servers is not None
    upstream = RdProducer(settings.kafka_bootstrap_servers, settings.topic("commands"))
    clients = [f"early-{i}" for i in range(6)]
    for client in clients:
        await upstream.asend(submit(client, f"task-{client}", "conversation_send"))
        await upstream.asend(register(client, f"s-{client}"))
    auto = (await counts(settings))[settings.topic("commands")]
    assert auto < PARTITIONS  # the broker's default count, not ours

    # A part starting now refuses, and says what to run.
    with pytest.raises(TopicLayoutError, match="`taskstream topics create` grows it to 8"):
        await ensure_topics(settings)
    assert await run_cli(monkeypatch, settings, "topics", "check") == 1
    assert "taskstream topics create" in capsys.readouterr().out

    code = await run_cli(monkeypatch, settings, "topics", "create")
    out = capsys.readouterr().out
    if broker_profile(settings).name == "embedded":
        # It cannot add partitions (no CreatePartitions): it says to use the count it has.
        assert code == 1 and f"set TASKSTREAM_PARTITIONS={auto}" in out, out
        settings = make_settings(partitions=auto, **FAST)
        assert await run_cli(monkeypatch, settings, "topics", "create") == 0
        capsys.readouterr()
    else:
        assert code == 0, out
        assert f"{settings.topic('commands')}" in out and "grown" in out and "layout ok" in out
    layout = {spec.name: settings.partitions for spec in topic_layout(settings)}
    assert await counts(settings) == layout
    assert await run_cli(monkeypatch, settings, "topics", "check") == 0

    # Starting now works: every early command is forwarded home and decided there.
    async with rig(make_settings, partitions=settings.partitions) as r:
        events = await r.wait(
            lambda es: (
                {e.task_id for e in es if isinstance(e, ev.TaskCompleted)}
                >= {f"task-{c}" for c in clients}
            ),
            timeout_s=60,
        )
    forwarded = [e for e in events if isinstance(e, ev.CommandForwarded)]
    if settings.partitions > auto:  # the early commands sit where one partition was
        assert forwarded and {e.source_partition for e in forwarded} <= set(range(auto))


async def test_topics_create_is_idempotent_and_keeps_a_live_log_as_it_is(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(partitions=2)
    first = await create_topics(settings)
    assert first.ok and sorted(first.created) == sorted(s.name for s in topic_layout(settings))
    again = await create_topics(settings)
    assert again.ok and again.created == [] and again.grown == []
    # Once a processor wrote state, a different count is never "fixed" by growing.
    async with rig(make_settings, partitions=2) as r:
        await r.send(submit("acme", "t-1", "conversation_send"))
        await r.wait(lambda es: any(isinstance(e, ev.TaskAccepted) for e in es))
    bigger = make_settings(partitions=4)
    report = await create_topics(bigger)
    assert report.grown == [] and report.state_exists is True
    assert any("set TASKSTREAM_PARTITIONS=2" in p for p in report.problems)
    assert (await check_topics(bigger)).problems == report.problems


async def test_a_delay_tier_with_too_few_partitions_is_grown(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(partitions=3)
    if broker_profile(settings).name == "embedded":
        pytest.skip("the embedded broker cannot add partitions to a topic")
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(settings.topic("retry.4s"), 1, 1)])
    finally:
        await admin.close()
    with pytest.raises(TopicLayoutError, match="delay tier .*retry.4s has 1 partitions"):
        await ensure_topics(settings)
    report = await create_topics(settings)
    assert report.ok and report.grown == [settings.topic("retry.4s")]
    assert (await counts(settings))[settings.topic("retry.4s")] == 3


async def test_the_sdk_checks_the_layout_before_its_first_send_and_creates_nothing(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    async with TaskstreamClient(settings) as client:
        with pytest.raises(TopicLayoutError, match="run `taskstream topics create`"):
            await client.submit("acme", "conversation_send")
    assert settings.topic("commands") not in await counts(settings)  # nothing auto-created
    await create_topics(settings)
    # The client takes the count the cluster has, whatever its own TASKSTREAM_PARTITIONS says,
    # and sends to the client's home partition by number.
    elsewhere = settings.model_copy(update={"partitions": settings.partitions * 3})
    async with TaskstreamClient(elsewhere) as client:
        for name in ("acme", "globex", "initech"):
            sent = await client.send(CancelTask(client_id=name, task_id="t"))
            assert sent.partition == home_partition(name, settings.partitions)


async def test_the_gateway_answers_503_with_the_fix_when_the_layout_is_missing(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    async with TaskstreamClient(settings) as client:
        app = create_app(ProjectionReader(MemorySource()), commands=client, settings=settings)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://view") as http:
            r = await http.post("/tasks", json={"client_id": "acme", "operation": "tag_add"})
    body: dict[str, Any] = r.json()
    assert r.status_code == 503, body
    assert "taskstream topics create" in body["detail"]
    assert settings.topic("commands") not in await counts(settings)
