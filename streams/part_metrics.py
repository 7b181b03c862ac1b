"""What the processor, a delay agent and a worker say on ``/health`` and ``/metrics``
(served by ``streams.observe``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from streams.observe import Sample


def processor_health(runtime: Any) -> dict[str, Any]:
    return {"status": "ok" if runtime.ready.is_set() else "starting", "partitions": runtime.owned}


def processor_samples(runtime: Any) -> Iterable[Sample]:
    yield (
        "taskstream_processor_ready",
        "1 once the first assignment is recovered",
        1.0 if runtime.ready.is_set() else 0.0,
        {},
    )
    yield (
        "taskstream_processor_partitions",
        "Command partitions owned now",
        float(len(runtime.owned)),
        {},
    )
    processor = runtime._processor
    if processor is not None:
        yield (
            "taskstream_processor_commands_total",
            "Commands decided",
            float(processor.commands_total),
            {},
        )
        yield (
            "taskstream_processor_events_total",
            "Events written",
            float(processor.events_total),
            {},
        )
        yield (
            "taskstream_processor_forwarded_total",
            "Commands forwarded to their home",
            float(processor.forwarded_total),
            {},
        )


def delay_health(agent: Any) -> dict[str, Any]:
    return {"status": "ok", "forwarded": agent.forwarded, "retiered": agent.retiered}


def delay_samples(agent: Any) -> Iterable[Sample]:
    for name in ("forwarded", "retiered", "dead_lettered", "uncommitted"):
        yield (
            f"taskstream_delay_{name}",
            f"Delay agent: records {name.replace('_', ' ')}",
            float(getattr(agent, name)),
            {},
        )


def notifier_health(notifier: Any) -> dict[str, Any]:
    sender = notifier.sender
    return {"status": "ok", "delivered": sender.delivered, "given_up": sender.given_up}


def notifier_samples(notifier: Any) -> Iterable[Sample]:
    sender = notifier.sender
    yield (
        "taskstream_notifier_outcomes_read",
        "Notifier: outcome records read",
        float(notifier.outcomes_read),
        {},
    )
    for name in ("delivered", "retried", "given_up"):
        yield (
            f"taskstream_notifier_notices_{name}",
            f"Notifier: outcome notices {name.replace('_', ' ')}",
            float(getattr(sender, name)),
            {},
        )


def worker_health(executor: Any) -> dict[str, Any]:
    failure = executor._failure
    return {
        "status": "ok" if failure is None else "failed",
        "incarnation": executor.incarnation,
        "sessions": [s.session_id for s in executor.sessions],
        "pool": executor.pool_enabled,
        **executor.metrics().as_dict(),
        **({"error": str(failure)} if failure is not None else {}),
    }


def worker_samples(executor: Any) -> Iterable[Sample]:
    for name, value in executor.metrics().as_dict().items():
        yield (
            f"taskstream_executor_{name}",
            f"Executor: {name.replace('_', ' ')}",
            float(value),
            {},
        )
    for session_id, running in executor.running_by_session().items():
        yield (
            "taskstream_executor_session_running",
            "Handler calls running per session",
            float(running),
            {"session_id": session_id},
        )
    yield (
        "taskstream_executor_info",
        "The executor's incarnation (this start)",
        1.0,
        {"incarnation": executor.incarnation},
    )
