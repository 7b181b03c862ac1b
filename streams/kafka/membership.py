"""Consumer-group membership: static where it is safe, and a prompt leave on a clean stop.

A dynamic member that dies stays in its group until its session times out, and a restarted
process joins as a new member whose join waits for the dead one to expire: a processor or a
delay agent SIGKILLed and restarted at once processed nothing for about 18.5 s. A *static*
member (KIP-345, ``group.instance.id``) that rejoins under the same id replaces its old
self at once and gets its partitions back without a rebalance.

A static id must be stable across restarts of one instance and never held by two instances
at once: two members with one id fence each other, and until the older one notices, both
fetch the same partitions (two processors would both write their events). So an id is

- ``TASKSTREAM_INSTANCE_ID`` when set (a pod or host name; the operator keeps it unique), or
- a random id kept in the data directory (``members/<group>.<part>.id``) and locked with
  ``flock`` for as long as the member lives: stable across restarts of the instance that owns
  the data directory (the processor's state lives there too), and a second process on the same
  directory finds it locked and joins as a dynamic member instead of taking the id.

A broker without static membership (the embedded one) gets dynamic members, which aiokafka
already takes out of the group with a LeaveGroup on stop.

Why this module reaches into aiokafka (0.14): a static member that stops cleanly must leave,
or its partitions wait a whole session timeout for a new owner. aiokafka sends no LeaveGroup
when ``group_instance_id`` is set, and its LeaveGroup request has only v0/v1, which cannot
name a static member. So :class:`GroupConsumer` sends LeaveGroup v3 (the members array of
KIP-345) itself, from the point in ``stop()`` where aiokafka would have left: after the
coordination and heartbeat tasks end (a heartbeat after the leave would rejoin), before the
connection closes. It replaces the coordinator's ``_maybe_leave_group`` on that instance for
that call only.

And a static member must know when another process took its id. aiokafka's Heartbeat (v0/v1)
does not name the instance, so Kafka can only answer UNKNOWN_MEMBER_ID; aiokafka then rejoins
under the same id and takes it back, and two processes with one id (a misconfigured
``TASKSTREAM_INSTANCE_ID``) take the partitions from each other on every heartbeat, both
processing them. So a static :class:`GroupConsumer` heartbeats with Heartbeat v3 (it names the
instance); Kafka answers FENCED_INSTANCE_ID to the replaced member, which then fails with
:class:`FencedInstanceError` from its next ``getmany`` instead of rejoining. Its other answers
are handled as aiokafka handles them.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import uuid
from pathlib import Path
from typing import IO, Any

from aiokafka import AIOKafkaConsumer
from aiokafka import errors as kafka_errors
from aiokafka.consumer.group_coordinator import GroupCoordinator
from aiokafka.errors import KafkaError, for_code
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import Array, Int16, Int32, Schema, String

from streams.errors import BrokerError
from streams.kafka.clients import consumer_kwargs
from streams.kafka.profile import broker_profile
from streams.settings import Settings

__all__ = [
    "FENCED_INSTANCE_ID",
    "FencedInstanceError",
    "GroupConsumer",
    "MemberId",
    "group_consumer",
    "member_id",
]

log = logging.getLogger(__name__)

FENCED_INSTANCE_ID = 82
"""Another member joined with this member's ``group.instance.id`` (aiokafka has no class)."""
UNKNOWN_MEMBER_ID = 25


class FencedInstanceError(BrokerError):
    """Another process joined the group with this member's static id and took its place."""


class HeartbeatResponse_v3(Response):  # type: ignore[misc]  # noqa: N801 - Kafka's naming
    API_KEY = 12
    API_VERSION = 3
    SCHEMA = Schema(("throttle_time_ms", Int32), ("error_code", Int16))


class HeartbeatRequest_v3(RequestStruct):  # type: ignore[misc]  # noqa: N801
    API_KEY = 12
    API_VERSION = 3
    RESPONSE_TYPE = HeartbeatResponse_v3
    SCHEMA = Schema(
        ("group_id", String("utf-8")),
        ("generation_id", Int32),
        ("member_id", String("utf-8")),
        ("group_instance_id", String("utf-8")),
    )


class StaticHeartbeatRequest(Request[HeartbeatRequest_v3]):  # type: ignore[misc]
    """Heartbeat naming the static member; v3, the last non-flexible version."""

    API_KEY = 12

    def __init__(self, group_id: str, generation: int, member: str, instance: str) -> None:
        self._fields = (group_id, generation, member, instance)

    def build(self, request_struct_class: type[HeartbeatRequest_v3]) -> HeartbeatRequest_v3:
        return request_struct_class(*self._fields)


class LeaveGroupResponse_v3(Response):  # type: ignore[misc]  # noqa: N801 - Kafka's naming
    API_KEY = 13
    API_VERSION = 3
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("error_code", Int16),
        (
            "members",
            Array(
                ("member_id", String("utf-8")),
                ("group_instance_id", String("utf-8")),
                ("error_code", Int16),
            ),
        ),
    )


class LeaveGroupRequest_v3(RequestStruct):  # type: ignore[misc]  # noqa: N801
    API_KEY = 13
    API_VERSION = 3
    RESPONSE_TYPE = LeaveGroupResponse_v3
    SCHEMA = Schema(
        ("group_id", String("utf-8")),
        ("members", Array(("member_id", String("utf-8")), ("group_instance_id", String("utf-8")))),
    )


class StaticLeaveGroupRequest(Request[LeaveGroupRequest_v3]):  # type: ignore[misc]
    """LeaveGroup naming members by (member id, group instance id); v3, the last
    non-flexible version, which every broker with static membership answers."""

    API_KEY = 13

    def __init__(self, group_id: str, members: list[tuple[str, str | None]]) -> None:
        self._group_id = group_id
        self._members = members

    def build(self, request_struct_class: type[LeaveGroupRequest_v3]) -> LeaveGroupRequest_v3:
        return request_struct_class(self._group_id, self._members)


_ID = re.compile(r"^[0-9a-f]{12}$")


class MemberId:
    """A static member id and, when it came from the data directory, the lock that keeps
    it ours; :meth:`release` gives it up (on the consumer's stop)."""

    def __init__(self, value: str | None, lock: IO[bytes] | None = None) -> None:
        self.value = value
        self._lock = lock

    def release(self) -> None:
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.close()


def member_id(settings: Settings, group_id: str, part: str) -> MemberId:
    """The static id of ``part``'s member of ``group_id`` (see the module docstring);
    ``value`` None means a dynamic member."""
    if not broker_profile(settings).static_membership:
        return MemberId(None)
    if settings.instance_id:
        return MemberId(f"{part}-{settings.instance_id}")
    claimed = _claim(settings.data_dir / "members" / f"{_file_safe(group_id)}.{part}.id")
    if claimed is None:
        return MemberId(None)
    value, lock = claimed
    return MemberId(f"{part}-{value}", lock)


def _file_safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def _claim(path: Path) -> tuple[str, IO[bytes]] | None:
    """Lock ``path`` and read its id (writing a new one the first time); None when another
    process holds it or it cannot be kept."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+b")  # noqa: SIM115 - held until the member stops
    except OSError as exc:
        log.warning("cannot keep a member id at %s (%s): joining as a dynamic member", path, exc)
        return None
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        handle.seek(0)
        value = handle.read().decode(errors="replace").strip()
        if not _ID.match(value):
            value = uuid.uuid4().hex[:12]
            handle.seek(0)
            handle.truncate()
            handle.write(value.encode())
            handle.flush()
            os.fsync(handle.fileno())
    except BlockingIOError:
        handle.close()
        log.info("member id %s is held by another process: joining as a dynamic member", path)
        return None
    except OSError as exc:
        handle.close()
        log.warning("cannot keep a member id at %s (%s): joining as a dynamic member", path, exc)
        return None
    return value, handle


def group_consumer(
    settings: Settings, group_id: str, *, part: str, hot_path: bool = False, **kwargs: Any
) -> GroupConsumer:
    """A consumer in ``group_id``, a static member when :func:`member_id` gives one."""
    member = member_id(settings, group_id, part)
    if member.value is not None:
        log.info("%s: static member %s of group %s", part, member.value, group_id)
    return GroupConsumer(
        member,
        **consumer_kwargs(settings, group_id, hot_path=hot_path),
        group_instance_id=member.value,
        **kwargs,
    )


class GroupConsumer(AIOKafkaConsumer):  # type: ignore[misc]
    """An aiokafka consumer whose clean stop also leaves the group as a static member, and
    gives up its member id."""

    def __init__(self, member: MemberId, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.member = member

    async def start(self) -> None:
        await super().start()
        coordinator = getattr(self, "_coordinator", None)
        if isinstance(coordinator, GroupCoordinator) and coordinator._group_instance_id:

            async def heartbeat() -> bool:
                return await _heartbeat_static(coordinator)

            coordinator._do_heartbeat = heartbeat

    async def stop(self) -> None:
        coordinator = getattr(self, "_coordinator", None)
        if isinstance(coordinator, GroupCoordinator) and coordinator._group_instance_id:

            async def leave() -> None:
                await _leave_static(coordinator)

            coordinator._maybe_leave_group = leave
        try:
            await super().stop()
        finally:
            self.member.release()


async def _heartbeat_static(coordinator: Any) -> bool:
    """aiokafka's ``_do_heartbeat`` with a request that names the instance, and a fenced
    member failing instead of rejoining."""
    group, instance = coordinator.group_id, coordinator._group_instance_id
    request = StaticHeartbeatRequest(group, coordinator.generation, coordinator.member_id, instance)
    try:
        response = await coordinator._send_req(request)
    except KafkaError as exc:
        log.error("Heartbeat send request failed: %s. Will retry.", exc)
        return False
    code = response.error_code
    if code == FENCED_INSTANCE_ID:
        raise FencedInstanceError(
            f"another process joined group {group} as static member {instance} and took its "
            "partitions: this one stops. Give each running instance its own "
            "TASKSTREAM_INSTANCE_ID (or leave it unset)."
        )
    error_type = for_code(code)
    if error_type is kafka_errors.NoError:
        return True
    if error_type in (
        kafka_errors.GroupCoordinatorNotAvailableError,
        kafka_errors.NotCoordinatorForGroupError,
    ):
        log.warning("Heartbeat failed for group %s: coordinator is not valid", group)
        coordinator.coordinator_dead()
    elif error_type is kafka_errors.RebalanceInProgressError:
        log.warning("Heartbeat failed for group %s because it is rebalancing", group)
        coordinator.request_rejoin()
        return True  # keep heartbeating while the group rebalances
    elif error_type in (kafka_errors.IllegalGenerationError, kafka_errors.UnknownMemberIdError):
        log.warning("Heartbeat failed for group %s: %s; re-joining", group, error_type.__name__)
        coordinator.reset_generation()
    elif error_type is kafka_errors.GroupAuthorizationFailedError:
        raise error_type(group)
    else:
        raise KafkaError(f"Unexpected exception in heartbeat task: {error_type()!r}")
    return False


async def _leave_static(coordinator: Any) -> None:
    """Leave as a static member (best effort, one attempt, like aiokafka's own leave)."""
    group, member, instance = (
        coordinator.group_id,
        coordinator.member_id,
        coordinator._group_instance_id,
    )
    if coordinator.generation > 0 and member:
        try:
            response = await coordinator._send_req(
                StaticLeaveGroupRequest(group, [(member, instance)])
            )
        except KafkaError as exc:
            log.warning("leaving group %s as %s failed: %r", group, instance, exc)
        else:
            codes = [response.error_code, *(code for _, _, code in response.members)]
            failed = [code for code in codes if code]
            if not failed:
                log.info("left group %s as static member %s", group, instance)
            elif set(failed) <= {FENCED_INSTANCE_ID, UNKNOWN_MEMBER_ID}:
                # Already replaced by a newer member with this id, or expired: nothing to do.
                log.info("group %s no longer holds %s as %s", group, instance, member)
            else:
                log.warning("leaving group %s as %s: %r", group, instance, for_code(failed[0])())
    coordinator.reset_generation()
