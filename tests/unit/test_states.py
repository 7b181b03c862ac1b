"""One vocabulary of task states and priority names (``schemas.states``, ``schemas.catalog``),
and the domain's states are the contract's plus one that never leaves a decision."""

from __future__ import annotations

from typing import get_args

from schemas.catalog import PRIORITY_NAMES, PriorityName
from schemas.states import ACTIVE_STATES, TASK_STATES, TERMINAL_STATES, TaskStatus
from streams.domain.state import Status


def _values(cls: type) -> set[str]:
    return {v for k, v in vars(cls).items() if k.isupper() and isinstance(v, str)}


def test_the_named_states_are_the_state_type() -> None:
    assert sorted(_values(TaskStatus)) == sorted(TASK_STATES)
    assert TERMINAL_STATES <= set(TASK_STATES) and ACTIVE_STATES <= set(TASK_STATES)
    assert not TERMINAL_STATES & ACTIVE_STATES


def test_the_domain_adds_only_the_in_decision_state() -> None:
    assert {k for k in vars(Status) if k.isupper()} == {"ATTEMPT_FAILED"}
    assert _values(Status) | _values(TaskStatus) == set(TASK_STATES) | {"attempt_failed"}
    assert Status.QUEUED == TaskStatus.QUEUED


def test_priority_names_are_the_priority_name_type() -> None:
    assert list(PRIORITY_NAMES.values()) == list(get_args(PriorityName))
    assert sorted(PRIORITY_NAMES) == [1, 2, 3, 4, 5]
