"""The edge keeps idle client connections open longer than the SDKs' pools keep them, so the
client is always the side that closes an idle connection (a server closing at the moment a
client reuses it resets that request: `make bench` at concurrency 64 lost requests that way).
"""

import httpx

from orqen_edge.server import _listener
from orqen_edge.settings import EdgeSettings

AIOHTTP_KEEPALIVE_SECONDS = 15.0  # aiohttp.TCPConnector's keepalive_timeout default (boto3 and others: shorter)


def _settings(**values: object) -> EdgeSettings:
    return EdgeSettings(internal_token="t" * 32, **values)  # type: ignore[arg-type]


def test_idle_connections_outlive_the_sdk_clients_pools() -> None:
    listener = _listener(object(), _settings(), 0, None)
    keep_alive = listener.config.timeout_keep_alive
    assert keep_alive == _settings().edge_keep_alive_seconds == 75
    httpx_expiry = httpx.Limits().keepalive_expiry  # the OpenAI and Anthropic SDKs' client
    assert httpx_expiry is not None and keep_alive > httpx_expiry
    assert keep_alive > AIOHTTP_KEEPALIVE_SECONDS


def test_the_keep_alive_is_an_operator_setting() -> None:
    listener = _listener(object(), _settings(edge_keep_alive_seconds=120), 0, None)
    assert listener.config.timeout_keep_alive == 120
