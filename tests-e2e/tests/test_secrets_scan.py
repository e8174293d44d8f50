"""The secrets scan finds a secret in each encoding it claims to, and a key nobody told it about.

No stack needed: lines with planted secrets go straight to the scanner that runs after the suite.
"""

from __future__ import annotations

import base64
import json

import pytest
from secrets_scan import SecretScanner

from orqen_common.auth import generate_api_key, hash_api_key

TOKEN = "an-internal-token-0123456789abcdef"


def _found(line: bytes, key_hashes: frozenset[str] = frozenset()) -> list[str]:
    return [leak.what for leak in SecretScanner({"internal token": TOKEN}, set(key_hashes)).scan("log", [line])]


@pytest.mark.parametrize(
    "encoded",
    [
        TOKEN.encode(),
        TOKEN.encode().hex().encode(),
        TOKEN.encode().hex().upper().encode(),
        base64.b64encode(TOKEN.encode()),
        base64.b64encode(TOKEN.encode()).rstrip(b"="),
        base64.urlsafe_b64encode(TOKEN.encode()),
        # Inside a longer encoded blob, at each of the three byte alignments.
        base64.b64encode(b'{"headers": {"x": "' + TOKEN.encode() + b'"}}'),
        base64.b64encode(b'{"headers": {"xy": "' + TOKEN.encode() + b'"}}'),
        base64.urlsafe_b64encode(b'{"headers": {"xyz": "' + TOKEN.encode() + b'"}}').rstrip(b"="),
    ],
)
def test_a_named_secret_is_found_plain_in_hex_and_in_base64(encoded: bytes) -> None:
    assert _found(b'{"event": "call", "detail": "' + encoded + b'"}') == ["internal token"]


def test_an_api_key_nobody_named_is_found_by_its_stored_hash_even_encoded() -> None:
    key = generate_api_key()
    stored = frozenset({hash_api_key(key)})
    assert _found(f"authorization: Bearer {key}".encode(), stored) == ["an API key (found by its hash)"]
    wrapped = base64.b64encode(json.dumps({"auth": key}).encode())
    assert _found(b"blob=" + wrapped, stored) == ["an API key (found by its hash)"]
    # A key's public prefix, and a key that is no stored key, are not leaks.
    assert _found(f"prefix {key[:12]} and sk-orq-{'x' * 43}".encode(), stored) == []
