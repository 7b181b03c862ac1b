"""Child processes that serve Kafka on loopback: free ports, dying with the parent, and the
first question to ask a broker (does it answer ApiVersions).

Shared by the embedded broker manager and the Apache Kafka launcher, and by the supervisor and
the soak for the parts they start.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import time

from streams.errors import BrokerError

__all__ = ["answers_api_versions", "die_with_parent", "free_loopback_port", "wait_for_broker"]


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
