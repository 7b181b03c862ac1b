"""The given/when/then harness for the decider: ``Harness().given(...).when(cmd).then(...)``,
with the command builders (``submit``, ``register``) and event filters (``names``, ``of``) the
``test_domain_*`` modules share. Every decision is checked against a replay of the events and a
reload of the stored state, so a test also shows the state it reads is the state that was kept.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any, TypeVar

from schemas import commands as c
from schemas import events as ev
from streams.domain import DomainConfig, PartitionState, decide, evolve, tick
from streams.domain.archive import flushed
from streams.domain.state import TaskRecord
from streams.state_codec import dump_all, dump_changes, load_state, open_state
from tests.support.dict_store import DictStore

CONFIG = DomainConfig()


def config(**overrides: Any) -> DomainConfig:
    return replace(CONFIG, **overrides)


def submit(
    task_id: str, operation: str = "contact_update", client: str = "A", **kw: Any
) -> c.SubmitTask:
    return c.SubmitTask(client_id=client, task_id=task_id, operation=operation, **kw)


def register(
    session_id: str, client: str = "A", max_concurrent: int = 1, capabilities: Iterable[str] = ()
) -> c.RegisterSession:
    return c.RegisterSession(
        client_id=client,
        session_id=session_id,
        agent_id=f"agent-{session_id}",
        max_concurrent=max_concurrent,
        capabilities=list(capabilities),
    )


def names(events: Iterable[ev.Event]) -> list[str]:
    return [type(e).__name__ for e in events]


E = TypeVar("E", bound=ev.Event)


def of(events: Iterable[ev.Event], kind: type[E]) -> list[E]:
    return [e for e in events if isinstance(e, kind)]


class Outcome:
    def __init__(self, harness: Harness, events: list[ev.Event]) -> None:
        self.harness = harness
        self.events = events

    def then(self, *expected: ev.Event) -> Harness:
        assert self.events == list(expected), (
            f"\nexpected {names(expected)}\n     got {names(self.events)}\n{self.events}"
        )
        return self.harness

    def then_names(self, *expected: str) -> Harness:
        assert names(self.events) == list(expected), self.events
        return self.harness


class Harness:
    """Drives one partition state: commands and ticks are decided, then folded in.

    Every decision is also checked for purity: the state is equal before and after ``decide``
    and deciding again gives the same events. After each step the state is written to a store
    (a dict) and flushed, as the processor does after each cycle: finished tasks leave memory,
    so every rule is also checked reading them back from the store (``state.task``).
    """

    def __init__(self, cfg: DomainConfig = CONFIG) -> None:
        self.config = cfg
        self.store = DictStore()
        self.state = open_state(self.store)
        self.log: list[ev.Event] = []
        self.now = 0

    # -- given ---------------------------------------------------------------------------------

    def given(self, *items: ev.Event | c.Command, at: int | None = None) -> Harness:
        for item in items:
            if isinstance(item, ev.Event):
                self.apply([item])
            else:
                self.do(item, at=at)
        return self

    # -- when ----------------------------------------------------------------------------------

    def when(self, command: c.Command, at: int | None = None) -> Outcome:
        return Outcome(self, self.do(command, at=at))

    def when_tick(self, at: int) -> Outcome:
        return Outcome(self, self.tick(at))

    # -- mechanics -----------------------------------------------------------------------------

    def apply(self, events: list[ev.Event]) -> list[ev.Event]:
        for event in events:
            self.state = evolve(self.state, event)
        self.store.write(dump_changes(self.state))
        flushed(self.state)
        self.log.extend(events)
        return events

    def _checked(self, run: Any) -> list[ev.Event]:
        before = self.state.indices()
        first: list[ev.Event] = run()
        assert self.state.indices() == before, "decide/tick changed the indices"
        assert run() == first, "deciding twice on the same state gave different events"
        return first

    def do(self, command: c.Command, at: int | None = None) -> list[ev.Event]:
        if at is not None:
            self.now = at
        events = self._checked(lambda: decide(command, self.state, self.now, self.config))
        return self.apply(events)

    def tick(self, at: int) -> list[ev.Event]:
        self.now = at
        events = self._checked(lambda: tick(self.state, at, self.config))
        return self.apply(events)

    # -- helpers -------------------------------------------------------------------------------

    def record(self, task_id: str) -> TaskRecord:
        """The task's record, finished or not (``state.tasks`` holds unfinished ones)."""
        task = self.state.task(task_id)
        assert task is not None, f"unknown task {task_id}"
        return task

    def status(self, task_id: str) -> str:
        return self.record(task_id).status

    def token(self, task_id: str) -> int:
        token = self.record(task_id).fencing_token
        assert token is not None, f"{task_id} has no fencing token"
        return token

    def succeed(self, task_id: str, at: int | None = None, **kw: Any) -> list[ev.Event]:
        task = self.record(task_id)
        return self.do(
            c.ReportResult(
                client_id=task.client_id,
                task_id=task_id,
                fencing_token=self.token(task_id),
                success=True,
                **kw,
            ),
            at=at,
        )

    def fail(self, task_id: str, error: str = "boom", at: int | None = None) -> list[ev.Event]:
        task = self.record(task_id)
        return self.do(
            c.ReportResult(
                client_id=task.client_id,
                task_id=task_id,
                fencing_token=self.token(task_id),
                success=False,
                error=error,
            ),
            at=at,
        )

    def retry_due(self, task_id: str, at: int | None = None) -> list[ev.Event]:
        task = self.record(task_id)
        assert task.due_at_ms is not None
        return self.do(
            c.RetryDue(
                client_id=task.client_id,
                task_id=task_id,
                attempt=task.attempt,
                due_at_ms=task.due_at_ms,
                kind="scheduled" if task.status == "scheduled" else "retry",
            ),
            at=task.due_at_ms if at is None else at,
        )

    def replayed(self) -> PartitionState:
        """A state built from the event log alone."""
        state = PartitionState()
        for event in self.log:
            state = evolve(state, event)
        return state

    def reloaded(self) -> PartitionState:
        return load_state(dump_all(self.state))
