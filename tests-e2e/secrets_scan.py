"""After the end-to-end run: no secret the run used may appear in a log line or a database row.

Each secret is looked for as it is, in hex, and in base64 (standard and urlsafe, padded or not,
at each of the three alignments it can take inside a longer encoded text). API keys the run
made without telling the scan are found too: every `sk-orq-` token in a line, and in any hex or
base64 run in it once decoded, whose SHA-256 is a stored key hash, is a leaked key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from orqen_common.db import plain_postgres_url

_API_KEY = re.compile(rb"sk-orq-[A-Za-z0-9_-]{8,}")
# Encoded runs long enough to hold a key: hex, and base64 in either alphabet.
_HEX_RUN = re.compile(rb"(?:[0-9a-fA-F]{2}){16,}")
_BASE64_RUN = re.compile(rb"[A-Za-z0-9+/_-]{24,}={0,2}")


def encodings(secret: str | bytes) -> set[bytes]:
    """`secret` as it could appear in text: plain, hex, and base64 in both alphabets at every alignment."""
    raw = secret if isinstance(secret, bytes) else secret.encode()
    standard = base64.b64encode(raw)
    found = {raw, raw.hex().encode(), raw.hex().upper().encode(), standard, standard.rstrip(b"=")}
    for shift in range(3):
        # Inside a longer encoded text the secret starts at any byte offset modulo 3: encode it
        # behind `shift` filler bytes and keep the characters whose 6 bits are all the secret's.
        total = shift + len(raw)
        found.add(base64.b64encode(bytes(shift) + raw)[-(-8 * shift // 6) : 8 * total // 6])
    urlsafe = {text.translate(bytes.maketrans(b"+/", b"-_")) for text in found}
    # Very short fragments would match by chance; every secret here is long.
    return {text for text in found | urlsafe if len(text) >= 8}


@dataclass(frozen=True)
class Leak:
    where: str
    what: str


def _decoded_runs(line: bytes) -> Iterator[bytes]:
    """The bytes behind every hex or base64 run in `line`."""
    for match in _HEX_RUN.finditer(line):
        yield binascii.unhexlify(match.group())
    for match in _BASE64_RUN.finditer(line):
        text = match.group().rstrip(b"=")
        for alphabet in (b"+/", b"-_"):
            for start in range(4):  # the run may begin mid-quantum
                chunk = text[start:]
                chunk = chunk[: len(chunk) - len(chunk) % 4]
                try:
                    yield base64.b64decode(chunk, altchars=alphabet, validate=True)
                except binascii.Error:
                    continue


class SecretScanner:
    """Looks for the named secrets, and for any stored API key, in lines of text."""

    def __init__(self, secrets: Mapping[str, str | bytes], key_hashes: set[str]) -> None:
        self._patterns = {text: name for name, secret in secrets.items() if secret for text in encodings(secret)}
        self._key_hashes = key_hashes
        # Lines (log lines and database rows) looked at so far: a scan that saw nothing proves nothing.
        self.lines_scanned = 0

    def scan(self, where: str, lines: Iterable[bytes]) -> list[Leak]:
        leaks = []
        for number, line in enumerate(lines, 1):
            self.lines_scanned += 1
            # One leak per secret and line, however many of its encodings the line holds.
            found = {name for text, name in self._patterns.items() if text in line}
            for blob in (line, *_decoded_runs(line)):
                if any(self._is_stored_key(token) for token in _API_KEY.findall(blob)):
                    found.add("an API key (found by its hash)")
            leaks += [Leak(f"{where}:{number}", name) for name in sorted(found)]
        return leaks

    def _is_stored_key(self, token: bytes) -> bool:
        # The token may run on into text after the key: try each of its prefixes from the longest.
        return any(hashlib.sha256(token[:end]).hexdigest() in self._key_hashes for end in range(len(token), 14, -1))


async def stored_key_hashes(database_url: str) -> set[str]:
    conn = await asyncpg.connect(plain_postgres_url(database_url))
    try:
        return {row["key_hash"] for row in await conn.fetch("SELECT key_hash FROM accounting.api_keys")}
    finally:
        await conn.close()


async def scan_database(scanner: SecretScanner, database_url: str) -> list[Leak]:
    """Every row of every table of every Orqen schema, all columns cast to text."""
    conn = await asyncpg.connect(plain_postgres_url(database_url))
    leaks: list[Leak] = []
    try:
        tables = await conn.fetch(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema')"
        )
        for table in tables:
            name = f'"{table["table_schema"]}"."{table["table_name"]}"'
            async with conn.transaction():
                rows = conn.cursor(f"SELECT t::text AS row FROM {name} AS t")
                leaks += scanner.scan(name, [row["row"].encode() async for row in rows])
    finally:
        await conn.close()
    return leaks


def scan_logs(scanner: SecretScanner, logs_dir: Path) -> list[Leak]:
    """Every line of every file under the stack's logs folder."""
    leaks: list[Leak] = []
    for path in sorted(p for p in logs_dir.rglob("*") if p.is_file()):
        with path.open("rb") as log:
            leaks += scanner.scan(str(path.relative_to(logs_dir)), log)
    return leaks
