"""Static member ids: stable across restarts of one instance, never held by two at once."""

from __future__ import annotations

from pathlib import Path

from streams.kafka.membership import member_id
from streams.settings import Settings


def kafka_settings(data_dir: Path, **overrides: object) -> Settings:
    return Settings(kafka_broker="kafka", data_dir=data_dir, **overrides)  # type: ignore[arg-type]


def test_an_instance_gets_the_same_id_again_after_it_let_go(tmp_path: Path) -> None:
    settings = kafka_settings(tmp_path)
    first = member_id(settings, "g-processor", "processor")
    assert first.value is not None and first.value.startswith("processor-")
    first.release()
    again = member_id(settings, "g-processor", "processor")
    assert again.value == first.value
    again.release()


def test_a_second_member_on_one_data_dir_is_dynamic_while_the_first_holds_the_id(
    tmp_path: Path,
) -> None:
    settings = kafka_settings(tmp_path)
    holder = member_id(settings, "g-processor", "processor")
    assert holder.value is not None
    other = member_id(settings, "g-processor", "processor")
    assert other.value is None
    holder.release()


def test_ids_differ_between_data_dirs_groups_and_parts(tmp_path: Path) -> None:
    ids = []
    for data_dir, group, part in (
        (tmp_path / "a", "g-processor", "processor"),
        (tmp_path / "b", "g-processor", "processor"),
        (tmp_path / "a", "h-processor", "processor"),
        (tmp_path / "a", "g-processor-delay", "delay"),
    ):
        member = member_id(kafka_settings(data_dir), group, part)
        ids.append(member.value)
        member.release()
    assert None not in ids
    assert len(set(ids)) == len(ids)


def test_an_explicit_instance_id_names_the_member(tmp_path: Path) -> None:
    settings = kafka_settings(tmp_path, instance_id="pod-3")
    assert member_id(settings, "g-processor", "processor").value == "processor-pod-3"
    assert member_id(settings, "g-processor-delay", "delay").value == "delay-pod-3"
    assert not (tmp_path / "members").exists()


def test_the_embedded_broker_gets_dynamic_members(tmp_path: Path) -> None:
    for overrides in ({}, {"instance_id": "pod-3"}):
        settings = Settings(kafka_broker="embedded", data_dir=tmp_path, **overrides)  # type: ignore[arg-type]
        assert member_id(settings, "g-processor", "processor").value is None
