"""The benchmark's pipeline application and report, without a broker."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from bench.common import BenchResult, heartbeat_records
from bench.lifecycle import percentile
from bench.main import BENCHMARKS, _best, bench_brokers, register
from bench.pipeline import Counts, HeartbeatCounter
from bench.report import Report, format_report, format_reports
from schemas.codec import CODEC
from schemas.commands import SessionHeartbeat
from schemas.errors import DecodeError
from schemas.events import SessionHeartbeatReceived
from tests.support.dict_store import DictStore


def _run(app: HeartbeatCounter, values: list[bytes]) -> tuple[Counts, list[Any]]:
    state = app.initial_state()
    events = []
    for value in values:
        for event in app.decide(app.decode_command(value), state, 1_000):
            state = app.evolve(state, event)
            events.append(event)
    return state, events


def test_heartbeat_records_are_avro_commands_over_the_clients() -> None:
    records = heartbeat_records(25, clients=10)
    assert len(records) == 25
    decoded = [CODEC.decode_as(value, SessionHeartbeat) for _, value in records]
    assert {c.client_id for c in decoded} == {f"client-{i:05d}" for i in range(10)}
    assert all(key == c.client_id.encode() for (key, _), c in zip(records, decoded, strict=True))


def test_each_command_gives_one_event_one_count_and_one_output() -> None:
    app = HeartbeatCounter("p", expected=3)
    values = [value for _, value in heartbeat_records(3, clients=2)]
    state, events = _run(app, values)
    assert [type(e) for e in events] == [SessionHeartbeatReceived] * 3
    assert state.by_client == {"client-00000": 2, "client-00001": 1}
    encoded = app.encode_event(events[-1])
    (output,) = list(app.outputs(state, events[-1]))
    assert output.topic == "p.completed"
    assert output.key == b"client-00000"
    assert CODEC.decode(output.value) == events[-1] == CODEC.decode(encoded)


def test_state_survives_dump_and_load() -> None:
    app = HeartbeatCounter("p", expected=10)
    state, _ = _run(app, [value for _, value in heartbeat_records(5, clients=3)])
    dumped = dict(app.dump_changes(state))
    assert list(app.dump_changes(state)) == []
    loaded = app.load_state(DictStore(dumped.items()))
    assert loaded.by_client == state.by_client


def test_the_run_is_timed_once_all_expected_commands_are_dumped() -> None:
    app = HeartbeatCounter("p", expected=2)
    values = [value for _, value in heartbeat_records(2)]
    state, _ = _run(app, values[:1])
    app.dump_changes(state)
    assert not app.done.is_set()
    state, _ = _run(app, values[1:])
    app.dump_changes(state)
    assert app.done.is_set()
    assert app.started is not None and app.finished is not None
    assert app.finished >= app.started


def test_undecodable_commands_are_refused() -> None:
    app = HeartbeatCounter("p", expected=1)
    with pytest.raises(DecodeError):
        app.decode_command(b"not avro")
    event = SessionHeartbeatReceived(client_id="c", occurred_at_ms=1, session_id="s")
    with pytest.raises(DecodeError):
        app.decode_command(CODEC.encode(event))  # an event is not a heartbeat command


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) is None


def test_ratios_and_table() -> None:
    report = Report("127.0.0.1:1")
    report.results += [
        BenchResult("ceiling", "ok", events=1000, seconds=0.02),
        BenchResult("ceiling-batch", "ok", events=1000, seconds=0.01),
        BenchResult("runtime", "ok", events=1000, seconds=0.04),
        BenchResult("faust", "ok", events=100, seconds=0.1),
    ]
    ratios = report.ratios()
    assert ratios["runtime_vs_faust"] == pytest.approx(25.0)
    assert ratios["runtime_vs_ceiling"] == pytest.approx(0.5)
    assert ratios["runtime_vs_ceiling_batch"] == pytest.approx(0.25)
    table = format_report(report)
    assert "25.0x" in table and "met" in table and "MISSED" not in table
    doc = report.as_dict(["taskstream", "bench"])
    assert [r["name"] for r in doc["results"]] == ["ceiling", "ceiling-batch", "runtime", "faust"]
    assert doc["results"][2]["events_per_s"] == pytest.approx(25_000)


def test_the_best_round_is_kept_with_every_rate() -> None:
    rounds = [
        BenchResult("runtime", "ok", events=100, seconds=2.0),
        BenchResult("runtime", "failed", detail="boom"),
        BenchResult("runtime", "ok", events=100, seconds=1.0),
    ]
    best = _best(rounds)
    assert best.seconds == 1.0
    assert best.extra["rounds"] == [50.0, None, 100.0]
    assert _best([BenchResult("runtime", "failed", detail="x")]).status == "failed"


def test_a_missing_faust_is_reported_not_failed() -> None:
    report = Report("x")
    report.results.append(BenchResult("faust", "not installed", detail="pip install ..."))
    report.results.append(BenchResult("runtime", "ok", events=10, seconds=1.0))
    assert report.ratios()["runtime_vs_faust"] is None
    assert "not installed" in format_report(report)


def test_register_adds_the_bench_sub_command() -> None:
    parser = argparse.ArgumentParser(prog="taskstream")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["bench"])
    defaults = (args.events, args.faust_events, args.only, args.json, args.repeat)
    assert defaults == (100_000, 20_000, None, None, 3)
    args = parser.parse_args(["bench", "--only", "runtime", "--only", "faust", "--events", "5"])
    assert args.only == ["runtime", "faust"] and args.events == 5
    assert set(BENCHMARKS) == {"ceiling", "runtime", "faust", "lifecycle", "replay", "stack"}
    assert parser.parse_args(["bench", "--replay-tasks", "7"]).replay_tasks == 7
    with pytest.raises(SystemExit):
        parser.parse_args(["bench", "--only", "nope"])


def test_replay_workload_takes_every_task_to_one_completion() -> None:
    from collections import Counter

    from bench.workload import lifecycle_log
    from schemas.events import TaskCompleted, TaskRetryScheduled

    log = list(lifecycle_log(300, partitions=2, clients=6, open_tasks=20, fail_every=10))
    completed = Counter(e.event.task_id for e in log if isinstance(e.event, TaskCompleted))
    assert set(completed) == {f"task-{i:08d}" for i in range(300)}
    assert set(completed.values()) == {1}
    assert sum(isinstance(e.event, TaskRetryScheduled) for e in log) == 30
    assert {e.partition for e in log} == {0, 1}
    assert all(e.key == e.event.client_id.encode() for e in log)


def test_broker_choice_defaults_to_both_and_keeps_the_order_given() -> None:
    parser = argparse.ArgumentParser(prog="taskstream")
    register(parser.add_subparsers(dest="command"))
    assert parser.parse_args(["bench"]).broker is None
    assert bench_brokers(None, None) == ["kafka", "embedded"]
    assert bench_brokers(None, "host:9092") == ["external"]
    chosen = parser.parse_args(["bench", "--broker", "embedded", "--broker", "kafka"]).broker
    assert bench_brokers(chosen, "host:9092") == ["embedded", "kafka"]
    assert bench_brokers(["both", "kafka"], None) == ["kafka", "embedded"]
    with pytest.raises(SystemExit):
        parser.parse_args(["bench", "--broker", "redpanda"])


def test_every_row_names_its_broker_and_both_brokers_stand_side_by_side() -> None:
    reports = []
    for broker, seconds in (("kafka", 0.01), ("embedded", 0.02)):
        report = Report("x", broker=broker)
        result = BenchResult("runtime", "ok", events=1000, seconds=seconds)
        result.extra.update(load_before=(0.5, 0.4, 0.3), load_after=(0.7, 0.5, 0.3))
        report.results.append(result)
        reports.append(report)
    text = format_reports(reports)
    rows = [line for line in text.splitlines() if "runtime" in line and "events/s" not in line]
    assert any(line.startswith("kafka") for line in rows)
    assert any(line.startswith("embedded") for line in rows)
    assert "| row | kafka | embedded |" in text
    assert "100,000 events/s (load 0.5-0.7)" in text and "50,000 events/s" in text


def test_the_lifecycle_row_shows_the_latency_at_the_targets_rate_beside_half_rate() -> None:
    reports = []
    for broker, p99 in (("kafka", 8.0), ("embedded", 12.0)):
        report = Report("x", broker=broker)
        result = BenchResult("lifecycle", "ok", events=10_000, seconds=4.0)
        result.extra.update(
            latency_rate=1250.0,
            latency_p50_ms=5.0,
            latency_p99_ms=20.0,
            latency_samples=6250,
            target_rate=1000.0,
            target_tasks=5000,
            target_p50_ms=3.0,
            target_p99_ms=p99,
        )
        report.results.append(result)
        reports.append(report)
    text = format_reports(reports)
    assert "submit->assigned at 1,250 tasks/s: p50 5.0 ms, p99 20.0 ms (6250 tasks)" in text
    assert (
        "submit->assigned at 1,000 tasks/s (the target's rate): p50 3.0 ms, p99 8.0 ms (5000 tasks)"
    ) in text
    assert (
        "| submit->assigned at 1,000 tasks/s | p50 3.0 / p99 8.0 ms at 1,000 tasks/s "
        "| p50 3.0 / p99 12.0 ms at 1,000 tasks/s |"
    ) in text


def test_a_lifecycle_row_without_the_targets_phase_shows_half_rate_only() -> None:
    report = Report("x", broker="kafka")
    result = BenchResult("lifecycle", "ok", events=1000, seconds=2.0)
    result.extra.update(latency_rate=250.0, latency_p50_ms=5.0, latency_p99_ms=9.0)
    report.results.append(result)
    text = format_reports([report])
    assert "submit->assigned at 250 tasks/s" in text
    assert "the target's rate" not in text
