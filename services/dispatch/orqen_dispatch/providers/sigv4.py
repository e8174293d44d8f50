"""AWS Signature Version 4 for the calls dispatch makes to Bedrock: the headers botocore's SigV4Auth adds.

botocore builds an AWSRequest, copies its headers into a case-insensitive map, parses the URL
three times and derives the signing key anew for every call: about 60 µs of a Bedrock call's
CPU in dispatch (py-spy under `make bench`). This computes the same canonical request for the
requests dispatch sends (a method, a URL, a body with its content type), keeps the signing key
for its day, and gives the same headers; tests check it against botocore byte for byte.
"""

from __future__ import annotations

import hmac
from datetime import UTC, datetime
from functools import lru_cache
from hashlib import sha256
from urllib.parse import SplitResult, quote, urlsplit

from botocore.credentials import Credentials as AwsKeys
from botocore.utils import normalize_url_path

_ALGORITHM = "AWS4-HMAC-SHA256"
_DEFAULT_PORTS = {"http": 80, "https": 443}


def sigv4_headers(
    method: str,
    url: str,
    body: bytes,
    keys: AwsKeys,
    region: str,
    service: str,
    content_type: str = "",
    now: datetime | None = None,
) -> dict[str, str]:
    """The headers that sign the request (Content-Type when given, X-Amz-Date, X-Amz-Security-Token, Authorization)."""
    timestamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    headers = {"Content-Type": content_type} if content_type else {}
    headers["X-Amz-Date"] = timestamp
    if keys.token:
        headers["X-Amz-Security-Token"] = keys.token
    parts = urlsplit(url)
    signing = [(name.lower(), " ".join(value.split())) for name, value in headers.items()]
    canonical_headers = sorted([*signing, ("host", _host(parts))])
    signed = ";".join(name for name, _ in canonical_headers)
    canonical_request = "\n".join(
        (
            method.upper(),
            quote(normalize_url_path(parts.path), safe="/~"),
            _canonical_query(parts.query),
            "".join(f"{name}:{value}\n" for name, value in canonical_headers),
            signed,
            sha256(body).hexdigest(),
        )
    )
    scope = f"{timestamp[:8]}/{region}/{service}/aws4_request"
    string_to_sign = f"{_ALGORITHM}\n{timestamp}\n{scope}\n{sha256(canonical_request.encode()).hexdigest()}"
    key = _signing_key(keys.secret_key, timestamp[:8], region, service)
    signature = hmac.new(key, string_to_sign.encode(), sha256).hexdigest()
    headers["Authorization"] = (
        f"{_ALGORITHM} Credential={keys.access_key}/{scope}, SignedHeaders={signed}, Signature={signature}"
    )
    return headers


@lru_cache(maxsize=64)
def _signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = f"AWS4{secret}".encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), sha256).digest()
    return key


def _host(parts: SplitResult) -> str:
    """The Host header as botocore signs it: lowercase, without userinfo or the scheme's default port."""
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    if parts.port is not None and parts.port != _DEFAULT_PORTS.get(parts.scheme):
        host = f"{host}:{parts.port}"
    return host


def _canonical_query(query: str) -> str:
    """The query's pairs sorted, as given (the URL is already encoded)."""
    if not query:
        return ""
    pairs = sorted(pair.partition("=")[::2] for pair in query.split("&"))
    return "&".join(f"{key}={value}" for key, value in pairs)
