"""The layout check (``streams.kafka.topics.layout_problems``): every problem says how to fix it."""

from __future__ import annotations

from streams.kafka.topics import layout_problems, topic_layout
from streams.settings import Settings

SETTINGS = Settings(topic_prefix="p", partitions=8)


def full(count: int = 8, **overrides: int) -> dict[str, int]:
    layout = {spec.name: count for spec in topic_layout(SETTINGS)}
    layout.update({f"p.{name.replace('_', '.')}": n for name, n in overrides.items()})
    return layout


def test_the_configured_layout_has_no_problem() -> None:
    assert layout_problems(SETTINGS, full()) == []


def test_missing_topics_say_to_run_topics_create() -> None:
    layout = full()
    del layout["p.commands"]
    assert layout_problems(SETTINGS, layout) == [
        "topic p.commands does not exist: run `taskstream topics create`"
    ]


def test_an_auto_created_commands_topic_can_grow_while_no_state_exists() -> None:
    split, count = layout_problems(SETTINGS, full(commands=1), state_exists=False)
    assert "p.commands (1 partitions) and p.events (8 partitions)" in split
    assert "`taskstream topics create` grows the smaller" in split
    assert count.startswith("topic p.commands has 1 partitions but TASKSTREAM_PARTITIONS is 8")
    problems = layout_problems(SETTINGS, {"p.commands": 1}, state_exists=False)
    assert any("no processor has written state yet, so `taskstream topics create` grows it to 8"
               in p for p in problems)  # fmt: skip


def test_a_live_log_with_another_count_is_never_grown() -> None:
    problems = layout_problems(SETTINGS, full(2), state_exists=True)
    assert any(
        "p.commands has 2 partitions but TASKSTREAM_PARTITIONS is 8; set TASKSTREAM_PARTITIONS=2"
        in p
        for p in problems
    )
    assert not any("grows" in p for p in problems)


def test_unknown_state_names_both_ways_out() -> None:
    problems = layout_problems(SETTINGS, {"p.commands": 4, "p.events": 4})
    assert any(
        "if no processor has run yet, `taskstream topics create` grows it to 8" in p
        and "otherwise set TASKSTREAM_PARTITIONS=4" in p
        for p in problems
    )


def test_more_partitions_than_configured_can_only_be_configured() -> None:
    problems = layout_problems(SETTINGS, full(12), state_exists=False)
    assert any("set TASKSTREAM_PARTITIONS=12" in p for p in problems)


def test_a_delay_tier_needs_as_many_partitions_as_the_commands_topic() -> None:
    (problem,) = layout_problems(SETTINGS, full(retry_4s=2))
    assert problem.startswith("delay tier p.retry.4s has 2 partitions, fewer than the 8")
    assert "`taskstream topics create` to grow it" in problem
    assert layout_problems(SETTINGS, full(retry_4s=16)) == []  # more is fine


def test_other_topics_may_have_any_count() -> None:
    assert layout_problems(SETTINGS, full(assignments=3, dlq=1)) == []
