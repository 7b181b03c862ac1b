"""The demo behind ``taskstream run --demo``: simulated browser sessions for a few clients, a
shared pool, and a steady mix of GHL tasks with a small failure rate, so the view shows live
priorities, batches, retries and dead letters."""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from schemas.commands import SubmitTask
from streams.executor import Executor, Handler, SessionSpec, SimulatedFailure, TaskContext
from streams.executor.handlers import SimulatedGhlHandler
from streams.settings import Settings
from streams.submit_door import SubmitDoor, submit_door

log = logging.getLogger(__name__)

DEMO_CLIENTS = ("client_acme_001", "client_globex_002", "client_initech_003")

DEMO_SESSIONS = (
    SessionSpec("bb_session_acme_1", "client_acme_001", "agent_001", max_concurrent=3),
    SessionSpec("bb_session_acme_2", "client_acme_001", "agent_002", max_concurrent=2),
    SessionSpec("bb_session_globex_1", "client_globex_002", "agent_003", max_concurrent=3),
    SessionSpec("bb_session_initech_1", "client_initech_003", "agent_004", max_concurrent=2),
)

# Relative frequency of each operation in the demo's traffic: mostly batchable tag and
# contact work, some critical conversation sends, the odd background export.
DEMO_MIX: dict[str, int] = {
    "tag_add": 8,
    "contact_update": 6,
    "contact_create": 4,
    "note_create": 3,
    "conversation_send": 3,
    "workflow_trigger": 2,
    "pipeline_update": 2,
    "campaign_add": 2,
    "opportunity_update": 2,
    "conversation_read": 1,
    "report_generate": 1,
    "data_export": 1,
    "integration_sync": 2,
}


# Share of demo tasks that fail on every attempt, so dead letters show up in the view.
POISON_SHARE = 0.02


def demo_task(rng: random.Random, door: SubmitDoor | None = None) -> SubmitTask:
    """One demo task, built and checked by the submission door like any other submit."""
    door = door if door is not None else submit_door()
    operations = list(DEMO_MIX)
    operation = rng.choices(operations, weights=[DEMO_MIX[o] for o in operations])[0]
    client = rng.choice(DEMO_CLIENTS)
    payload: dict[str, object] = {"contact": f"ct_{rng.randrange(10_000):04d}", "source": "demo"}
    if rng.random() < POISON_SHARE:
        payload["simulate_error"] = "contact is locked by another workflow"
    return door(
        client_id=client,
        task_id=f"demo-{uuid.UUID(int=rng.getrandbits(128)).hex[:12]}",
        operation=operation,
        payload=payload,
        timeout_ms=30_000,
    )


async def generate(
    submit: Callable[[SubmitTask], Awaitable[object]],
    stop: asyncio.Event,
    rate_per_s: float,
    seed: int = 7,
    door: SubmitDoor | None = None,
) -> int:
    """Submit demo tasks at ``rate_per_s`` until ``stop``; returns how many were submitted."""
    rng = random.Random(seed)
    door = door if door is not None else submit_door()
    sent = 0
    interval = 1.0 / rate_per_s
    while not stop.is_set():
        await submit(demo_task(rng, door))
        sent += 1
        try:
            await asyncio.wait_for(stop.wait(), timeout=interval)
        except TimeoutError:
            pass
    return sent


def _poisonable(handler: SimulatedGhlHandler) -> Handler:
    """Fail tasks whose payload asks for it (``simulate_error``); run the rest normally."""

    async def run(ctx: TaskContext) -> Mapping[str, Any] | None:
        error = ctx.payload.get("simulate_error")
        if error:
            raise SimulatedFailure(str(error))
        return await handler(ctx)

    return run


def demo_executor(settings: Settings, failure_rate: float = 0.05, scale: float = 0.05) -> Executor:
    simulated = SimulatedGhlHandler(scale=scale, failure_rate=failure_rate, seed=11)
    handler = _poisonable(simulated)
    handlers = {name: handler for name in simulated.catalog}
    return Executor(settings, handlers=handlers, sessions=DEMO_SESSIONS, pool=True)


async def _run(
    settings: Settings, stop: asyncio.Event, rate_per_s: float, failure_rate: float
) -> None:
    from aiokafka import AIOKafkaProducer

    from schemas.codec import CODEC
    from streams.kafka import producer_kwargs
    from streams.kafka.topics import ensure_topics

    await ensure_topics(settings)
    executor = demo_executor(settings, failure_rate=failure_rate)
    producer = AIOKafkaProducer(**producer_kwargs(settings))
    await producer.start()
    topic = settings.topic("commands")

    async def submit(command: SubmitTask) -> None:
        await producer.send(topic, CODEC.encode(command), key=command.client_id.encode())

    try:
        await executor.start()
        executing = asyncio.create_task(executor.wait())
        generating = asyncio.create_task(
            generate(submit, stop, rate_per_s, door=submit_door(settings))
        )
        done, _ = await asyncio.wait({executing, generating}, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()
        log.info("demo submitted %d tasks", generating.result() if generating.done() else -1)
    finally:
        stop.set()
        await executor.stop()
        await producer.stop()


def run_demo(settings: Settings, rate_per_s: float = 5.0, failure_rate: float = 0.05) -> int:
    from streams.runtime.signals import run_part

    return run_part(
        lambda stop: _run(settings, stop, rate_per_s, failure_rate), name="demo", grace_s=15.0
    )
