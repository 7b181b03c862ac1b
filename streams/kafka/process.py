"""Child processes that serve Kafka on loopback: free ports, dying with the parent, stopping,
freezing, and the raw requests asked of a broker before any client runs (ApiVersions,
Metadata, InitProducerId: :func:`kafka_request`).

Shared by the embedded broker manager and the Apache Kafka launcher, and by the supervisor and
the soak for the parts they start.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import struct
import subprocess
import time
from types import TracebackType
from typing import Self

from streams.errors import BrokerError

__all__ = [
    "BrokerProcess",
    "answers_api_versions",
    "die_with_parent",
    "free_loopback_port",
    "kafka_request",
    "wait_for_broker",
]


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def die_with_parent() -> None:
    """In the child before exec: ask Linux to SIGKILL us when the parent dies.

    Linux ties this to the thread that forked, so start brokers from a long-lived thread.
    """
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
    except OSError:  # not Linux: the context manager still stops the broker
        pass


def answers_api_versions(host: str, port: int) -> bool:
    """True when the broker answers an ApiVersions request (the first thing clients send)."""
    # ApiVersions v0: size, api_key=18, api_version=0, correlation_id=1, client_id="ts"
    body = (18).to_bytes(2, "big") + (0).to_bytes(2, "big") + (1).to_bytes(4, "big")
    body += (2).to_bytes(2, "big") + b"ts"
    request = len(body).to_bytes(4, "big") + body
    try:
        with socket.create_connection((host, port), timeout=0.5) as sock:
            sock.sendall(request)
            header = sock.recv(8)
            return len(header) >= 8 and int.from_bytes(header[4:8], "big") == 1
    except OSError:
        return False


async def wait_for_broker(servers: str, timeout_s: float = 10.0) -> None:
    """Raise ``BrokerError`` unless some bootstrap server answers within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    hosts = [s.rsplit(":", 1) for s in servers.split(",")]
    while time.monotonic() < deadline:
        for host, port in hosts:
            if await asyncio.to_thread(answers_api_versions, host, int(port)):
                return
        await asyncio.sleep(0.1)
    raise BrokerError(f"no Kafka broker answers at {servers}")


def kafka_request(host: str, port: int, request: bytes, timeout_s: float = 1.0) -> bytes | None:
    """Send one size-framed Kafka request (header and body, unframed) and return the response
    without its size prefix, or None when the broker cannot be asked or hangs up."""

    def read(sock: socket.socket, size: int) -> bytes | None:
        data = b""
        while len(data) < size:
            chunk = sock.recv(size - len(data))
            if not chunk:
                return None
            data += chunk
        return data

    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.sendall(struct.pack(">i", len(request)) + request)
            head = read(sock, 4)
            return None if head is None else read(sock, struct.unpack(">i", head)[0])
    except OSError:
        return None


class BrokerProcess:
    """What every broker this package starts shares: its process (in a session of its own,
    so a stop reaches its children too), a bounded stop, SIGKILL, freezing for fault tests, and
    use as a (sync) context manager. Subclasses start the process into ``_proc``."""

    _proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 20.0) -> None:
        raise NotImplementedError

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self, timeout_s: float = 5.0) -> None:
        """SIGTERM to the broker's process group, SIGKILL after ``timeout_s``."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def kill(self) -> None:
        """SIGKILL, for crash tests."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def pause(self) -> None:
        """Freeze the broker (SIGSTOP), for fault tests."""
        if self._proc is not None:
            os.kill(self._proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self._proc is not None:
            os.kill(self._proc.pid, signal.SIGCONT)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
