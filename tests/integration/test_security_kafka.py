"""Kafka SASL/SSL settings reach every client: the helpers carry them, and every aiokafka
client the package builds is built from those helpers (checked on the source, so a new client
that forgets them fails here). No broker needed."""

from __future__ import annotations

import ast
import re
import ssl
from pathlib import Path

import pytest
from pydantic import SecretStr

from streams.errors import ConfigurationError
from streams.kafka import client_kwargs, consumer_kwargs, producer_kwargs
from streams.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
CLIENTS = {"AIOKafkaProducer", "AIOKafkaConsumer", "AIOKafkaAdminClient"}
HELPERS = {"client_kwargs", "producer_kwargs", "consumer_kwargs"}
# Only the installed packages: the benchmark suite (top-level bench/, outside the wheel)
# measures the raw client against a bare bootstrap address and is not part of a deployment.


def _sasl(**overrides: object) -> Settings:
    values: dict[str, object] = {
        "kafka_bootstrap_servers": "broker-1:9093,broker-2:9093",
        "kafka_security_protocol": "SASL_SSL",
        "kafka_sasl_mechanism": "SCRAM-SHA-512",
        "kafka_sasl_username": "svc-taskstream",
        "kafka_sasl_password": SecretStr("pa55word"),
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def test_every_helper_carries_sasl_and_tls() -> None:
    s = _sasl()
    for kwargs in (
        client_kwargs(s),
        producer_kwargs(s),
        consumer_kwargs(s),
        consumer_kwargs(s, "group"),
    ):
        assert kwargs["bootstrap_servers"] == "broker-1:9093,broker-2:9093"
        assert kwargs["security_protocol"] == "SASL_SSL"
        assert kwargs["sasl_mechanism"] == "SCRAM-SHA-512"
        assert kwargs["sasl_plain_username"] == "svc-taskstream"
        assert kwargs["sasl_plain_password"] == "pa55word"
        assert isinstance(kwargs["ssl_context"], ssl.SSLContext)


def test_plain_sasl_has_no_tls_and_plaintext_has_neither() -> None:
    kwargs = consumer_kwargs(_sasl(kafka_security_protocol="SASL_PLAINTEXT"), "g")
    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-512" and "ssl_context" not in kwargs
    plain = producer_kwargs(Settings(kafka_bootstrap_servers="b:9092"))
    assert plain["security_protocol"] == "PLAINTEXT"
    assert not {"sasl_mechanism", "sasl_plain_password", "ssl_context"} & set(plain)


def test_tls_only_builds_a_verifying_context() -> None:
    kwargs = client_kwargs(
        Settings(kafka_bootstrap_servers="b:9093", kafka_security_protocol="SSL")
    )
    context = kwargs["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


def test_misconfiguration_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="TASKSTREAM_KAFKA_SASL_MECHANISM"):
        client_kwargs(_sasl(kafka_sasl_mechanism=None))
    with pytest.raises(ConfigurationError, match="TLS context"):
        client_kwargs(_sasl(kafka_ssl_cafile=tmp_path / "missing.pem"))


def test_the_password_is_masked_in_settings_dumps() -> None:
    s = _sasl()
    assert "pa55word" not in repr(s) and "pa55word" not in str(s.model_dump())


def _constructions(path: Path) -> list[tuple[int, str]]:
    """(line, problem) for each aiokafka client built without one of the helpers."""
    tree = ast.parse(path.read_text())
    problems = []
    for func in ast.walk(tree):
        if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        body = ast.get_source_segment(path.read_text(), func) or ""
        for node in ast.walk(func):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", getattr(node.func, "attr", None))
            if name not in CLIENTS:
                continue
            spread = [k.value for k in node.keywords if k.arg is None]
            ok = False
            for value in spread:
                if isinstance(value, ast.Call) and getattr(value.func, "id", None) in HELPERS:
                    ok = True
                elif isinstance(value, ast.Name) and re.search(
                    rf"\b{value.id}\b\s*(:[^=\n]*)?=\s*(\{{\*\*)?({'|'.join(HELPERS)})\(", body
                ):
                    ok = True
            if not ok:
                problems.append((node.lineno, f"{name} built without {sorted(HELPERS)}"))
    return problems


def test_every_kafka_client_in_the_package_is_built_from_the_helpers() -> None:
    found = 0
    problems = []
    for package in ("streams", "projections", "schemas"):
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            text = path.read_text()
            found += sum(text.count(f"{c}(") for c in CLIENTS)
            problems += [f"{rel}:{line}: {what}" for line, what in _constructions(path)]
    assert found >= 8  # the check looked at real constructions
    assert problems == []
