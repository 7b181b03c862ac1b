"""Hostile input for the fuzz suites: raw Avro records built field by field (so a payload can
be any string, a JSON bomb included), mutations of valid records, and a processor harness
that runs the real processing cycle (``streams.runtime.processing.Processor``) without Kafka.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from io import BytesIO
from typing import Any

from fastavro import schemaless_writer
from hypothesis import strategies as st

from schemas import commands as cmd
from schemas.codec import CODEC, MAGIC
from schemas.records import DeadLetter
from streams.distributor import Distributor
from streams.runtime.partition import PartitionRun
from streams.runtime.processing import Processor, RuntimeTopics
from streams.runtime.store import StoredOffsets
from streams.settings import Settings

TOPICS = RuntimeTopics("f.commands", "f.events")
CLIENT = "fuzz-client"

# Strings that broke parsers and renderers somewhere: NUL, bidi overrides, zero-width and
# combining marks, emoji (astral plane), a BOM, format strings, markup, path tricks.
HOSTILE_STRINGS = (
    "",
    "\x00",
    "a\x00b",
    "\u202etxt.exe",
    "\u2066\u2067\u2068\u2069\u200f",
    "\u200b\u200d\ufeff",
    "Z\u0351\u0363\u0334" * 50,
    "😀👩‍👩‍👧‍👦🏳️‍🌈",
    "%s%n%x{0}{}",
    "<script>alert(1)</script>",
    "../../etc/passwd",
    "\r\n\r\nX-Injected: 1",
    "'; DROP TABLE tasks; --",
    "\U0010ffff",
    "x" * 70_000,
)

# JSON documents a submitter could send as a payload (the Avro field is a string).
JSON_BOMBS = (
    "[" * 50_000 + "]" * 50_000,
    '{"a":' * 5_000 + "1" + "}" * 5_000,
    '{"a":' + "[" * 63 + "]" * 63 + "}",  # just under the input depth limit
    '{"a":' + "[" * 64 + "]" * 64 + "}",  # just over it
    '{"a":"\\ud800"}',  # an unpaired surrogate escape
    '{"\\udfff":1}',
    '{"a":"\\ud83d\\ude00"}',  # a paired one: an emoji
    '{"a":' + "9" * 5_000 + "}",  # over Python's int-from-string digit limit
    '{"a":1e999,"b":NaN,"c":-Infinity}',
    '{"a":1,"a":2}',
    "[]",
    "null",
    "",
    "{",
    '{"a":"\x00"}',
    "{" + ",".join(f'"k{i}":{i}' for i in range(20_000)) + "}",
    '{"bearerToken":"sk-live-123","headers":{"Authorization":"Bearer abc.def"}}',
)


def raw_record(model: type[Any], fields: dict[str, Any]) -> bytes:
    """An Avro single-object record of ``model`` written straight from ``fields``, bypassing
    the pydantic model (so it can hold what the model would refuse)."""
    writer = CODEC._writers[model]  # the writer schema of the current version
    buf = BytesIO()
    buf.write(writer.header)
    schemaless_writer(buf, writer.schema, fields)
    return buf.getvalue()


def submit_fields(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "client_id": CLIENT,
        "task_id": "t-1",
        "operation": "api_call",
        "payload": "{}",
        "priority": None,
        "max_retries": None,
        "timeout_ms": None,
        "scheduled_for_ms": None,
        "requires_review": False,
        "depends_on": [],
        "capabilities": [],
    }
    values.update(overrides)
    return values


def valid_records() -> list[bytes]:
    """One valid record of every command type, about tasks and sessions of ``CLIENT``."""
    return [
        CODEC.encode(c)
        for c in (
            cmd.SubmitTask(client_id=CLIENT, task_id="v-1", operation="contact_create"),
            cmd.SubmitTask(
                client_id=CLIENT, task_id="v-2", operation="api_call", payload={"u": "x"}
            ),
            cmd.CancelTask(client_id=CLIENT, task_id="v-1"),
            cmd.ApproveTask(client_id=CLIENT, task_id="v-1"),
            cmd.RejectTask(client_id=CLIENT, task_id="v-1", reason="no"),
            cmd.ExpediteTask(client_id=CLIENT, task_id="v-1"),
            cmd.RegisterSession(client_id=CLIENT, session_id="s-1", agent_id="a", max_concurrent=3),
            cmd.ReleaseSession(client_id=CLIENT, session_id="s-1"),
            cmd.SessionHeartbeat(client_id=CLIENT, session_id="s-1"),
            cmd.TaskStarted(client_id=CLIENT, task_id="v-1", fencing_token=1),
            cmd.ReportProgress(client_id=CLIENT, task_id="v-1", fencing_token=1, progress=0.5),
            cmd.ReportResult(client_id=CLIENT, task_id="v-1", fencing_token=1, success=True),
            cmd.ReportResult(
                client_id=CLIENT,
                batch_id="b-1",
                fencing_token=2,
                success=False,
                items=[cmd.ItemResult(task_id="v-1", success=False, error="e")],
            ),
            cmd.RetryDue(client_id=CLIENT, task_id="v-1", attempt=1, due_at_ms=5),
        )
    ]


VALID = valid_records()
FINGERPRINTS = sorted({r[2:10] for r in VALID})


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid record damaged the ways a wire damages: flipped bytes, cut, extended, another
    or an unknown writer fingerprint, a damaged magic."""
    data = bytearray(draw(st.sampled_from(VALID)))
    kind = draw(
        st.sampled_from(["flip", "truncate", "extend", "fingerprint", "alien", "magic", "splice"])
    )
    if kind == "flip":
        for _ in range(draw(st.integers(1, 4))):
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= draw(st.integers(1, 255))
    elif kind == "truncate":
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif kind == "extend":
        data += draw(st.binary(min_size=1, max_size=64))
    elif kind == "fingerprint":  # the body of one command under another's schema
        data[2:10] = draw(st.sampled_from(FINGERPRINTS))
    elif kind == "alien":
        data[2:10] = draw(st.binary(min_size=8, max_size=8))
    elif kind == "magic":
        data[:2] = draw(st.binary(min_size=2, max_size=2))
    else:
        other = draw(st.sampled_from(VALID))
        cut = draw(st.integers(2, min(len(data), len(other))))
        data = data[:cut] + other[cut:]
    return bytes(data)


def random_bytes() -> st.SearchStrategy[bytes]:
    header = st.sampled_from(FINGERPRINTS).map(lambda fp: MAGIC + fp)
    return st.one_of(
        st.binary(max_size=512),
        st.tuples(header, st.binary(max_size=256)).map(lambda p: p[0] + p[1]),
    )


hostile_text = st.one_of(st.sampled_from(HOSTILE_STRINGS), st.text(max_size=64))


@st.composite
def hostile_submit(draw: st.DrawFn) -> bytes:
    """A SubmitTask whose strings and payload are hostile (valid Avro all the same)."""
    payload = draw(
        st.one_of(
            st.sampled_from(JSON_BOMBS),
            st.dictionaries(hostile_text, hostile_text, max_size=4).map(
                lambda d: __import__("json").dumps(d)
            ),
        )
    )
    return raw_record(
        cmd.SubmitTask,
        submit_fields(
            client_id=draw(st.one_of(st.just(CLIENT), hostile_text)),
            task_id=draw(hostile_text),
            operation=draw(
                st.one_of(st.sampled_from(["api_call", "contact_create"]), hostile_text)
            ),
            payload=payload,
            priority=draw(st.one_of(st.none(), st.integers(-(2**31), 2**31 - 1))),
            max_retries=draw(st.one_of(st.none(), st.integers(-5, 5))),
            timeout_ms=draw(st.one_of(st.none(), st.integers(-(2**40), 2**40))),
            scheduled_for_ms=draw(st.one_of(st.none(), st.integers(-(2**62), 2**62))),
            depends_on=draw(st.lists(hostile_text, max_size=3)),
            capabilities=draw(st.lists(hostile_text, max_size=3)),
        ),
    )


# -- a processor without Kafka ---------------------------------------------------------------


def settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "kafka_bootstrap_servers": "unused:9092",
        "topic_prefix": "f",
        "batch_window_ms": 0,
    }
    values.update(overrides)
    return Settings(**values)


@dataclass
class Record:
    topic: str
    partition: int
    offset: int
    timestamp: int
    value: bytes | None
    key: bytes | None = None


@dataclass
class Sink:
    records: list[tuple[str, bytes | None, bytes]] = field(default_factory=list)
    ends: dict[tuple[str, int], int] = field(default_factory=dict)

    def add(
        self, topic: str, partition: int | None, key: bytes | None, value: bytes, headers: Any = ()
    ) -> None:
        self.records.append((topic, key, value))
        if partition is not None:
            self.ends[(topic, partition)] = self.ends.get((topic, partition), 0) + 1

    async def flush(self) -> dict[tuple[str, int], int]:
        return dict(self.ends)

    async def place(self, topic: str, key: bytes | None) -> int:
        return 0

    async def position(self, topic: str, partition: int) -> int:
        return self.ends.get((topic, partition), 0)

    def values(self, topic: str) -> list[bytes]:
        return [v for t, _, v in self.records if t == topic]


class Store:
    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}

    def write(self, changes: Any, offsets: StoredOffsets, staged: Any = ()) -> None:
        for key, value in changes:
            if value is None:
                self.data.pop(key, None)
            else:
                self.data[key] = value

    def unstage(self, output_ids: Any) -> None:
        pass

    def close(self) -> None:
        pass

    def state_items(self) -> Iterator[tuple[bytes, bytes]]:
        return self.items_from(b"")

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)

    def items_from(self, key: bytes) -> Iterator[tuple[bytes, bytes]]:
        return iter([(k, self.data[k]) for k in sorted(self.data) if k >= key])


class Harness:
    """The real ``Processor`` and ``Distributor`` over one partition, with in-memory I/O."""

    def __init__(self, app: Distributor | None = None) -> None:
        self.app = app or Distributor(settings())
        self.settings = self.app.settings
        self.sink = Sink()
        self.store = Store()

        async def commit(offsets: dict[int, int]) -> None:
            return None

        self.processor: Processor[Any] = Processor(self.app, TOPICS, self.sink, commit)
        self.run: PartitionRun[Any] = PartitionRun(
            0, self.store, self.app.load_state(self.store), 0, 0
        )
        self.offset = 0
        self.clock = 1_000_000

    async def feed(self, *values: bytes | None) -> list[Record]:
        records = []
        for value in values:
            records.append(Record(TOPICS.commands, 0, self.offset, self.clock, value))
            self.offset += 1
            self.clock += 1
        self.processor.apply_commands(self.run, records)
        await self.processor.complete()
        return records

    def dead_letters(self) -> list[DeadLetter]:
        return [CODEC.decode_as(v, DeadLetter) for v in self.sink.values("f.dlq")]

    def events(self) -> list[Any]:
        return [self.app.decode_event(v) for v in self.sink.values(TOPICS.events)]
