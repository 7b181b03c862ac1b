"""Credentials in task payloads are sealed before they are produced and opened only in the
executor, so their plaintext never reaches a Kafka record or a RocksDB store.

Why encryption and not references to a secrets file: ``task.events`` keeps every payload for
ever and every read model copies it, so whatever goes in must be worthless without a key; a
key in the environment of the producers and executors is one variable to deploy, where a
secrets file would have to be distributed to every executor and kept in step with every
submitter. Callers keep submitting payloads as the seeds show them (``bearerToken``,
``apiKey``, ``password``, ``Authorization`` headers); the SDK's ``send`` -- the door every
command goes through, the HTTP gateway included -- seals what ``schemas.credentials`` calls a
credential, and the executor opens it right before the handler runs.

Envelope encryption (AES-256-GCM, ``cryptography``): each value gets a fresh 256-bit data key;
the value is encrypted with the data key, the data key is wrapped with the key-encryption key
named by ``kid``. Both carry the client id as associated data, so a sealed value opens only
for a task of the client it was sealed for. A sealed value replaces the plaintext in place::

    {"$sealed": "aes256gcm-v1", "kid": "k2", "key": "<b64 nonce+wrapped data key>",
     "data": "<b64 nonce+ciphertext of the JSON value>"}

``TASKSTREAM_SECRETS_KEY`` is a key ring: ``kid:base64key`` entries separated by commas, the
first one seals, all of them open (``python -m streams.secrets new-key k2`` prints an entry).
Rotation: put the new entry first and keep the old ones for as long as tasks or dead letters
sealed with them may still run or be redriven; removing an old key makes what it sealed
unreadable for good, which is how credentials in the infinitely retained log are retired.

With no key configured, a command carrying a credential is refused (``InvalidCommandError``:
the gateway answers 422) with a message saying how to configure one; the processor also
refuses a submit that carries a credential in plaintext, for producers that skip the SDK.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from schemas.commands import (
    BatchJobItem,
    Command,
    ProvideInput,
    SubmitBatchJob,
    SubmitTask,
    UpdateTask,
)
from schemas.credentials import SEALED, credentials, describe, is_sealed, replace_credentials
from streams.errors import ConfigurationError, InvalidCommandError, TaskstreamError
from streams.settings import Settings

SCHEME = "aes256gcm-v1"
KEY_VARIABLE = "TASKSTREAM_SECRETS_KEY"
_KID = re.compile(r"^[A-Za-z0-9._-]{1,32}$")
_NONCE = 12


class SecretsKeyError(ConfigurationError):
    """``TASKSTREAM_SECRETS_KEY`` is malformed; the message names the entry."""


class SealedValueError(TaskstreamError):
    """A sealed value cannot be opened (no key, an unknown kid, another client's value, or a
    damaged value); the task fails with this message."""


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def new_key_entry(kid: str = "k1") -> str:
    """A fresh ``kid:base64key`` entry for ``TASKSTREAM_SECRETS_KEY``."""
    if not _KID.match(kid):
        raise SecretsKeyError(f"{KEY_VARIABLE}: key id {kid!r} must be 1-32 of A-Z a-z 0-9 . _ -")
    return f"{kid}:{_b64(AESGCM.generate_key(bit_length=256))}"


def _aad(kid: str, client_id: str) -> bytes:
    return f"taskstream/{SCHEME}/{kid}/{client_id}".encode()


@dataclass(frozen=True)
class Keyring:
    """Key-encryption keys by id; ``primary`` seals."""

    keys: Mapping[str, bytes]
    primary: str

    @classmethod
    def parse(cls, text: str) -> Keyring:
        keys: dict[str, bytes] = {}
        order: list[str] = []
        for number, entry in enumerate(text.split(","), start=1):
            entry = entry.strip()
            kid, sep, material = entry.partition(":")
            if not sep or not _KID.match(kid):
                raise SecretsKeyError(
                    f"{KEY_VARIABLE}: entry {number} is not kid:base64key "
                    f"(make one with `python -m streams.secrets new-key k1`)"
                )
            try:
                key = _b64decode(material.strip())
            except (binascii.Error, ValueError):
                key = b""
            if len(key) != 32:
                raise SecretsKeyError(
                    f"{KEY_VARIABLE}: key {kid!r} must be 32 bytes in base64 (url-safe), "
                    f"got {len(key)} bytes"
                )
            if kid in keys:
                raise SecretsKeyError(f"{KEY_VARIABLE}: key id {kid!r} appears twice")
            keys[kid] = key
            order.append(kid)
        return cls(keys, order[0])

    @classmethod
    def from_settings(cls, settings: Settings) -> Keyring | None:
        secret = settings.secrets_key
        text = secret.get_secret_value().strip() if secret is not None else ""
        return cls.parse(text) if text else None

    # -- one value ---------------------------------------------------------------------------

    def seal_value(self, value: Any, client_id: str) -> dict[str, str]:
        kid = self.primary
        aad = _aad(kid, client_id)
        data_key = AESGCM.generate_key(bit_length=256)
        data_nonce, key_nonce = os.urandom(_NONCE), os.urandom(_NONCE)
        plaintext = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
        data = AESGCM(data_key).encrypt(data_nonce, plaintext, aad)
        wrapped = AESGCM(self.keys[kid]).encrypt(key_nonce, data_key, aad)
        return {
            SEALED: SCHEME,
            "kid": kid,
            "key": _b64(key_nonce + wrapped),
            "data": _b64(data_nonce + data),
        }

    def open_value(self, sealed: Mapping[str, Any], client_id: str) -> Any:
        scheme, kid = sealed.get(SEALED), sealed.get("kid")
        if scheme != SCHEME:
            raise SealedValueError(
                f"sealed value of unknown scheme {scheme!r} (this executor: {SCHEME})"
            )
        if not isinstance(kid, str) or kid not in self.keys:
            raise SealedValueError(
                f"sealed with key {kid!r}, which {KEY_VARIABLE} of this executor does not hold "
                f"(it holds {', '.join(sorted(self.keys))}); keep retired keys until their tasks end"
            )
        aad = _aad(kid, client_id)
        try:
            key_blob = _b64decode(str(sealed["key"]))
            data_blob = _b64decode(str(sealed["data"]))
            data_key = AESGCM(self.keys[kid]).decrypt(key_blob[:_NONCE], key_blob[_NONCE:], aad)
            plaintext = AESGCM(data_key).decrypt(data_blob[:_NONCE], data_blob[_NONCE:], aad)
            return json.loads(plaintext)
        except (KeyError, binascii.Error, ValueError, InvalidTag):
            raise SealedValueError(
                f"a sealed value does not open for client {client_id!r} with key {kid!r}: "
                "damaged, or sealed for another client"
            ) from None


# -- payloads and commands -------------------------------------------------------------------


def _refusal(client_id: str, where: str) -> InvalidCommandError:
    return InvalidCommandError(
        f"{where} holds a credential and no {KEY_VARIABLE} is configured to seal it "
        f"(credentials are never stored in plaintext): set {KEY_VARIABLE} to the output of "
        "`python -m streams.secrets new-key k1` on the submitters and executors "
        f"(client {client_id!r})"
    )


def seal_payload(
    keyring: Keyring | None, client_id: str, payload: dict[str, Any], where: str = ""
) -> dict[str, Any]:
    """``payload`` with each credential sealed; the same object when it holds none. Without a
    key ring a credential is refused, naming its field."""
    found = next(credentials(payload), None)
    if found is None:
        return payload
    if keyring is None:
        raise _refusal(client_id, where + describe(found[0]))
    sealed: dict[str, Any] = replace_credentials(
        payload, lambda _path, value: keyring.seal_value(value, client_id)
    )
    return sealed


def seal_command(keyring: Keyring | None, command: Command) -> Command:
    """``command`` with the credentials of its payloads sealed (submits and batch jobs)."""
    if isinstance(command, SubmitTask):
        payload = seal_payload(keyring, command.client_id, command.payload)
        steps = [
            step.model_copy(update={"config": sealed})
            if (sealed := seal_payload(keyring, command.client_id, step.config, f"steps[{i}]."))
            is not step.config
            else step
            for i, step in enumerate(command.steps)
        ]
        if payload is command.payload and all(
            a is b for a, b in zip(steps, command.steps, strict=True)
        ):
            return command
        return command.model_copy(update={"payload": payload, "steps": steps})
    if isinstance(command, UpdateTask):
        payload = seal_payload(keyring, command.client_id, command.payload)
        return (
            command
            if payload is command.payload
            else command.model_copy(update={"payload": payload})
        )
    if isinstance(command, ProvideInput):
        answer = seal_payload(keyring, command.client_id, command.input, "input.")
        return command if answer is command.input else command.model_copy(update={"input": answer})
    if isinstance(command, SubmitBatchJob):
        items: list[BatchJobItem] = []
        changed = False
        for index, item in enumerate(command.items):
            payload = seal_payload(keyring, command.client_id, item.payload, f"items[{index}].")
            changed = changed or payload is not item.payload
            items.append(
                item.model_copy(update={"payload": payload})
                if payload is not item.payload
                else item
            )
        return command.model_copy(update={"items": items}) if changed else command
    return command


def open_payload(
    keyring: Keyring | None, client_id: str, payload: Mapping[str, Any]
) -> Mapping[str, Any]:
    """``payload`` with every sealed value opened; the same object when none is sealed."""
    if not _has_sealed(payload):
        return payload
    if keyring is None:
        raise SealedValueError(
            f"the payload holds sealed credentials and this executor has no {KEY_VARIABLE}: "
            "give it the key ring the submitters seal with"
        )
    opened: Mapping[str, Any] = _open(payload, keyring, client_id)
    return opened


def _has_sealed(value: Any) -> bool:
    if is_sealed(value):
        return True
    if isinstance(value, Mapping):
        return any(_has_sealed(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_sealed(v) for v in value)
    return False


def _open(value: Any, keyring: Keyring, client_id: str) -> Any:
    if is_sealed(value):
        return keyring.open_value(value, client_id)
    if isinstance(value, Mapping):
        return {k: _open(v, keyring, client_id) for k, v in value.items()}
    if isinstance(value, list):
        return [_open(v, keyring, client_id) for v in value]
    return value


def _main(argv: list[str]) -> int:
    if argv[:1] == ["new-key"] and len(argv) <= 2:
        try:
            print(new_key_entry(argv[1] if len(argv) == 2 else "k1"))
        except SecretsKeyError as exc:
            print(exc, file=sys.stderr)
            return 2
        return 0
    print("usage: python -m streams.secrets new-key [kid]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
