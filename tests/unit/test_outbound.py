"""The outbound guard's rule: which destination addresses are refused, and the allow list."""

from __future__ import annotations

import pytest

from streams.executor.errors import ExecutorError
from streams.executor.handlers.outbound import OutboundPolicy, OutboundRefused

REFUSED = {
    "127.0.0.1": "loopback",
    "127.8.9.10": "loopback",
    "::1": "loopback",
    "10.0.0.1": "private",
    "172.16.5.4": "private",
    "192.168.1.1": "private",
    "fd00::1": "private",
    "169.254.169.254": "link-local",
    "fe80::1": "link-local",
    "0.0.0.0": "unspecified",
    "::": "unspecified",
    "100.64.0.1": "reserved",
    "240.0.0.1": "reserved",
    "224.0.0.1": "multicast",
    "::ffff:127.0.0.1": "loopback",
    "::ffff:169.254.169.254": "link-local",
}


@pytest.mark.parametrize("address", sorted(REFUSED))
def test_non_public_destinations_are_refused_by_default(address: str) -> None:
    refused = OutboundPolicy().refusal(address)
    assert isinstance(refused, OutboundRefused)
    assert REFUSED[address] in str(refused)
    assert "TASKSTREAM_OUTBOUND_ALLOW" in str(refused)


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700::1111"])
def test_public_destinations_pass(address: str) -> None:
    assert OutboundPolicy().refusal(address) is None


def test_the_allow_list_opens_exactly_what_it_names() -> None:
    policy = OutboundPolicy.parse("127.0.0.1, 10.0.0.0/8 ::1")
    assert policy.refusal("127.0.0.1") is None
    assert policy.refusal("::ffff:127.0.0.1") is None
    assert policy.refusal("10.200.3.4") is None
    assert policy.refusal("::1") is None
    assert policy.refusal("127.0.0.2") is not None
    assert policy.refusal("192.168.0.1") is not None
    assert policy.refusal("169.254.169.254") is not None


def test_host_names_in_the_allow_list_are_refused_with_a_reason() -> None:
    with pytest.raises(ExecutorError, match="'localhost' is not an IP address or network"):
        OutboundPolicy.parse("127.0.0.1,localhost")


def test_an_empty_allow_list_is_public_only() -> None:
    assert OutboundPolicy.parse("").allow == ()
    assert OutboundPolicy.parse(None).refusal("127.0.0.1") is not None
    assert OutboundPolicy.open().refusal("127.0.0.1") is None
