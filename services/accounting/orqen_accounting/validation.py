"""What callers may store: checks of ids, sealed credentials, routing preferences and model toggles.

Every failure is an invalid_request that names the field, so the edge can show it as a 400.
"""

from __future__ import annotations

import math
import re
import uuid

from orqen.v1 import accounting_pb2
from orqen_accounting.repository import CacheSettings, Preferences, SealedCredentialFields
from orqen_common.errors import invalid_request
from orqen_common.response_cache import MAX_CACHE_TTL_SECONDS
from orqen_common.routing_modes import ROUTING_MODES

PROVIDER_NAME = re.compile(r"[a-z][a-z0-9_-]{0,63}")
AUTH_KINDS = ("api_key", "iam", "bearer")
MAX_FALLBACK_MODELS = 10
MAX_MODEL_NAME = 200
MAX_LAST4 = 4
MAX_BASE_URL = 2048
MAX_REGION = 64
MAX_KEY_ID = 128
# A sealed secret is a few hundred bytes (an IAM key pair at most); the cap only stops abuse.
MAX_SEALED_BYTES = 16 * 1024


def checked_uuid(value: str, field: str) -> str:
    """`value` in canonical UUID form; anything else names `field` in a 400."""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise invalid_request(f"Invalid {field} {value!r}: expected a UUID.") from None


def checked_credential(request: accounting_pb2.SealedCredential) -> SealedCredentialFields:
    """The storable fields of a sealed credential (the account is scoped by the caller)."""
    info, sealed = request.info, request.sealed
    if not PROVIDER_NAME.fullmatch(info.provider):
        raise invalid_request(
            f"Invalid info.provider {info.provider!r}: lowercase letters, digits, '_' or '-', "
            "starting with a letter, at most 64 characters."
        )
    if info.auth not in AUTH_KINDS:
        raise invalid_request(f"Invalid info.auth {info.auth!r}: expected one of {', '.join(AUTH_KINDS)}.")
    _check_length(info.last4, "info.last4", MAX_LAST4)
    _check_length(info.base_url, "info.base_url", MAX_BASE_URL)
    _check_length(info.region, "info.region", MAX_REGION)
    if not sealed.key_id:
        raise invalid_request("sealed.key_id is required: it names the key that sealed the secret.")
    _check_length(sealed.key_id, "sealed.key_id", MAX_KEY_ID)
    for field, value in (("sealed.nonce", sealed.nonce), ("sealed.ciphertext", sealed.ciphertext)):
        if not value:
            raise invalid_request(f"{field} is required.")
        if len(value) > MAX_SEALED_BYTES:
            raise invalid_request(f"{field} is longer than {MAX_SEALED_BYTES} bytes.")
    return SealedCredentialFields(
        provider=info.provider,
        auth=info.auth,
        last4=info.last4,
        base_url=info.base_url,
        region=info.region,
        key_id=sealed.key_id,
        nonce=sealed.nonce,
        ciphertext=sealed.ciphertext,
    )


def checked_cache_settings(request: accounting_pb2.CacheSettings) -> CacheSettings:
    """Cache settings with a TTL dispatch accepts."""
    if not 1 <= request.ttl_seconds <= MAX_CACHE_TTL_SECONDS:
        raise invalid_request(f"Invalid ttl_seconds {request.ttl_seconds}: between 1 and {MAX_CACHE_TTL_SECONDS}.")
    return CacheSettings(enabled=request.enabled, ttl_seconds=request.ttl_seconds)


def checked_preferences(request: accounting_pb2.RoutingPreferences) -> Preferences:
    """Routing preferences whose values make sense together."""
    if request.mode not in ROUTING_MODES:
        raise invalid_request(f"Invalid mode {request.mode!r}: expected one of {', '.join(ROUTING_MODES)}.")
    if request.k_floor < 0:
        raise invalid_request(f"Invalid k_floor {request.k_floor}: it must be 0 or more.")
    if request.k_cap != 0 and request.k_cap < request.k_floor:
        raise invalid_request(f"Invalid k_cap {request.k_cap}: 0 (no cap) or at least k_floor ({request.k_floor}).")
    share = request.ab_control_share
    if not (math.isfinite(share) and 0 <= share <= 1):
        raise invalid_request(f"Invalid ab_control_share {share}: it must be between 0 and 1.")
    fallbacks = list(request.fallback_models)
    if len(fallbacks) > MAX_FALLBACK_MODELS:
        raise invalid_request(f"fallback_models holds at most {MAX_FALLBACK_MODELS} models, not {len(fallbacks)}.")
    for model in fallbacks:
        checked_model(model, "fallback_models")
    if len(set(fallbacks)) != len(fallbacks):
        raise invalid_request("fallback_models names a model twice.")
    return Preferences(
        mode=request.mode,
        k_floor=request.k_floor,
        k_cap=request.k_cap,
        ab_control_share=share,
        fallback_models=tuple(fallbacks),
    )


def checked_model(model: str, field: str = "model") -> str:
    """A model id as accounting stores it: not blank, at most MAX_MODEL_NAME characters."""
    if not model.strip() or len(model) > MAX_MODEL_NAME:
        raise invalid_request(f"Invalid {field} {model[:40]!r}: a model id is 1 to {MAX_MODEL_NAME} characters.")
    return model


def _check_length(value: str, field: str, limit: int) -> None:
    if len(value) > limit:
        raise invalid_request(f"{field} is longer than {limit} characters.")


def checked_searchable(value: str, field: str) -> str:
    """A text to search a column for. Postgres text holds no NUL, so a NUL could match nothing; it
    is refused with a 400 rather than left to fail the query."""
    if "\x00" in value:
        raise invalid_request(f"Invalid {field}: it contains a NUL character, which no stored value has.")
    return value


def checked_count(value: int, field: str, default: int, limit: int) -> int:
    """A page size or period length: 0 means `default`; negative or above `limit` is a 400."""
    if value == 0:
        return default
    if not 0 < value <= limit:
        raise invalid_request(f"{field} must be between 1 and {limit}.")
    return value
