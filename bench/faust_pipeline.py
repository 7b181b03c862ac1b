"""The baseline peer: the trivial pipeline as a faust-streaming agent with a RocksDB table.

Per event, the same work as ``bench.pipeline.HeartbeatCounter``: Avro-decode the
``SessionHeartbeat`` (pydantic validation included), build a ``SessionHeartbeatReceived``,
count it per client in a RocksDB-backed table (which writes a changelog record), Avro-encode
it and send it to the sink. Timed from the first event until ``COUNT`` events are handled and
the producer is flushed.

faust owns its event loop, so the benchmark runs this module as a separate process:
``python -m bench.faust_pipeline BOOTSTRAP SOURCE SINK COUNT RESULT_FILE DATA_DIR``;
it writes ``{"events": n, "seconds": s}`` to RESULT_FILE and exits.

The harness creates the table's changelog topic with the source's partitions first: faust may
not declare topics here, and Apache Kafka would auto-create it with the broker's default of one
partition, which faust refuses (``PartitionsMismatch``) for a four-partition source.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from bench.common import BenchResult

__all__ = ["INSTALL_HINT", "faust_installed", "run_faust"]

INSTALL_HINT = "pip install 'taskstream[bench]' (faust-streaming)"

_ROOT = Path(__file__).resolve().parents[1]


def faust_installed() -> bool:
    return importlib.util.find_spec("faust") is not None


def main(argv: list[str]) -> None:
    import faust

    from schemas.codec import CODEC
    from schemas.commands import SessionHeartbeat
    from schemas.events import SessionHeartbeatReceived

    bootstrap, source_name, sink_name, count_s, result_file, data_dir, app_id = argv
    count = int(count_s)
    app = faust.App(
        app_id,
        broker=f"kafka://{bootstrap}",
        store="rocksdb://",
        datadir=data_dir,
        value_serializer="raw",
        key_serializer="raw",
        topic_partitions=4,
        topic_allow_declare=False,
        web_enabled=False,
        producer_acks=-1,
        broker_session_timeout=10,
        broker_heartbeat_interval=1,
    )
    source = app.topic(source_name, key_type=bytes, value_type=bytes, partitions=4)
    sink = app.topic(sink_name, key_type=bytes, value_type=bytes, partitions=4)
    table = app.Table("counts", default=int, partitions=4)
    seen = {"n": 0, "start": 0.0}

    @app.agent(source)
    async def pipeline(stream: Any) -> None:
        async for event in stream.events():
            if seen["n"] == 0:
                seen["start"] = time.perf_counter()
            command = CODEC.decode_as(event.value, SessionHeartbeat)
            received = SessionHeartbeatReceived(
                client_id=command.client_id,
                occurred_at_ms=int(event.message.timestamp * 1000),
                session_id=command.session_id,
            )
            table[command.client_id] += 1
            await sink.send(key=event.key, value=CODEC.encode(received))
            seen["n"] += 1
            if seen["n"] >= count:
                await app.producer.flush()
                elapsed = time.perf_counter() - seen["start"]
                _write_result(result_file, int(seen["n"]), elapsed)
                sys.stdout.flush()
                os._exit(0)

    sys.argv = [sys.argv[0], "worker", "-l", "warn"]
    app.main()


def _spawn(argv: list[str], log_file: Path) -> subprocess.Popen[bytes]:
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "bench.faust_pipeline", *argv],
            cwd=_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def _write_result(path: str, events: int, seconds: float) -> None:
    with open(path, "w") as fh:
        json.dump({"events": events, "seconds": seconds}, fh)


def _read_result(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    result: dict[str, Any] = json.loads(path.read_text())
    return result


async def run_faust(
    bootstrap: str,
    source: str,
    sink: str,
    count: int,
    work_dir: Path,
    timeout_s: float = 900.0,
    partitions: int = 4,
) -> BenchResult:
    """Run the faust agent over the first ``count`` records of ``source`` in a subprocess."""
    if not faust_installed():
        return BenchResult("faust", "not installed", detail=INSTALL_HINT)
    from bench.common import create_topics

    result_file = work_dir / "faust-result.json"
    log_file = work_dir / "faust.log"
    app_id = f"bench-faust-{uuid.uuid4().hex[:8]}"
    await create_topics(bootstrap, [f"{app_id}-counts-changelog"], partitions)
    data_dir = str(work_dir / "faust-data")
    argv = [bootstrap, source, sink, str(count), str(result_file), data_dir, app_id]
    proc = _spawn(argv, log_file)
    try:
        await asyncio.to_thread(proc.wait, timeout_s)
    except subprocess.TimeoutExpired:
        return BenchResult(
            "faust", "failed", detail=f"no result within {timeout_s:.0f}s; see {log_file}"
        )
    finally:
        if proc.poll() is None:
            proc.kill()
            await asyncio.to_thread(proc.wait)
    result = _read_result(result_file)
    if result is None:
        return BenchResult(
            "faust", "failed", detail=f"exited with {proc.returncode}; see {log_file}"
        )
    return BenchResult(
        "faust",
        "ok",
        events=int(result["events"]),
        seconds=float(result["seconds"]),
        detail="faust-streaming agent: Avro decode, RocksDB table, Avro encode, send",
    )


if __name__ == "__main__":
    main(sys.argv[1:])
