"""``decide_folded`` / ``tick_folded``: the processor's live path keeps a decision's writes
instead of folding every event a second time. They must be indistinguishable from ``decide`` /
``tick`` followed by ``evolve`` of each event: the same events, the same state (records,
indices, what the store holds), the same side records (the observer sees, after each event,
the state ``evolve`` reaches after it), and an unchanged state when a rule raises.
"""

from __future__ import annotations

import pickle
import random
from dataclasses import replace
from typing import Any

import pytest

from schemas import commands as c
from schemas import events as ev
from streams.domain import PartitionState, decide_folded, evolve, tick_folded
from streams.domain.archive import flushed
from streams.domain.errors import UnknownCommandError
from streams.state_codec import dump_changes, open_state
from tests.support.dict_store import DictStore
from tests.support.domain_walks import CFG, drive_to_the_end, random_walk
from tests.support.gwt import Harness, of, register, submit


def _seen(state: PartitionState, event: ev.Event) -> Any:
    """What a side record of ``event`` may read: its task and the session it names."""
    task_id = getattr(event, "task_id", None)
    session_id = getattr(event, "session_id", None)
    task = state.task(task_id) if isinstance(task_id, str) else None
    session = state.sessions.get(session_id) if isinstance(session_id, str) else None
    return pickle.dumps((type(event).__name__, task, session))


class TwinHarness(Harness):
    """Each step is decided the pure way (the harness) and, on a twin state with a store of
    its own, the folded way; after every step the two must be equal in every respect."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.twin_store = DictStore()
        self.twin = open_state(self.twin_store)
        self.steps = 0

    def do(self, command: c.Command, at: int | None = None) -> list[ev.Event]:
        expected, seen = self._pure(lambda: super(TwinHarness, self).do(command, at))
        observed: list[Any] = []
        folded = decide_folded(
            command, self.twin, self.now, self.config, lambda s, e: observed.append(_seen(s, e))
        )
        return self._compare(expected, seen, folded, observed)

    def tick(self, at: int) -> list[ev.Event]:
        expected, seen = self._pure(lambda: super(TwinHarness, self).tick(at))
        observed: list[Any] = []
        folded = tick_folded(self.twin, at, self.config, lambda s, e: observed.append(_seen(s, e)))
        return self._compare(expected, seen, folded, observed)

    def _pure(self, step: Any) -> tuple[list[ev.Event], list[Any]]:
        """The pure step, and what a side record could read after each of its events."""
        seen: list[Any] = []
        apply = self.apply

        def evolving(events: list[ev.Event]) -> list[ev.Event]:
            for event in events:
                self.state = evolve(self.state, event)
                seen.append(_seen(self.state, event))
            self.store.write(dump_changes(self.state))
            flushed(self.state)
            self.log.extend(events)
            return events

        self.apply = evolving  # type: ignore[method-assign]
        try:
            return step(), seen
        finally:
            self.apply = apply  # type: ignore[method-assign]

    def _compare(
        self, expected: list[ev.Event], seen: list[Any], folded: list[ev.Event], observed: list[Any]
    ) -> list[ev.Event]:
        self.steps += 1
        assert folded == expected, "the folded decision gave other events"
        assert observed == seen, "the observer saw another state than evolve reaches"
        self.twin_store.write(dump_changes(self.twin))
        flushed(self.twin)
        assert self.twin == self.state
        assert self.twin.indices() == self.state.indices()
        assert self.twin_store.data == self.store.data, "the stores differ"
        assert list(self.twin.retired_until(2**63 - 1)) == list(self.state.retired_until(2**63 - 1))
        horizon = self.now + 10**9
        assert self.twin.due_timers(horizon) == self.state.due_timers(horizon)
        assert self.twin.evictable == self.state.evictable
        assert set(self.twin.tasks) == set(self.state.tasks), "memory holds other tasks"
        return expected


@pytest.mark.parametrize("seed", range(10))
def test_folded_decisions_match_decide_then_evolve_on_random_walks(seed: int) -> None:
    rng = random.Random(1000 + seed)
    strategy = ["session-aware", "capability-based", "least-loaded", "round-robin"][seed % 4]
    h = TwinHarness(replace(CFG, dispatch_strategy=strategy))  # type: ignore[arg-type]
    for _ in random_walk(rng, h, steps=200):
        pass
    drive_to_the_end(h)
    h.tick(h.now + 10 * 24 * 3_600_000)  # past retention: finished work is forgotten
    assert h.steps > 200
    assert of(h.log, ev.TaskCompleted)
    assert of(h.log, ev.TaskAssigned)
    assert of(h.log, ev.TasksForgotten), "the walk did reach retention"


def test_a_rule_that_raises_leaves_the_state_as_it_was() -> None:
    h = Harness(CFG)
    h.do(register("s1", max_concurrent=2))
    h.do(submit("t1", operation="workflow_trigger"))
    before = h.state.indices(), dict(h.state.tasks), dict(h.state.sessions)

    class Unknown(c.Command):
        pass

    with pytest.raises(UnknownCommandError):
        decide_folded(Unknown(client_id="A"), h.state, h.now + 5, h.config)
    assert (h.state.indices(), dict(h.state.tasks), dict(h.state.sessions)) == before
    # and a journal is not left open: the next decision works
    assert decide_folded(submit("t2", operation="workflow_trigger"), h.state, h.now + 10, h.config)
