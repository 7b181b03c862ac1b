"""``taskstream run`` restarts a dead part: the backoff doubles while it keeps dying soon after
its start, and starts over once it had run for a while."""

from __future__ import annotations

from streams.cli.supervisor import STABLE_S, Part, _schedule_restart, restart_backoff


def test_the_backoff_doubles_up_to_its_cap() -> None:
    assert [restart_backoff(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]


def test_a_part_dying_soon_again_waits_longer_and_a_stable_one_starts_over() -> None:
    part = Part("delay", ["delay"], started_at=100.0)
    _schedule_restart(part, 101.0)
    assert (part.restarts, part.restart_at) == (1, 102.0)
    part.started_at = 102.0
    _schedule_restart(part, 103.0)
    assert (part.restarts, part.restart_at) == (2, 105.0)
    part.started_at = 105.0
    _schedule_restart(part, 105.0 + STABLE_S)  # it ran a minute: healthy, back to 1 s
    assert (part.restarts, part.restart_at) == (1, 106.0 + STABLE_S)
    assert part.proc is None
