"""What an account may save as a provider credential: the secret's shape, base URL and region.

Values are checked before they are sealed, and never echoed in an error. A base URL is
also refused when its host is a private or local address (`refuse_private_address`),
since dispatch calls it from inside the deployment.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple
from urllib.parse import urlsplit

from orqen.v1 import accounting_pb2
from orqen_common.errors import invalid_request


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


def _region(value: str) -> str:
    value = value.strip()
    if not value:
        raise invalid_request("region is required for bedrock (e.g. us-east-1).")
    if not _AWS_REGION.fullmatch(value):
        raise invalid_request(f"region {value[:64]!r} is not an AWS region name such as us-east-1.")
    return value


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
