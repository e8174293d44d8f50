"""Which credentials one call to a provider uses.

Those sent with the request win, then the account's saved credential, then the
operator's environment (the provider's own default, used when the mapping is empty).
The caller's own provider key goes only to the provider its model names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from orqen_dispatch.credentials.validation import BASE_URL, REGION

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
# Where the edge puts the X-Orqen-Provider-Key header.
PROVIDER_KEY = "api_key"


def merge(
    per_request: Mapping[str, str], saved: Mapping[str, str] | None, provider_name: str, requested_provider: str | None
) -> dict[str, str]:
    """The credentials one call to `provider_name` uses.

    The caller's own credential (the aws_* extensions, or "api_key" from the
    X-Orqen-Provider-Key header) replaces the account's saved one whole: a call never
    mixes the caller's key id with the account's secret. The saved region or base_url
    still applies unless the caller gave its own region. With neither, the mapping is
    empty and the provider uses the operator's environment. Only keys the provider
    reads are taken from the request: a caller can never set a base_url.

    `requested_provider` is the provider the request's model names (None for a routing
    string, which names none). The caller's provider key is meant for that provider only:
    a fallback on another provider, or a model a routing rule picked, is called without
    it, since sending it there would hand one provider's key to another. (The aws_* fields
    are Bedrock's alone: no other provider reads them.)
    """
    if provider_name != requested_provider:
        per_request = {key: value for key, value in per_request.items() if key != PROVIDER_KEY}
    names: Mapping[str, str]
    auth_keys: Sequence[str]
    if provider_name == "bedrock":
        names, auth_keys = _BEDROCK_KEYS, _BEDROCK_AUTH
        caller = {key: per_request[key] for key in (*_BEDROCK_AUTH, "aws_region_name") if per_request.get(key)}
        # A Bedrock API key sent in the provider key header is a bearer token.
        if per_request.get(PROVIDER_KEY) and not any(key in caller for key in _BEDROCK_AUTH):
            caller["aws_bearer_token_bedrock"] = per_request[PROVIDER_KEY]
    else:
        names, auth_keys = _API_KEY_KEYS, ("api_key",)
        caller = {"api_key": per_request[PROVIDER_KEY]} if per_request.get(PROVIDER_KEY) else {}
    merged = {names[field]: value for field, value in (saved or {}).items() if field in names and value}
    if any(key in caller for key in auth_keys):
        merged = {key: value for key, value in merged.items() if key not in auth_keys}
    return {**merged, **caller}
