"""Projection replay: fold a pre-filled ``task.events`` into a fresh projection store.

The log is made by the decider itself (``bench.workload.lifecycle_log``: sessions,
submits, assignments, starts, results, batches, failures and retries), encoded with the Avro
codec and produced to ``<prefix>.events`` on the partition the processor would use. Filling is
not timed. The rebuild (``api.projector.rebuild``: drop the store, replay from offset 0
to the end) runs in its own process, as ``taskstream projector rebuild`` does, so its peak RSS
is the projector's alone.

Run as ``python -m bench.replay rebuild --bootstrap B --prefix P --data-dir D`` to
get the rebuild alone (what the harness spawns); it prints one JSON line.

The peak RSS is the child's own high-water mark (``VmHWM``), not ``ru_maxrss``: Linux keeps
the high-water mark of the image that ``execve`` replaces, so a child spawned by the harness
reported the harness's RSS after filling (the decider's state of 1,000,000 tasks: 868 MB),
while the rebuild itself never passed 230 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from bench.common import BenchResult, create_topics, kafka_kwargs
from bench.workload import lifecycle_log
from schemas.codec import CODEC
from streams.kafka.headers import TYPE_HEADER
from streams.settings import Settings

__all__ = ["fill_events", "peak_rss_mb", "run_replay"]

_ROOT = Path(__file__).resolve().parents[1]
_FILL_BATCH = 5_000


async def fill_events(bootstrap: str, topic: str, tasks: int, partitions: int) -> int:
    """Produce the log of ``tasks`` tasks to ``topic``; return the number of events."""
    producer = AIOKafkaProducer(
        **kafka_kwargs(bootstrap),
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
        "bench.replay",
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
            "peak_rss_sampled": figures.get("peak_rss_sampled"),
            "cpu_seconds": figures["cpu_seconds"],
            "rss_mb_by_events": figures.get("rss_mb_by_events", []),
        },
    )


def _run_logged(command: list[str], log_path: Path) -> subprocess.CompletedProcess[bytes]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.run(command, cwd=_ROOT, stdout=subprocess.PIPE, stderr=log, check=False)


def _rebuild_main(argv: list[str]) -> int:
    from api.projector import rebuild

    parser = argparse.ArgumentParser(prog="python -m bench.replay rebuild")
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
    sampler = _RssSampler()

    def progress(done: int, total: int) -> None:
        sampler.folded(done, total)
        if total and done * 10 >= total * (len(samples) + 1):
            samples.append((done, _rss_mb()))

    cpu = time.process_time()
    started = time.perf_counter()
    sampler.start()
    try:
        report = asyncio.run(rebuild(settings, progress))
    finally:
        sampler.stop()
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "events": report.events,
                "seconds": seconds,
                "cpu_seconds": time.process_time() - cpu,
                # The kernel updates its high-water mark lazily (at unmaps), so a sample can
                # be a little higher.
                "peak_rss_mb": max(peak_rss_mb(), sampler.peak()["rss_mb"]),
                "peak_rss_sampled": sampler.peak(),
                "rss_mb_by_events": samples,
            }
        )
    )
    return 0


class _RssSampler:
    """RSS every 50 ms in a thread, keeping the highest sample with the phase of the rebuild
    it fell in (starting, folding, closing) and the events folded by then: a peak between
    the tenths shows up here, and where it happened."""

    INTERVAL_S = 0.05

    def __init__(self) -> None:
        self._phase = "starting"
        self._events = 0
        self._peak: tuple[float, str, int] = (0.0, "starting", 0)
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def folded(self, done: int, total: int) -> None:
        self._events = done
        self._phase = "closing" if total and done >= total else "folding"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        self._thread.join()

    def peak(self) -> dict[str, Any]:
        rss, phase, events = self._peak
        return {"rss_mb": rss, "phase": phase, "events": events}

    def _run(self) -> None:
        while True:
            rss = _rss_mb()
            if rss > self._peak[0]:
                self._peak = (rss, self._phase, self._events)
            if self._done.wait(self.INTERVAL_S):
                return


def peak_rss_mb() -> float:
    """This process's peak resident memory since it was exec'd (``VmHWM`` on Linux).

    ``ru_maxrss`` would also count the parent: execve keeps the high-water mark of the image
    it replaces. Elsewhere (no ``/proc``) ``ru_maxrss`` is the best there is."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, IndexError, ValueError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


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
        sys.exit("usage: python -m bench.replay rebuild --bootstrap B --prefix P ...")
    sys.exit(_rebuild_main(sys.argv[2:]))
