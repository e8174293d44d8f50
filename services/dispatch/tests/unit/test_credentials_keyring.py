"""Sealing and opening provider secrets with the operator's keys, and rotating those keys."""

from __future__ import annotations

import base64
import os
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from orqen.v1 import accounting_pb2
from orqen_common.errors import OrqenError
from orqen_dispatch.credentials.keyring import KEYS_SETTING, KeyRing, UnusableCredentialError, generate_key_setting

KEY_1 = bytes(range(32))
KEY_2 = bytes(range(32, 64))
SETTING_1 = "k1:" + base64.b64encode(KEY_1).decode()
SETTING_2 = "k2:" + base64.b64encode(KEY_2).decode()
SECRET = {"api_key": "sk-proj-abcdefghijklmnop"}
ACCOUNT, OTHER_ACCOUNT = "acct-1", "acct-2"


def ring(setting: str = SETTING_1) -> KeyRing:
    return KeyRing.from_setting(setting)


def test_a_sealed_secret_opens_to_what_was_sealed_and_shows_no_plaintext() -> None:
    sealed = ring().seal(SECRET, ACCOUNT, "openai")
    assert sealed.key_id == "k1" and len(sealed.nonce) == 12
    assert b"sk-proj" not in sealed.ciphertext and b"api_key" not in sealed.ciphertext
    assert ring().open(sealed, ACCOUNT, "openai") == SECRET


def test_every_seal_uses_a_fresh_nonce() -> None:
    first, second = ring().seal(SECRET, ACCOUNT, "openai"), ring().seal(SECRET, ACCOUNT, "openai")
    assert first.nonce != second.nonce and first.ciphertext != second.ciphertext


@pytest.mark.parametrize(("account", "provider"), [(OTHER_ACCOUNT, "openai"), (ACCOUNT, "groq"), ("acct-1:openai", "")])
def test_a_ciphertext_copied_to_another_account_or_provider_does_not_open(account: str, provider: str) -> None:
    sealed = ring().seal(SECRET, ACCOUNT, "openai")
    with pytest.raises(UnusableCredentialError, match="another account or provider"):
        ring().open(sealed, account, provider)


def _altered(sealed: accounting_pb2.SealedSecret, **changes: Any) -> accounting_pb2.SealedSecret:
    copy = accounting_pb2.SealedSecret()
    copy.CopyFrom(sealed)
    for name, value in changes.items():
        setattr(copy, name, value)
    return copy


def _flip_first_bit(data: bytes) -> bytes:
    return bytes([data[0] ^ 1]) + data[1:]


@pytest.mark.parametrize(
    ("alter", "reason"),
    [
        (lambda s: _altered(s, ciphertext=_flip_first_bit(s.ciphertext)), "altered"),
        (lambda s: _altered(s, ciphertext=s.ciphertext[:-1]), "altered"),
        (lambda s: _altered(s, nonce=_flip_first_bit(s.nonce)), "altered"),
        (lambda s: _altered(s, nonce=s.nonce[:8]), "nonce is 8 bytes"),
        (lambda s: _altered(s, key_id="k9"), "key 'k9', which is not in ORQEN_CREDENTIALS_KEYS"),
    ],
)
def test_tampering_or_an_unknown_key_makes_a_clear_error(alter: Any, reason: str) -> None:
    sealed = ring().seal(SECRET, ACCOUNT, "openai")
    with pytest.raises(UnusableCredentialError, match=reason):
        ring().open(alter(sealed), ACCOUNT, "openai")


@pytest.mark.parametrize(("plaintext", "reason"), [(b"not json", "not JSON"), (b'{"api_key": 1}', "not an object")])
def test_a_payload_that_is_not_an_object_of_strings_is_unusable(plaintext: bytes, reason: str) -> None:
    nonce = os.urandom(12)
    ciphertext = AESGCM(KEY_1).encrypt(nonce, plaintext, f"{ACCOUNT}:openai".encode())
    sealed = accounting_pb2.SealedSecret(key_id="k1", nonce=nonce, ciphertext=ciphertext)
    with pytest.raises(UnusableCredentialError, match=reason):
        ring().open(sealed, ACCOUNT, "openai")


def test_rotation_seals_with_the_first_key_and_reseals_what_older_keys_sealed() -> None:
    old = ring(SETTING_1).seal(SECRET, ACCOUNT, "openai")
    rotated_ring = ring(f"{SETTING_2}, {SETTING_1}")
    assert rotated_ring.active_key_id == "k2"
    assert rotated_ring.seal(SECRET, ACCOUNT, "openai").key_id == "k2"
    assert rotated_ring.open(old, ACCOUNT, "openai") == SECRET  # the old key still opens

    resealed = rotated_ring.rotate(old, ACCOUNT, "openai")
    assert resealed is not None and resealed.key_id == "k2"
    assert ring(SETTING_2).open(resealed, ACCOUNT, "openai") == SECRET  # k1 can now be retired
    assert rotated_ring.rotate(resealed, ACCOUNT, "openai") is None  # nothing left to do
    with pytest.raises(UnusableCredentialError):
        ring(SETTING_1).open(resealed, ACCOUNT, "openai")


def test_rotation_refuses_to_reseal_what_it_cannot_open() -> None:
    old = ring(SETTING_1).seal(SECRET, ACCOUNT, "openai")
    with pytest.raises(UnusableCredentialError):
        ring(f"{SETTING_2},{SETTING_1}").rotate(old, OTHER_ACCOUNT, "openai")


@pytest.mark.parametrize("setting", [None, "", "  "])
def test_without_keys_nothing_can_be_sealed_and_the_error_names_the_setting(setting: str | None) -> None:
    keyring = KeyRing.from_setting(setting)
    assert not keyring.can_seal and keyring.active_key_id is None
    with pytest.raises(OrqenError) as refused:
        keyring.seal(SECRET, ACCOUNT, "openai")
    assert refused.value.kind.grpc_code == grpc.StatusCode.FAILED_PRECONDITION
    assert refused.value.http_status == 400
    assert KEYS_SETTING in refused.value.message


_B64_16 = base64.b64encode(bytes(16)).decode()
_B64_32 = base64.b64encode(bytes(range(100, 132))).decode()


@pytest.mark.parametrize(
    ("setting", "problem"),
    [
        ("k1", 'entry 1 is not "key_id:base64'),
        ("k1:", 'entry 1 is not "key_id:base64'),
        (f":{_B64_32}", 'entry 1 is not "key_id:base64'),
        (f"k1:{_B64_32},", 'entry 2 is not "key_id:base64'),
        ("k1:not-base64!", "key 'k1' is not valid base64"),
        (f"k1:{_B64_16}", "key 'k1' is 16 bytes; it must be 32"),
        (f"k1:{_B64_32},k1:{_B64_32}", "the key id 'k1' appears twice"),
        (f"my key:{_B64_32}", "'my key' is not a valid key id"),
    ],
)
def test_malformed_settings_fail_at_startup_without_showing_key_material(setting: str, problem: str) -> None:
    with pytest.raises(ValueError, match=KEYS_SETTING) as failed:
        KeyRing.from_setting(setting)
    assert problem in str(failed.value)
    assert _B64_32 not in str(failed.value) and _B64_16 not in str(failed.value)


def test_generated_settings_are_valid_and_random() -> None:
    first, second = generate_key_setting(), generate_key_setting()
    assert first.startswith("k1:") and first != second
    keyring = KeyRing.from_setting(first)
    assert keyring.active_key_id == "k1"
    assert keyring.open(keyring.seal(SECRET, ACCOUNT, "openai"), ACCOUNT, "openai") == SECRET
    assert generate_key_setting("2025-06").startswith("2025-06:")
