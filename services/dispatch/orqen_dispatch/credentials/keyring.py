"""The operator's keys that seal accounts' provider secrets (AES-256-GCM), and their rotation.

The keys come from `ORQEN_CREDENTIALS_KEYS` ("k2:<base64>,k1:<base64>"): the first seals,
every one opens, so keys rotate by putting a new one first and keeping the old ones until
everything they sealed is re-sealed (`KeyRing.rotate`).

What is sealed is a JSON object of the secret's fields plus the credential's `base_url`
and `region`: sealed with the secret, they cannot be redirected by whoever can write
accounting's tables (a key sent to another host is a key given away). The associated
data "account_id:provider" binds a ciphertext to its row: copied to another account or
provider, it no longer opens.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import secrets
from collections.abc import Mapping, Sequence

import grpc
import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from orqen.v1 import accounting_pb2
from orqen_common.errors import OrqenError

KEYS_SETTING = "ORQEN_CREDENTIALS_KEYS"
KEY_BYTES = 32  # AES-256
NONCE_BYTES = 12  # the 96-bit nonce GCM is designed for
_KEY_ID = re.compile(r"[A-Za-z0-9_.-]{1,32}")


class UnusableCredentialError(Exception):
    """A sealed secret that cannot be opened: unknown key, tampering, or a malformed payload."""


def credentials_not_configured() -> OrqenError:
    """The refusal to save a credential while the operator has set no key."""
    return OrqenError.of(
        grpc.StatusCode.FAILED_PRECONDITION,
        f"Saving provider credentials is not enabled: the operator must set {KEYS_SETTING} "
        '("k1:<base64 of 32 random bytes>") for Orqen dispatch.',
    )


def generate_key_setting(key_id: str = "k1") -> str:
    """A fresh `ORQEN_CREDENTIALS_KEYS` value holding one new random key."""
    if not _KEY_ID.fullmatch(key_id):
        raise ValueError(f"{key_id!r} is not a valid key id (letters, digits, '_', '.', '-'; at most 32)")
    return f"{key_id}:{base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()}"


class KeyRing:
    """The operator's AES-256 keys by id; the first one seals."""

    def __init__(self, keys: Sequence[tuple[str, bytes]]) -> None:
        self._keys: dict[str, AESGCM] = {}
        for key_id, key in keys:
            if not _KEY_ID.fullmatch(key_id):
                raise ValueError(f"{KEYS_SETTING}: {key_id!r} is not a valid key id (letters, digits, '_', '.', '-')")
            if key_id in self._keys:
                raise ValueError(f"{KEYS_SETTING}: the key id {key_id!r} appears twice")
            if len(key) != KEY_BYTES:
                raise ValueError(f"{KEYS_SETTING}: key {key_id!r} is {len(key)} bytes; it must be {KEY_BYTES}")
            self._keys[key_id] = AESGCM(key)
        self._active = keys[0][0] if keys else None

    @classmethod
    def from_setting(cls, value: str | None) -> KeyRing:
        """Parse `ORQEN_CREDENTIALS_KEYS`; empty means no keys (saving credentials is refused).

        Raises ValueError at startup for anything malformed; the message never holds key material.
        """
        if not value or not value.strip():
            return cls([])
        keys: list[tuple[str, bytes]] = []
        for position, entry in enumerate(value.split(","), start=1):
            key_id, sep, encoded = entry.strip().partition(":")
            if not sep or not key_id or not encoded:
                raise ValueError(f'{KEYS_SETTING}: entry {position} is not "key_id:base64(32 bytes)"')
            try:
                key = base64.b64decode(encoded.strip(), validate=True)
            except binascii.Error:
                raise ValueError(f"{KEYS_SETTING}: key {key_id!r} is not valid base64") from None
            keys.append((key_id, key))
        return cls(keys)

    @property
    def active_key_id(self) -> str | None:
        """The id of the key that seals, or None when there are no keys."""
        return self._active

    @property
    def can_seal(self) -> bool:
        """Whether the operator set any key: without one nothing is saved, and nothing saved opens."""
        return self._active is not None

    def seal(self, secret: Mapping[str, str], account_id: str, provider: str) -> accounting_pb2.SealedSecret:
        """Encrypt `secret` under the active key, bound to its account and provider."""
        if self._active is None:
            raise credentials_not_configured()
        nonce = os.urandom(NONCE_BYTES)  # random per message: never reused under one key in practice
        plaintext = orjson.dumps(dict(secret), option=orjson.OPT_SORT_KEYS)
        ciphertext = self._keys[self._active].encrypt(nonce, plaintext, _associated_data(account_id, provider))
        return accounting_pb2.SealedSecret(key_id=self._active, nonce=nonce, ciphertext=ciphertext)

    def open(self, sealed: accounting_pb2.SealedSecret, account_id: str, provider: str) -> dict[str, str]:
        """Decrypt a sealed secret of `account_id`'s `provider` row; UnusableCredentialError when it cannot be."""
        aead = self._keys.get(sealed.key_id)
        if aead is None:
            raise UnusableCredentialError(f"sealed with key {sealed.key_id!r}, which is not in {KEYS_SETTING}")
        if len(sealed.nonce) != NONCE_BYTES:
            raise UnusableCredentialError(f"nonce is {len(sealed.nonce)} bytes, not {NONCE_BYTES}")
        try:
            plaintext = aead.decrypt(sealed.nonce, sealed.ciphertext, _associated_data(account_id, provider))
        except InvalidTag:
            raise UnusableCredentialError(
                "authentication failed: the ciphertext was altered or belongs to another account or provider"
            ) from None
        try:
            secret = orjson.loads(plaintext)
        except orjson.JSONDecodeError:
            raise UnusableCredentialError("the opened secret is not JSON") from None
        if not isinstance(secret, dict) or not all(isinstance(v, str) for v in secret.values()):
            raise UnusableCredentialError("the opened secret is not an object of strings")
        return secret

    def rotate(
        self, sealed: accounting_pb2.SealedSecret, account_id: str, provider: str
    ) -> accounting_pb2.SealedSecret | None:
        """The secret re-sealed under the active key, or None when it already is (nothing to write)."""
        if self._active is None or sealed.key_id == self._active:
            return None
        return self.seal(self.open(sealed, account_id, provider), account_id, provider)


def _associated_data(account_id: str, provider: str) -> bytes:
    return f"{account_id}:{provider}".encode()
