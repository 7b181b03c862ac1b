"""Projection replay: fold a pre-filled ``task.events`` into a fresh projection store.

The log is made by the decider itself (``streams.bench.workload.lifecycle_log``: sessions,
submits, assignments, starts, results, batches, failures and retries), encoded with the Avro
codec and produced to ``<prefix>.events`` on the partition the processor would use. Filling is
not timed. The rebuild (``projections.projector.rebuild``: drop the store, replay from offset 0
to the end) runs in its own process, as ``taskstream projector rebuild`` does, so its peak RSS
is the projector's alone.

Run as ``python -m streams.bench.replay rebuild --bootstrap B --prefix P --data-dir D`` to
get the rebuild alone (what the harness spawns); it prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from schemas.codec import CODEC
from streams.bench.common import BenchResult, create_topics
from streams.bench.workload import lifecycle_log
from streams.runtime.protocol import TYPE_HEADER
from streams.settings import Settings

__all__ = ["fill_events", "run_replay"]

_ROOT = Path(__file__).resolve().parents[2]
_FILL_BATCH = 5_000


async def fill_events(bootstrap: str, topic: str, tasks: int, partitions: int) -> int:
    """Produce the log of ``tasks`` tasks to ``topic``; return the number of events."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        enable_idempotence=False,
        linger_ms=5,
        max_batch_size=1_048_576,
        max_request_size=4_194_304,
    )
    await producer.start()
    count = 0
    try:
        futures: list[Any] = []
        for item in lifecycle_log(tasks, partitions=partitions):
            event = item.event
            futures.append(
                await producer.send(
                    topic,
                    CODEC.encode(event),
                    key=item.key,
                    partition=item.partition,
                    headers=[(TYPE_HEADER, event.TYPE.encode())],
                )
            )
            count += 1
            if len(futures) >= _FILL_BATCH:
                await asyncio.gather(*futures)
                futures = []
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return count


async def run_replay(
    bootstrap: str, prefix: str, work_dir: Path, *, tasks: int, partitions: int = 4
) -> BenchResult:
    """Fill ``<prefix>.events`` with ``tasks`` tasks' lifecycles, then time a rebuild."""
    topic = f"{prefix}.events"
    await create_topics(bootstrap, [topic], partitions)
    print(f"replay: pre-filling {topic} with the log of {tasks} tasks ...", file=sys.stderr)
    filled = await fill_events(bootstrap, topic, tasks, partitions)
    log_path = work_dir / "rebuild.log"
    command = [
        sys.executable,
        "-m",
        "streams.bench.replay",
        "rebuild",
        "--bootstrap",
        bootstrap,
        "--prefix",
        prefix,
        "--data-dir",
        str(work_dir / "data"),
    ]
    done = await asyncio.to_thread(_run_logged, command, log_path)
    if done.returncode != 0:
        return BenchResult(
            "replay", "failed", detail=f"rebuild exited with {done.returncode}; see {log_path}"
        )
    figures = json.loads(done.stdout.decode().strip().splitlines()[-1])
    if figures["events"] != filled:
        return BenchResult(
            "replay", "failed", detail=f"folded {figures['events']} of {filled} events"
        )
    return BenchResult(
        "replay",
        "ok",
        events=filled,
        seconds=figures["seconds"],
        detail=f"projector rebuild from {topic} ({tasks} tasks) into RocksDB",
        extra={
            "tasks": tasks,
            "peak_rss_mb": figures["peak_rss_mb"],
            "cpu_seconds": figures["cpu_seconds"],
            "rss_mb_by_events": figures.get("rss_mb_by_events", []),
        },
    )


def _run_logged(command: list[str], log_path: Path) -> subprocess.CompletedProcess[bytes]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.run(command, cwd=_ROOT, stdout=subprocess.PIPE, stderr=log, check=False)


def _rebuild_main(argv: list[str]) -> int:
    from projections.projector import rebuild

    parser = argparse.ArgumentParser(prog="python -m streams.bench.replay rebuild")
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--data-dir", required=True, type=Path)
    args = parser.parse_args(argv)
    settings = Settings(
        kafka_bootstrap_servers=args.bootstrap, topic_prefix=args.prefix, data_dir=args.data_dir
    )
    # Resident memory at every tenth of the replay: flat in the events folded means the
    # projector's memory does not grow with the number of tasks it holds.
    samples: list[tuple[int, float]] = []

    def progress(done: int, total: int) -> None:
        if total and done * 10 >= total * (len(samples) + 1):
            samples.append((done, _rss_mb()))

    cpu = time.process_time()
    started = time.perf_counter()
    report = asyncio.run(rebuild(settings, progress))
    seconds = time.perf_counter() - started
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "events": report.events,
                "seconds": seconds,
                "cpu_seconds": time.process_time() - cpu,
                "peak_rss_mb": peak_kb / 1024,
                "rss_mb_by_events": samples,
            }
        )
    )
    return 0


def _rss_mb() -> float:
    """Resident set size now (Linux ``/proc``; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, IndexError, ValueError):
        return 0.0
    return pages * resource.getpagesize() / 1024 / 1024


if __name__ == "__main__":
    if sys.argv[1:2] != ["rebuild"]:
        sys.exit("usage: python -m streams.bench.replay rebuild --bootstrap B --prefix P ...")
    sys.exit(_rebuild_main(sys.argv[2:]))
