"""Where the built-in handlers may send requests: public addresses, plus what
``TASKSTREAM_OUTBOUND_ALLOW`` lists.

A task's payload names the URL an ``api_call`` or a webhook goes to, so without a guard anyone
who may submit a task could make the executor call its own loopback services, the private
network or a cloud metadata endpoint (169.254.169.254) and read the answer back as the task's
output. The guard refuses every destination address that is not globally routable -- loopback,
link-local, private, shared (CGNAT), reserved, multicast, unspecified, documentation ranges, and
IPv4-mapped forms of these -- unless the allow list names it.

It is applied where the connection is made, not to the URL's text: a resolver checks every
address a host name resolves to (a name that points at 127.0.0.1 is refused like 127.0.0.1),
and a socket factory checks the address each socket connects to, which covers IP literals and
every redirect hop (aiohttp opens each hop through the same connector). Because aiohttp
connects to exactly the addresses the resolver returned, a name cannot be re-pointed between
the check and the connect.

The allow list holds IP addresses and networks (``127.0.0.1``, ``10.0.0.0/8``, ``::1``),
separated by commas or spaces -- not host names, since the check is on the address connected
to and a name can be re-pointed.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from streams.executor.errors import ExecutorError

ALLOW_VARIABLE = "TASKSTREAM_OUTBOUND_ALLOW"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class OutboundRefused(OSError):
    """A connection to a destination the policy does not allow. An ``OSError`` so aiohttp
    carries it out of its resolver and connector as the cause of its connection error."""

    def __init__(self, address: str, why: str, *, host: str | None = None) -> None:
        where = f"{host} resolves to {address}, which" if host else f"destination {address}"
        super().__init__(
            f"{where} is {why}; outbound requests go only to public addresses "
            f"unless {ALLOW_VARIABLE} lists it (for example {ALLOW_VARIABLE}={address})"
        )
        self.address = address
        self.why = why


def _kind(ip: Address) -> str | None:
    """Why ``ip`` is not a public destination, or None when it is one."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return _kind(ip.ipv4_mapped)
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local (cloud metadata lives there)"
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_multicast:
        return "multicast"
    if ip.is_reserved:
        return "reserved"
    if ip.is_private:
        return "private"
    if not ip.is_global:
        return "reserved"
    return None


class OutboundPolicy:
    """Which destination addresses requests may connect to."""

    def __init__(self, allow: Iterable[Network] = (), *, unrestricted: bool = False) -> None:
        self.allow: tuple[Network, ...] = tuple(allow)
        self.unrestricted = unrestricted

    @classmethod
    def parse(cls, text: str | None) -> OutboundPolicy:
        """The policy of an allow list such as ``"127.0.0.1, 10.0.0.0/8"``; empty: public only."""
        networks: list[Network] = []
        for entry in re.split(r"[\s,]+", text or ""):
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                raise ExecutorError(
                    f"{ALLOW_VARIABLE}: {entry!r} is not an IP address or network "
                    "(give addresses or CIDR networks such as 127.0.0.1 or 10.0.0.0/8; host "
                    "names are not accepted, the check is on the address connected to)"
                ) from None
        return cls(networks)

    @classmethod
    def open(cls) -> OutboundPolicy:
        """No restriction: only for requests whose destination an operator configured (the
        report handler's own HTTP view), never for a URL from a payload."""
        return cls(unrestricted=True)

    def refusal(self, address: str) -> OutboundRefused | None:
        """The error for connecting to ``address`` (an IP literal), or None when allowed."""
        if self.unrestricted:
            return None
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return OutboundRefused(address, "not an IP address")
        why = _kind(ip)
        if why is None:
            return None
        candidates = [ip]
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            candidates.append(ip.ipv4_mapped)
        if any(
            c in network
            for c in candidates
            for network in self.allow
            if c.version == network.version
        ):
            return None
        return OutboundRefused(str(ip), why)

    def check(self, address: str) -> None:
        refused = self.refusal(address)
        if refused is not None:
            raise refused

    def connector(self) -> aiohttp.TCPConnector:
        """A connector that resolves through the guard and checks every socket's address."""
        if self.unrestricted:
            return aiohttp.TCPConnector()
        return aiohttp.TCPConnector(resolver=GuardedResolver(self), socket_factory=self._socket)

    def _socket(self, addr_info: Any) -> socket.socket:
        family, type_, proto, _canonname, sockaddr = addr_info
        self.check(str(sockaddr[0]))
        return socket.socket(family=family, type=type_, proto=proto)


class GuardedResolver(AbstractResolver):
    """The default resolver, refusing a name when any address it resolves to is not allowed
    (a name with one public and one private address could be steered to the private one)."""

    def __init__(self, policy: OutboundPolicy) -> None:
        self._policy = policy
        self._inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        for result in results:
            refused = self._policy.refusal(result["host"])
            if refused is not None:
                raise OutboundRefused(refused.address, refused.why, host=host)
        return results

    async def close(self) -> None:
        await self._inner.close()


def refusal_in(exc: BaseException) -> OutboundRefused | None:
    """The ``OutboundRefused`` behind an aiohttp error, if that is what it is."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OutboundRefused):
            return current
        inner = getattr(current, "os_error", None)
        if isinstance(inner, OutboundRefused):
            return inner
        current = current.__cause__ or current.__context__
    return None
