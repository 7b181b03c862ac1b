"""What the broker can do, asked once per process: the broker's profile.

Apache Kafka (and Confluent Cloud, MSK, Redpanda) grant the idempotent producer, answer a
fetch as soon as a record is there, and answer ListOffsets with the log end. The embedded
broker (Tansu) does none of that: InitProducerId fails with UnknownServerError, every fetch is
held for its full wait, fetches come back empty once a partition holds many record batches, and
ListOffsets answers the last batch's base offset + 1, and a group whose members carry a
``group.instance.id`` assigns nothing for many seconds. The workarounds for those live in
:mod:`streams.kafka.fetch_wait` and are switched on by this profile only.

``TASKSTREAM_KAFKA_BROKER`` (``auto``, the default; ``kafka``; ``embedded``) overrides the
probe. ``auto`` sends InitProducerId to a bootstrap server over PLAINTEXT; behind SASL or TLS
(managed clusters) the broker is taken to be Kafka.
"""

from __future__ import annotations

import logging
import struct
import time
from dataclasses import dataclass

from streams.kafka.process import kafka_request
from streams.settings import Settings

__all__ = ["EMBEDDED", "KAFKA", "BrokerProfile", "broker_profile", "probe_init_producer_id"]

log = logging.getLogger(__name__)

UNKNOWN_SERVER_ERROR = -1
# A broker that has just started loads its transaction coordinator first: ask again.
_RETRIABLE = frozenset(
    {14, 15, 16}
)  # COORDINATOR_LOAD_IN_PROGRESS, _NOT_AVAILABLE, NOT_COORDINATOR
_RETRY_FOR_S = 15.0


@dataclass(frozen=True, slots=True)
class BrokerProfile:
    name: str
    idempotent_producer: bool
    """InitProducerId is granted: producers run with ``enable_idempotence``."""
    holds_fetches: bool
    """A fetch is answered only when its wait expires, records or not: the wait is the floor
    of every hop's latency, so hot-path consumers keep it short. Kafka answers at once."""
    starves_fetches: bool
    """Fetches come back empty when the broker cannot list a partition's batches within the
    wait: consumers widen the wait while that lasts (``FetchWait``)."""
    short_list_offsets: bool
    """ListOffsets answers short of the log end: the end is read from a fetch's high
    watermark."""
    static_membership: bool
    """Consumer groups keep a member by its ``group.instance.id`` (KIP-345): a restarted
    member rejoins under its id at once, and leaves by it (``streams.kafka.membership``)."""


KAFKA = BrokerProfile(
    "kafka",
    idempotent_producer=True,
    holds_fetches=False,
    starves_fetches=False,
    short_list_offsets=False,
    static_membership=True,
)
EMBEDDED = BrokerProfile(
    "embedded",
    idempotent_producer=False,
    holds_fetches=True,
    starves_fetches=True,
    short_list_offsets=True,
    static_membership=False,
)

_cache: dict[tuple[str, str], BrokerProfile] = {}


def probe_init_producer_id(host: str, port: int, timeout_s: float = 2.0) -> int | None:
    """The error code of an InitProducerId v0 (no transactional id) sent to ``host:port``, or
    None when the broker cannot be asked."""
    request = struct.pack(">hhih2shi", 22, 0, 11, 2, b"ts", -1, 60_000)
    data = kafka_request(host, port, request, timeout_s)
    if data is None or len(data) < 10:
        return None
    correlation, _throttle, error = struct.unpack(">iih", data[:10])
    return int(error) if correlation == 11 else None


def _detect(settings: Settings) -> BrokerProfile | None:
    if settings.kafka_security_protocol != "PLAINTEXT":
        return KAFKA
    for server in (settings.kafka_bootstrap_servers or "").split(","):
        host, _, port = server.strip().rpartition(":")
        if not host or not port.isdigit():
            continue
        error = probe_init_producer_id(host.strip("[]"), int(port))
        deadline = time.monotonic() + _RETRY_FOR_S
        while error in _RETRIABLE and time.monotonic() < deadline:
            time.sleep(0.1)
            error = probe_init_producer_id(host.strip("[]"), int(port))
        if error is None or error in _RETRIABLE:
            continue
        if error == 0:
            return KAFKA
        if error == UNKNOWN_SERVER_ERROR:
            return EMBEDDED
        # Kafka that will not grant a producer id here (ACLs, an old version): no idempotence.
        log.warning(
            "the broker refuses InitProducerId (error %d): producers run without idempotence",
            error,
        )
        return BrokerProfile(
            "kafka",
            idempotent_producer=False,
            holds_fetches=False,
            starves_fetches=False,
            short_list_offsets=False,
            static_membership=True,
        )
    return None


def broker_profile(settings: Settings) -> BrokerProfile:
    """The profile of the configured broker, probed once per process and bootstrap list. A
    broker that cannot be reached yet is taken to be Kafka, without caching the guess."""
    choice = settings.kafka_broker
    if choice == "kafka":
        return KAFKA
    if choice == "embedded":
        return EMBEDDED
    key = (settings.kafka_bootstrap_servers or "", settings.kafka_security_protocol)
    cached = _cache.get(key)
    if cached is not None:
        return cached
    detected = _detect(settings)
    if detected is None:
        return KAFKA
    _cache[key] = detected
    log.debug("broker at %s: %s", key[0], detected)
    return detected
