"""Edge settings."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from orqen_common.prices import PriceSettings
from orqen_common.settings import (
    AccountingAddress,
    BillingAddress,
    DispatchAddress,
    NatsSettings,
    OptimizerAddress,
    RedisSettings,
    ServiceSettings,
)


class EdgeSettings(
    ServiceSettings,
    OptimizerAddress,
    DispatchAddress,
    AccountingAddress,
    BillingAddress,
    RedisSettings,
    NatsSettings,
    PriceSettings,
):
    """Configuration of the edge (ORQEN_* environment variables); it calls all four gRPC services."""

    edge_host: str = Field("0.0.0.0", description="Interface the HTTP and HTTPS listeners bind to.")
    edge_port: int = Field(8080, description="HTTP port (SDK routes, account API, /metrics, probes).")
    edge_tls_port: int = Field(8443, description="HTTPS port; 0 disables it. Bedrock clients need it.")
    edge_keep_alive_seconds: int = Field(
        75,
        ge=1,
        description="How long an idle client connection is kept open. Longer than the SDKs' own pools keep one "
        "(httpx 5 s, aiohttp 15 s), so the client always closes first: a server that closes at the same moment "
        "a client reuses the connection resets that request.",
    )
    tls_cert: Path | None = Field(None, description="PEM certificate of the HTTPS port; unset: a development one.")
    tls_key: Path | None = Field(None, description="PEM private key matching ORQEN_TLS_CERT.")
    home: Path = Field(Path(".orqen"), description="Local state directory (the development certificate lives here).")
    max_body_bytes: int = Field(10 * 1024 * 1024, description="Largest accepted JSON request body, in bytes.")
    max_upload_bytes: int = Field(
        64 * 1024 * 1024,
        description="Largest multipart upload (audio, image edits) of the proxy families; streamed, never held whole.",
    )
    optimizer_deadline_ms: int = Field(
        150, description="Longest wait for an optimization plan before forwarding the original payload."
    )
    optimizer_channels: int = Field(
        64,
        ge=1,
        description="Connections to the optimizer at start: each lands on one of its worker processes at random, "
        "and plans go to the worker with the fewest in flight, so keep several per worker (ORQEN_OPTIMIZER_WORKERS). "
        "Up to as many again are opened while some worker is reached by none.",
    )
    optimize_context_chars: int = Field(
        20_000, description="Requests without tools are sent to the optimizer once their messages are this long."
    )
    event_buffer: int = Field(10_000, description="Request events buffered while NATS is unreachable.")
    # Rate limits (orqen_edge.rate_limit): per minute, shared by every edge replica through Redis.
    rate_limit_key_rpm: int = Field(0, ge=0, description="Requests per minute allowed to one API key; 0: unlimited.")
    rate_limit_key_tpm: int = Field(
        0, ge=0, description="Tokens (input + output) per minute allowed to one API key; 0: unlimited."
    )
    rate_limit_account_rpm: int = Field(
        0, ge=0, description="Requests per minute allowed to one account, all its keys together; 0: unlimited."
    )
    rate_limit_account_tpm: int = Field(
        0, ge=0, description="Tokens per minute allowed to one account, all its keys together; 0: unlimited."
    )
    # Budgets and per-key limits (orqen_edge.budgets): defined in accounting, enforced here.
    budget_policy_ttl_seconds: float = Field(
        5.0,
        gt=0,
        description="How long an edge replica uses an account's budgets and key limits before asking accounting "
        "again: a change made through the account API holds on every replica within this time.",
    )
    # Dashboard sessions (orqen_edge.dashboard.session_store): account owners' browser logins.
    session_idle_seconds: int = Field(
        2 * 3600, ge=60, description="A dashboard session ends after this long without a request."
    )
    session_max_seconds: int = Field(
        7 * 24 * 3600, ge=60, description="A dashboard session ends this long after login, however active."
    )
    session_cookie_secure: bool = Field(
        True, description="Mark the session cookie Secure (HTTPS only); turn off only for plain-HTTP development."
    )
    login_max_failures: int = Field(
        10, ge=1, description="Failed logins allowed per email in 15 minutes before logins for it answer 429."
    )
