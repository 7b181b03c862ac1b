"""The given/when/then harness for the decider, and the tests of its basic contract.

Other ``test_domain_*`` modules import ``Harness`` and the command builders from here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any, TypeVar

from schemas import commands as c
from schemas import events as ev
from streams.domain import DomainConfig, PartitionState, decide, evolve, tick
from streams.state_codec import dump_all, load_state

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
    and deciding again gives the same events.
    """

    def __init__(self, cfg: DomainConfig = CONFIG) -> None:
        self.config = cfg
        self.state = PartitionState()
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

    def status(self, task_id: str) -> str:
        return self.state.tasks[task_id].status

    def token(self, task_id: str) -> int:
        token = self.state.tasks[task_id].fencing_token
        assert token is not None, f"{task_id} has no fencing token"
        return token

    def succeed(self, task_id: str, at: int | None = None, **kw: Any) -> list[ev.Event]:
        task = self.state.tasks[task_id]
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
        task = self.state.tasks[task_id]
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
        task = self.state.tasks[task_id]
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


# -- the contract ------------------------------------------------------------------------------


def test_submit_is_accepted_with_its_full_spec_then_queued() -> None:
    Harness().when(submit("t1", payload={"x": 1}), at=5).then(
        ev.TaskAccepted(
            client_id="A",
            task_id="t1",
            occurred_at_ms=5,
            operation="contact_update",
            payload={"x": 1},
            priority=3,
            max_retries=3,
            timeout_ms=300_000,
            batchable=True,
            session_required=True,
        ),
        ev.TaskQueued(client_id="A", task_id="t1", occurred_at_ms=5, priority=3, attempt=1),
        ev.TaskBatched(
            client_id="A",
            task_id="t1",
            occurred_at_ms=5,
            batch_id="b-A-1",
            operation="contact_update",
        ),
    )


def test_given_events_build_the_state_decisions_read() -> None:
    h = Harness().given(
        ev.SessionRegistered(
            client_id="A", occurred_at_ms=1, session_id="s1", agent_id="x", max_concurrent=1
        )
    )
    h.when(submit("t1", operation="workflow_trigger"), at=10).then(
        ev.TaskAccepted(
            client_id="A",
            task_id="t1",
            occurred_at_ms=10,
            operation="workflow_trigger",
            priority=1,
            max_retries=3,
            timeout_ms=300_000,
        ),
        ev.TaskQueued(client_id="A", task_id="t1", occurred_at_ms=10, priority=1, attempt=1),
        ev.TaskAssigned(
            client_id="A",
            task_id="t1",
            occurred_at_ms=10,
            operation="workflow_trigger",
            session_id="s1",
            attempt=1,
            fencing_token=1,
            deadline_at_ms=300_010,
            priority=1,
        ),
    )


def test_decide_leaves_the_state_untouched() -> None:
    h = Harness().given(register("s1"), submit("t1", operation="workflow_trigger"))
    before = h.reloaded()
    dirty = set(h.state.dirty)
    events = decide(submit("t2", operation="workflow_trigger"), h.state, 50, CONFIG)
    assert events
    assert h.state == before
    assert h.state.indices() == before.indices()
    assert h.state.dirty == dirty


def test_time_never_goes_back() -> None:
    h = Harness().given(register("s1"), at=1000)
    events = h.do(submit("t1", operation="workflow_trigger"), at=10)
    assert {e.occurred_at_ms for e in events} == {1000}
