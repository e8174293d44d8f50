"""Accounts' saved provider credentials: validated, sealed with AES-256-GCM, opened only in dispatch.

Accounting stores what `KeyRing.seal` produces and never sees a plaintext secret. The
operator keys come from `ORQEN_CREDENTIALS_KEYS` ("k2:<base64>,k1:<base64>"): the first
seals, every one opens, so keys rotate by putting a new one first and keeping the old ones
until everything they sealed is re-sealed (`KeyRing.rotate`).

What is sealed is a JSON object of the secret's fields plus the credential's `base_url`
and `region`: sealed with the secret, they cannot be redirected by whoever can write
accounting's tables (a key sent to another host is a key given away). The associated
data "account_id:provider" binds a ciphertext to its row: copied to another account or
provider, it no longer opens.

Precedence of credentials for one call (`merge`): those sent with the request, then the
account's saved credential, then the operator's environment (the provider's own default).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import ipaddress
import os
import re
import secrets
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple
from urllib.parse import urlsplit

import grpc
import orjson
import structlog
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from orqen.v1 import accounting_pb2, accounting_pb2_grpc
from orqen_common.errors import OrqenError, from_rpc_error, invalid_request

log = structlog.get_logger(__name__)

KEYS_SETTING = "ORQEN_CREDENTIALS_KEYS"
KEY_BYTES = 32  # AES-256
NONCE_BYTES = 12  # the 96-bit nonce GCM is designed for
_KEY_ID = re.compile(r"[A-Za-z0-9_.-]{1,32}")

# --- the operator keys -------------------------------------------------------------------


class UnusableCredentialError(Exception):
    """A sealed secret that cannot be opened: unknown key, tampering, or a malformed payload."""


def credentials_not_configured() -> OrqenError:
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


# --- what an account may save ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _AuthShape:
    required: tuple[str, ...]
    optional: tuple[str, ...]
    # The field whose last characters identify the credential in listings.
    shown: str


_SHAPES = {
    "api_key": _AuthShape(("api_key",), (), "api_key"),
    "iam": _AuthShape(("access_key_id", "secret_access_key"), ("session_token",), "secret_access_key"),
    "bearer": _AuthShape(("bearer_token",), (), "bearer_token"),
}
# Built-in providers and the auth each accepts; any other name is an OpenAI-compatible provider.
_AUTHS_BY_PROVIDER = {
    "openai": ("api_key",),
    "anthropic": ("api_key",),
    "groq": ("api_key",),
    "bedrock": ("iam", "bearer"),
}
_COMPATIBLE_AUTHS = ("api_key",)
# A provider name is the prefix of a model string ("<provider>/<model>").
_PROVIDER_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
_RESERVED_PROVIDERS = frozenset({"orqen"})  # orqen/* are routing strings
_AWS_REGION = re.compile(r"[a-z]{2}(?:-[a-z]+)+-\d{1,2}")
_MAX_SECRET_CHARS = 8192
_MAX_URL_CHARS = 2048
_SHOWN_CHARS = 4
# Fields sealed with the secret, beside the secret's own fields.
BASE_URL, REGION = "base_url", "region"


class ValidatedSecret(NamedTuple):
    """What to seal (the secret's fields plus base_url/region) and what may be shown about it."""

    sealed_fields: dict[str, str]
    info: accounting_pb2.CredentialInfo


def validate_secret(
    provider: str, auth: str, secret: Mapping[str, str], base_url: str = "", region: str = ""
) -> ValidatedSecret:
    """Check a credential an account wants to save; invalid_request naming what is wrong.

    openai/anthropic/groq: auth "api_key" with {"api_key"}. bedrock: auth "iam" with
    {"access_key_id", "secret_access_key", "session_token"?} or "bearer" with
    {"bearer_token"}, and a region. Any other name is an OpenAI-compatible provider:
    auth "api_key" and its base_url. Surrounding whitespace is removed; values are never
    echoed in errors.
    """
    provider = provider.strip()
    if not _PROVIDER_NAME.fullmatch(provider) or provider in _RESERVED_PROVIDERS:
        raise invalid_request(
            f"provider {provider!r} is not a provider name: lowercase letters, digits, '-' and '_' "
            "(openai, anthropic, bedrock, groq, or the name of an OpenAI-compatible provider; 'orqen' is reserved)."
        )
    auths = _AUTHS_BY_PROVIDER.get(provider, _COMPATIBLE_AUTHS)
    auth = auth.strip() or (auths[0] if len(auths) == 1 else "")
    if auth not in auths:
        expected = " or ".join(repr(a) for a in auths)
        raise invalid_request(f"auth {auth!r} is not accepted for provider {provider!r}: use {expected}.")
    fields = _secret_fields(provider, auth, secret)
    shown = fields[_SHAPES[auth].shown]
    info = accounting_pb2.CredentialInfo(provider=provider, auth=auth, last4=_last_chars(shown))
    if provider in _AUTHS_BY_PROVIDER:
        if base_url.strip():
            raise invalid_request(
                f"base_url is only for OpenAI-compatible providers; {provider!r} has a fixed endpoint."
            )
    else:
        info.base_url = fields[BASE_URL] = _base_url(base_url, provider)
    if provider == "bedrock":
        info.region = fields[REGION] = _region(region)
    elif region.strip():
        raise invalid_request(f"region is only for bedrock, not for provider {provider!r}.")
    return ValidatedSecret(fields, info)


def _secret_fields(provider: str, auth: str, secret: Mapping[str, str]) -> dict[str, str]:
    shape = _SHAPES[auth]
    allowed = (*shape.required, *shape.optional)
    unknown = sorted(set(secret) - set(allowed))
    if unknown:
        raise invalid_request(
            f"Unknown secret field(s) for {provider} {auth}: {', '.join(unknown)}; expected {_field_list(shape)}."
        )
    fields = {name: value.strip() for name, value in secret.items() if value.strip()}
    missing = [name for name in shape.required if name not in fields]
    if missing:
        raise invalid_request(
            f"Missing secret field(s) for {provider} {auth}: {', '.join(missing)}; expected {_field_list(shape)}."
        )
    for name, value in fields.items():
        if len(value) > _MAX_SECRET_CHARS:
            raise invalid_request(f"Secret field {name} is longer than {_MAX_SECRET_CHARS} characters.")
        # Every field but the AWS secret travels in an HTTP header; keys are printable ASCII anyway.
        if not fits_a_header(value):
            raise invalid_request(f"Secret field {name} holds spaces or characters other than printable ASCII.")
    return fields


def fits_a_header(value: str) -> bool:
    """Printable ASCII without spaces: what keys are, and what an HTTP header can carry."""
    return all("!" <= char <= "~" for char in value)


def header_value(key: str, provider: str) -> str:
    """`key` if it can be sent in a header; else a 400 rather than a crash in the HTTP client."""
    if not fits_a_header(key):
        raise invalid_request(f"The {provider} key holds spaces or characters other than printable ASCII.")
    return key


def _field_list(shape: _AuthShape) -> str:
    return ", ".join([*shape.required, *(f"{name} (optional)" for name in shape.optional)])


def _last_chars(value: str) -> str:
    # A secret this short is no real key; showing 4 of its characters would give most of it away.
    return value[-_SHOWN_CHARS:] if len(value) >= 2 * _SHOWN_CHARS else ""


def _base_url(value: str, provider: str) -> str:
    value = value.strip()
    if not value:
        raise invalid_request(
            f"base_url is required for the OpenAI-compatible provider {provider!r} (e.g. https://host/v1)."
        )
    problem = f"base_url {value[:200]!r} is not an http(s) URL such as https://host/v1"
    if len(value) > _MAX_URL_CHARS:
        raise invalid_request(f"base_url is longer than {_MAX_URL_CHARS} characters.")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018  # raises ValueError for a port that is not a number in range
    except ValueError:
        raise invalid_request(f"{problem}.") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise invalid_request(f"{problem}.")
    if parts.username is not None or parts.password is not None:
        raise invalid_request(f"{problem}: put the key in the secret, not in the URL.")
    if parts.query or parts.fragment or not fits_a_header(value):
        raise invalid_request(f"{problem}: no query, fragment, spaces or non-ASCII characters.")
    return value.rstrip("/")


async def refuse_private_address(base_url: str) -> None:
    """400 unless every address `base_url`'s host resolves to is a public one.

    An account's base URL is called from inside the deployment: pointed at a private,
    loopback or link-local address (a metadata service, Orqen's own services), it would let
    a tenant reach what only the operator should, and read its answers in error messages.
    The check is made when the credential is saved (ORQEN_ALLOW_PRIVATE_BASE_URLS lifts it
    for self-hosted models on the operator's own network).
    """
    host = urlsplit(base_url).hostname or ""
    try:
        found = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        raise invalid_request(f"base_url host {host[:200]!r} cannot be resolved.") from None
    for *_, address in found:
        ip = ipaddress.ip_address(str(address[0]).partition("%")[0])
        if not ip.is_global:
            raise invalid_request(
                f"base_url host {host[:200]!r} is a private or local address ({ip}); the operator allows "
                "such endpoints with ORQEN_ALLOW_PRIVATE_BASE_URLS."
            )


def _region(value: str) -> str:
    value = value.strip()
    if not value:
        raise invalid_request("region is required for bedrock (e.g. us-east-1).")
    if not _AWS_REGION.fullmatch(value):
        raise invalid_request(f"region {value[:64]!r} is not an AWS region name such as us-east-1.")
    return value


# --- which credentials a call uses -------------------------------------------------------

# Saved fields -> the credential keys each provider reads (CompleteRequest.credentials).
_BEDROCK_KEYS = {
    "access_key_id": "aws_access_key_id",
    "secret_access_key": "aws_secret_access_key",
    "session_token": "aws_session_token",
    "bearer_token": "aws_bearer_token_bedrock",
    REGION: "aws_region_name",
}
_API_KEY_KEYS = {"api_key": "api_key", BASE_URL: "base_url"}
_BEDROCK_AUTH = ("aws_access_key_id", "aws_secret_access_key", "aws_session_token", "aws_bearer_token_bedrock")


def merge(per_request: Mapping[str, str], saved: Mapping[str, str] | None, provider_name: str) -> dict[str, str]:
    """The credentials one call to `provider_name` uses.

    The caller's own credential (the aws_* extensions, or "api_key" from the
    X-Orqen-Provider-Key header) replaces the account's saved one whole: a call never
    mixes the caller's key id with the account's secret. The saved region or base_url
    still applies unless the caller gave its own region. With neither, the mapping is
    empty and the provider uses the operator's environment. Only keys the provider
    reads are taken from the request: a caller can never set a base_url.
    """
    names: Mapping[str, str]
    auth_keys: Sequence[str]
    if provider_name == "bedrock":
        names, auth_keys = _BEDROCK_KEYS, _BEDROCK_AUTH
        caller = {key: per_request[key] for key in (*_BEDROCK_AUTH, "aws_region_name") if per_request.get(key)}
        # A Bedrock API key sent in the provider key header is a bearer token.
        if per_request.get("api_key") and not any(key in caller for key in _BEDROCK_AUTH):
            caller["aws_bearer_token_bedrock"] = per_request["api_key"]
    else:
        names, auth_keys = _API_KEY_KEYS, ("api_key",)
        caller = {"api_key": per_request["api_key"]} if per_request.get("api_key") else {}
    merged = {names[field]: value for field, value in (saved or {}).items() if field in names and value}
    if any(key in caller for key in auth_keys):
        merged = {key: value for key, value in merged.items() if key not in auth_keys}
    return {**merged, **caller}


# --- the account's credentials, from accounting ------------------------------------------

SavedCredentials = dict[str, dict[str, str]]
"""An account's opened credentials by provider: the sealed fields (secret, base_url, region)."""


@dataclass(slots=True)
class _Cached:
    expires_at: float
    credentials: SavedCredentials


class CredentialStore:
    """Saves credentials through accounting and keeps each account's opened ones for `ttl_seconds`.

    Opened secrets live only in this process's memory. A save or delete made elsewhere is
    seen within the TTL; a save through this store at once. When accounting cannot be
    reached, the last credentials read for the account are used rather than failing.
    """

    def __init__(
        self,
        accounting: accounting_pb2_grpc.AccountingAsyncStub,
        keyring: KeyRing,
        ttl_seconds: float = 30.0,
        *,
        max_accounts: int = 10_000,
        rpc_timeout_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        allow_private_base_urls: bool = False,
    ) -> None:
        self._accounting = accounting
        self._allow_private_base_urls = allow_private_base_urls
        self._keyring = keyring
        self._ttl = ttl_seconds
        self._max_accounts = max_accounts
        self._timeout = rpc_timeout_seconds
        self._clock = clock
        self._cache: dict[str, _Cached] = {}
        # One read per account at a time, however many requests miss the cache together.
        self._loading: dict[str, asyncio.Task[SavedCredentials]] = {}

    async def for_account(self, account_id: str) -> SavedCredentials:
        """The account's usable saved credentials by provider (do not mutate the result)."""
        if not self._keyring.can_seal:
            return {}  # without operator keys nothing saved could be opened
        cached = self._cache.get(account_id)
        if cached is not None and cached.expires_at > self._clock():
            return cached.credentials
        task = self._loading.get(account_id)
        if task is None:
            task = asyncio.create_task(self._load(account_id))
            self._loading[account_id] = task
            task.add_done_callback(lambda done: self._settle(account_id, done))
        try:
            # Shielded: one caller giving up must not cancel the read the others wait for.
            return await asyncio.shield(task)
        except OrqenError as err:
            if cached is None:
                raise
            # Kept for another TTL: requests should not each wait for an accounting that is down.
            log.warning("accounting unreachable; using expired credentials", account_id=account_id, error=str(err))
            self._remember(account_id, cached.credentials)
            return cached.credentials

    async def save(
        self,
        account_id: str,
        provider: str,
        auth: str,
        secret: Mapping[str, str],
        base_url: str = "",
        region: str = "",
    ) -> accounting_pb2.CredentialInfo:
        """Validate, seal and store an account's credential for `provider` (replacing any)."""
        if not self._keyring.can_seal:
            raise credentials_not_configured()
        fields, info = validate_secret(provider, auth, secret, base_url, region)
        if info.base_url and not self._allow_private_base_urls:
            await refuse_private_address(info.base_url)
        info.account_id = account_id
        sealed = self._keyring.seal(fields, account_id, info.provider)
        try:
            stored: accounting_pb2.CredentialInfo = await self._accounting.PutCredential(
                accounting_pb2.SealedCredential(info=info, sealed=sealed), timeout=self._timeout
            )
        except grpc.aio.AioRpcError as err:
            raise from_rpc_error(err, "accounting") from None
        finally:
            # Even a failed (timed-out) put may have been stored.
            self.invalidate(account_id)
        return stored

    def invalidate(self, account_id: str) -> None:
        """Forget the account's credentials: the next call reads them again."""
        self._cache.pop(account_id, None)
        # A read already under way may predate the change: its answer is not kept (see _settle).
        self._loading.pop(account_id, None)

    async def _load(self, account_id: str) -> SavedCredentials:
        try:
            found: accounting_pb2.SealedCredentials = await self._accounting.GetSealedCredentials(
                accounting_pb2.AccountRef(account_id=account_id), timeout=self._timeout
            )
        except grpc.aio.AioRpcError as err:
            raise from_rpc_error(err, "accounting") from None
        opened: SavedCredentials = {}
        for credential in found.credentials:
            provider = credential.info.provider
            try:
                # Opened as the account asked for: a row of another account never opens here.
                opened[provider] = self._keyring.open(credential.sealed, account_id, provider)
                await self._reseal_if_old(credential, account_id)
            except UnusableCredentialError as err:
                log.warning(
                    "saved provider credential is unusable; ignoring it",
                    account_id=account_id,
                    provider=provider,
                    credential_id=credential.info.id,
                    key_id=credential.sealed.key_id,
                    reason=str(err),
                )
        return opened

    async def _reseal_if_old(self, credential: accounting_pb2.SealedCredential, account_id: str) -> None:
        """Key rotation: a secret sealed under an older key is sealed again under the active one.

        Each account's rows move to the new key the first time dispatch reads them, so an
        old key can be retired once no row names it (see the README). A failed write is
        only logged: the row still opens with the old key, and the next read tries again.
        """
        resealed = self._keyring.rotate(credential.sealed, account_id, credential.info.provider)
        if resealed is None:
            return
        try:
            await self._accounting.PutCredential(
                accounting_pb2.SealedCredential(info=credential.info, sealed=resealed), timeout=self._timeout
            )
        except grpc.aio.AioRpcError as err:
            log.warning("re-sealing a credential under the new key failed", credential_id=credential.info.id,
                        code=err.code().name)  # fmt: skip
            return
        log.info("credential re-sealed under the active key", credential_id=credential.info.id,
                 old_key_id=credential.sealed.key_id, key_id=resealed.key_id)  # fmt: skip

    def _settle(self, account_id: str, task: asyncio.Task[SavedCredentials]) -> None:
        failed = task.cancelled() or task.exception() is not None
        if self._loading.get(account_id) is not task:
            return  # invalidated while it ran: its answer may predate the change
        del self._loading[account_id]
        if not failed:
            self._remember(account_id, task.result())

    def _remember(self, account_id: str, credentials: SavedCredentials) -> None:
        now = self._clock()
        if account_id not in self._cache and len(self._cache) >= self._max_accounts:
            for stale in [a for a, c in self._cache.items() if c.expires_at <= now]:
                del self._cache[stale]
            if len(self._cache) >= self._max_accounts:
                del self._cache[next(iter(self._cache))]  # the oldest entry
        self._cache.pop(account_id, None)
        self._cache[account_id] = _Cached(now + self._ttl, credentials)
