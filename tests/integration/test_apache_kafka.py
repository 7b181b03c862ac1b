"""The local Apache Kafka: ``taskstream broker --apache-kafka`` and ``taskstream run
--apache-kafka`` from a user's point of view (a fresh directory, the commands, a restart), and
the broker semantics the runtime relies on, checked on the broker itself."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from streams.kafka import client_kwargs, consumer_kwargs, producer_kwargs
from streams.kafka.apache import ApacheKafka
from streams.kafka.process import free_loopback_port
from streams.kafka.profile import broker_profile
from streams.kafka.topics import ensure_topics
from streams.settings import Settings
from tests.conftest import suite_broker

ROOT = Path(__file__).resolve().parents[2]


def _clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "TASKSTREAM_"))}
    env["TASKSTREAM_DATA_DIR"] = str(tmp_path / "data")
    env.update(extra)
    return env


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _java_children(pid: int) -> list[int]:
    """Pids of ``java`` processes whose parent is ``pid``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name = text[text.index("(") + 1 : text.rindex(")")]
        ppid = int(text[text.rindex(")") + 2 :].split()[1])
        if ppid == pid and name == "java":
            found.append(int(stat.parent.name))
    return found


def _first_line(stream: IO[bytes], timeout_s: float) -> str:
    """The first line a child writes, read in a thread so that a silent child fails the test."""
    result: list[bytes] = []

    def read() -> None:
        result.append(stream.readline())

    import threading

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout_s)
    assert result, f"no line on standard output within {timeout_s} s"
    return result[0].decode().strip()


def _start_broker_command(tmp_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "broker", "--apache-kafka"],
        cwd=tmp_path,
        env=_clean_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=open(tmp_path / "broker-command.log", "ab"),  # noqa: SIM115 - the child's
        stdin=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    line = _first_line(proc.stdout, 90)
    assert line.startswith("KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:"), line
    return proc, line.split("=", 1)[1]


def _stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


async def test_broker_command_keeps_its_records_and_address_across_a_restart(
    tmp_path: Path,
) -> None:
    proc, servers = _start_broker_command(tmp_path)
    try:
        assert (tmp_path / "data" / "broker.address").read_text() == servers
        producer = AIOKafkaProducer(bootstrap_servers=servers, enable_idempotence=True)
        await producer.start()
        try:
            sent = await producer.send_and_wait("kept.topic", b"survives", key=b"k")
        finally:
            await producer.stop()
    finally:
        assert _stop(proc) == 0
    assert not (tmp_path / "data" / "broker.address").exists()
    assert (tmp_path / "data" / "kafka" / "logs" / "meta.properties").is_file()

    proc, again = _start_broker_command(tmp_path)
    try:
        assert again == servers  # the same port: clients that remember it keep working
        consumer = AIOKafkaConsumer(bootstrap_servers=again, enable_auto_commit=False)
        await consumer.start()
        try:
            tp = TopicPartition("kept.topic", sent.partition)
            consumer.assign([tp])
            consumer.seek(tp, sent.offset)
            batch = await consumer.getmany(tp, timeout_ms=10_000)
            assert [r.value for r in batch.get(tp, [])] == [b"survives"]
        finally:
            await consumer.stop()
    finally:
        assert _stop(proc) == 0


def test_the_broker_dies_with_the_process_that_started_it(tmp_path: Path) -> None:
    """SIGKILL of the parent leaves no Kafka behind (PR_SET_PDEATHSIG)."""
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from streams.kafka.apache import ApacheKafka\n"
        f"k = ApacheKafka(Path({str(tmp_path / 'k')!r}))\n"
        "k.start()\n"
        "print(k.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=_clean_env(tmp_path),
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    assert parent.stdout is not None
    try:
        java_pid = int(_first_line(parent.stdout, 90))
        assert _alive(java_pid)
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 10
    while _alive(java_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(java_pid), f"Kafka (pid {java_pid}) outlived its parent"


def test_a_broker_that_cannot_start_says_why_and_leaves_nothing(tmp_path: Path) -> None:
    """A port that is taken: a clear error naming it, and no Java process left running."""
    import socket

    from streams.errors import BrokerError

    before = set(_java_children(os.getpid()))  # the suite's own broker may be one
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        broker = ApacheKafka(tmp_path / "k", port=port)
        with pytest.raises(BrokerError, match=f"port {port} is taken"):
            broker.start()
    assert set(_java_children(os.getpid())) == before


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=3) as answer:  # noqa: S310 - loopback only
        return json.loads(answer.read())


def _until(check: Callable[[], Any], timeout_s: float, what: str, log: Path) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            value = check()
        except (OSError, urllib.error.URLError, KeyError, ValueError):
            value = None
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}:\n{log.read_text()[-6000:]}")


def test_run_on_apache_kafka_keeps_tasks_across_a_restart_of_every_part(tmp_path: Path) -> None:
    """``taskstream run --apache-kafka --demo``, stopped (broker included) and started again:
    the tasks done before are still there, with the same state, and new work is done."""
    port = free_loopback_port()
    env = _clean_env(tmp_path, TASKSTREAM_HTTP_PORT=str(port), TASKSTREAM_PARTITIONS="2")
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "run.log"

    def run(*extra: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "run", "--apache-kafka", *extra],
            cwd=tmp_path,
            env=env,
            stdout=open(log, "ab"),  # noqa: SIM115 - the child's
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    first = run("--demo", "--rate", "10")
    try:

        def completed() -> list[dict[str, Any]]:
            page = _get(f"{base}/tasks?status=completed&limit=20")
            return list(page["items"]) if len(page["items"]) >= 5 else []

        done = _until(completed, 90, "five completed demo tasks", log)
        health_before = _get(f"{base}/health")["stats"]
    finally:
        assert _stop(first) == 0, log.read_text()[-4000:]
    assert not (tmp_path / "data" / "broker.address").exists()

    second = run()
    try:
        for task in done:
            url = f"{base}/tasks/{task['task_id']}"

            def fetch(url: str = url) -> Any:
                return _get(url)

            again = _until(fetch, 60, f"{url} after the restart", log)
            assert again["state"] == "completed"
            assert again["client_id"] == task["client_id"]
        health_after = _until(lambda: _get(f"{base}/health")["stats"], 30, "health", log)
        assert health_after["succeeded"] >= health_before["succeeded"]
    finally:
        assert _stop(second) == 0, log.read_text()[-4000:]


# --- broker semantics the runtime relies on --------------------------------------------------


@pytest.fixture
def on_apache_kafka() -> None:
    if suite_broker() not in ("kafka", "external", "docker"):
        pytest.skip("checks Apache Kafka's own behaviour; the suite runs on the embedded broker")


async def test_the_profile_of_apache_kafka_grants_idempotence_and_needs_no_workaround(
    on_apache_kafka: None, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings()
    profile = broker_profile(settings)
    assert profile.idempotent_producer
    assert not (profile.holds_fetches or profile.starves_fetches or profile.short_list_offsets)
    assert producer_kwargs(settings)["enable_idempotence"] is True
    wait = consumer_kwargs(settings, None, hot_path=True)["fetch_max_wait_ms"]
    assert wait == settings.kafka_idle_fetch_max_wait_ms


async def test_a_fetch_is_answered_when_a_record_arrives_not_when_the_wait_ends(
    on_apache_kafka: None, make_settings: Callable[..., Settings]
) -> None:
    """With a 30 s fetch wait, a record produced while the fetch waits is delivered by a poll
    that gives up after 10 s: on Kafka the wait is no latency floor (the embedded broker holds
    every fetch for its full wait, so the poll would come back empty)."""
    settings = make_settings(kafka_idle_fetch_max_wait_ms=30_000)
    await ensure_topics(settings)
    topic = settings.topic("commands")
    consumer = AIOKafkaConsumer(**consumer_kwargs(settings, None, hot_path=True))
    producer = AIOKafkaProducer(**producer_kwargs(settings))
    await consumer.start()
    await producer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_end(tp)
        await consumer.position(tp)
        assert await consumer.getmany(tp, timeout_ms=300) == {}  # a fetch now waits
        await producer.send_and_wait(topic, b"now", partition=0)
        batch = await consumer.getmany(tp, timeout_ms=10_000)
    finally:
        await producer.stop()
        await consumer.stop()
    assert [r.value for r in batch.get(tp, [])] == [b"now"]


async def test_topic_configs_timestamps_and_offsets_for_times_on_apache_kafka(
    on_apache_kafka: None, make_settings: Callable[..., Settings]
) -> None:
    """The layout's configs as Kafka reports them (the event log is never deleted; record time
    is the producer's CreateTime, which is a command's time), and ``offsets_for_times`` finds
    the first record at or after a time."""
    settings = make_settings()
    await ensure_topics(settings)
    admin = AIOKafkaAdminClient(**client_kwargs(settings))
    await admin.start()
    try:
        responses = await admin.describe_configs(
            [
                ConfigResource(ConfigResourceType.TOPIC, settings.topic("events")),
                ConfigResource(ConfigResourceType.TOPIC, settings.topic("commands")),
            ]
        )
    finally:
        await admin.close()
    configs: dict[str, dict[str, str]] = {}
    for response in responses:
        for resource in response.resources:
            configs[resource[3]] = {entry[0]: entry[1] for entry in resource[4]}
    events, commands = configs[settings.topic("events")], configs[settings.topic("commands")]
    assert events["retention.ms"] == "-1"
    assert events["retention.bytes"] == "-1"
    assert events["message.timestamp.type"] == "CreateTime"
    assert commands["message.timestamp.type"] == "CreateTime"
    assert commands["cleanup.policy"] == "delete"

    topic = settings.topic("commands")
    base = int(time.time() * 1000) - 60_000
    producer = AIOKafkaProducer(**producer_kwargs(settings))
    await producer.start()
    try:
        for i in range(5):
            await producer.send_and_wait(
                topic, f"r{i}".encode(), partition=1, timestamp_ms=base + i * 1000
            )
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(**consumer_kwargs(settings, None))
    await consumer.start()
    try:
        tp = TopicPartition(topic, 1)
        found = await consumer.offsets_for_times({tp: base + 2500})
        assert found[tp] is not None
        assert (found[tp].offset, found[tp].timestamp) == (3, base + 3000)
        assert (await consumer.offsets_for_times({tp: base + 10_000}))[tp] is None
        consumer.assign([tp])
        consumer.seek(tp, 0)
        batch = await consumer.getmany(tp, timeout_ms=5_000)
        assert [r.timestamp for r in batch[tp]] == [base + i * 1000 for i in range(5)]
    finally:
        await consumer.stop()
