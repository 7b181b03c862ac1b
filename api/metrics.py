"""Prometheus exposition of the read model, computed from the counters at scrape time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)

from projections.reader import ProjectionReader
from projections.rows import PRIORITY_ORDER, WAIT_BUCKETS_S


class _ProjectionCollector:
    def __init__(self, reader: ProjectionReader) -> None:
        self._reader = reader

    def collect(self) -> Iterator[Any]:
        c = self._reader.counters
        status = self._reader.status()

        depth = GaugeMetricFamily(
            "taskstream_queue_depth", "Tasks queued for dispatch, by priority", labels=["priority"]
        )
        for name in PRIORITY_ORDER:
            depth.add_metric([name], status.tasks_by_priority.get(name, 0))
        yield depth

        states = GaugeMetricFamily("taskstream_tasks", "Tasks by lifecycle state", labels=["state"])
        for state, n in c.by_state.items():
            states.add_metric([state], n)
        yield states

        yield GaugeMetricFamily(
            "taskstream_active_assignments",
            "Tasks assigned or in progress",
            value=status.active_assignments,
        )
        yield GaugeMetricFamily(
            "taskstream_active_batches", "Batches open or dispatched", value=status.active_batches
        )
        yield GaugeMetricFamily(
            "taskstream_tasks_awaiting_retry",
            "Failed tasks waiting for a retry",
            value=c.awaiting_retry,
        )
        yield GaugeMetricFamily(
            "taskstream_tasks_overdue",
            "Tasks past their due date and not finished",
            value=status.overdue_tasks,
        )

        in_flight = GaugeMetricFamily(
            "taskstream_session_in_flight",
            "Tasks in flight per active session",
            labels=["session_id"],
        )
        score = GaugeMetricFamily(
            "taskstream_session_health_score",
            "Health score per active session",
            labels=["session_id"],
        )
        for session_id, session in sorted(c.active_sessions.items()):
            in_flight.add_metric([session_id], c.in_flight.get(session_id, 0))
            score.add_metric([session_id], session.score)
        yield in_flight
        yield score
        health = GaugeMetricFamily(
            "taskstream_sessions", "Active sessions by health status", labels=["health"]
        )
        for name, n in status.session_health.items():
            health.add_metric([name], n)
        yield health

        # Seed 000's figures: batch efficiency, retry rate, session utilisation.
        items = CounterMetricFamily(
            "taskstream_batch_items",
            "Items of consolidated batches, by outcome",
            labels=["outcome"],
        )
        items.add_metric(["succeeded"], c.batch_items_succeeded)
        items.add_metric(["failed"], c.batch_items_failed)
        yield items
        for name, doc, ratio in (
            (
                "taskstream_batch_efficiency",
                "Success rate of batched operations (items of consolidated batches)",
                status.batch_efficiency,
            ),
            (
                "taskstream_retry_rate",
                "Retries scheduled per task seen (seed 000: below 0.1)",
                status.retry_rate,
            ),
            (
                "taskstream_session_utilisation",
                "Busy units of the active sessions over their capacity (a batch is one unit)",
                status.session_utilisation,
            ),
        ):
            if ratio is not None:
                yield GaugeMetricFamily(name, doc, value=ratio)
        yield GaugeMetricFamily(
            "taskstream_session_busy_units",
            "Units of work (tasks alone, whole batches) on the active sessions",
            value=status.session_busy_units,
        )
        yield GaugeMetricFamily(
            "taskstream_session_capacity_units",
            "Units the active sessions take at once (their max_concurrent)",
            value=status.session_capacity,
        )
        sizes = GaugeMetricFamily(
            "taskstream_batch_size",
            "A client's adapted batch size for an operation, where failed batches brought it "
            "below the operation's own",
            labels=["client_id", "operation"],
        )
        for client_id, operations in status.batch_sizes.items():
            for operation, size in operations.items():
                sizes.add_metric([client_id, operation], size)
        yield sizes

        for name, doc, value in (
            ("taskstream_retries", "Retries scheduled", c.retries),
            ("taskstream_dead_letters", "Tasks dead-lettered", c.dead_letters),
            ("taskstream_tasks_succeeded", "Tasks completed", c.succeeded),
            ("taskstream_tasks_failed", "Tasks failed permanently", c.failed),
            ("taskstream_attempts_failed", "Failed attempts (retried or not)", c.attempts_failed),
            ("taskstream_timeouts", "Assignments that timed out", c.timeouts),
            ("taskstream_events_projected", "Events folded into the projection", c.events),
            (
                "taskstream_events_undecodable",
                "Event records skipped as undecodable",
                c.undecodable,
            ),
        ):
            yield CounterMetricFamily(name, doc, value=value)

        breaches = CounterMetricFamily(
            "taskstream_sla_breaches",
            "Queue waits longer than the priority's SLA",
            labels=["priority"],
        )
        wait = HistogramMetricFamily(
            "taskstream_queue_wait_seconds",
            "Wait from ready (queued or batched) to assigned",
            labels=["priority"],
        )
        for name in PRIORITY_ORDER:
            w = c.wait_by_priority[name]
            breaches.add_metric([name], w.breaches)
            buckets = [(str(float(b)), n) for b, n in zip(WAIT_BUCKETS_S, w.buckets, strict=True)]
            buckets.append(("+Inf", w.count))
            wait.add_metric([name], buckets, sum_value=w.total_ms / 1000)
        yield breaches
        yield wait

        by_client = CounterMetricFamily(
            "taskstream_client_sla_breaches",
            "SLA breaches per client (recorded while its tasks wait)",
            labels=["client_id"],
        )
        for client_id, n in sorted(c.sla_breaches_by_client.items()):
            by_client.add_metric([client_id], n)
        yield by_client
        starved = GaugeMetricFamily(
            "taskstream_client_starved",
            "1 while a client's work waits with no usable session or pool capacity",
            labels=["client_id", "reason"],
        )
        for client_id, s in sorted(c.starved_clients.items()):
            starved.add_metric([client_id, s.reason], 1)
        yield starved
        yield GaugeMetricFamily(
            "taskstream_starved_clients", "Clients starved now", value=len(c.starved_clients)
        )

        lag = GaugeMetricFamily(
            "taskstream_projection_lag_events",
            "Events in the log not yet projected, per partition",
            labels=["partition"],
        )
        for partition, n in self._reader.projection().lag_by_partition.items():
            lag.add_metric([partition], n)
        yield lag


def render(reader: ProjectionReader) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_ProjectionCollector(reader))
    return bytes(generate_latest(registry))
