import time
from collections.abc import Callable

import grpc
import pytest

from orqen.v1 import accounting_pb2
from orqen_common.auth import (
    API_KEY_PREFIX,
    ApiKeyAuthenticator,
    authenticate_bearer,
    bearer_token,
    display_prefix,
    generate_api_key,
    hash_api_key,
)
from orqen_common.cache import AuthCacheKeys
from orqen_common.context import SERVICE_PRINCIPAL, Principal
from orqen_common.errors import OrqenError


def test_generated_keys_are_unique_prefixed_and_stored_only_as_hashes() -> None:
    a, b = generate_api_key(), generate_api_key()
    assert a != b and a.startswith(API_KEY_PREFIX) and len(a) > 40
    digest = hash_api_key(a)
    assert digest == hash_api_key(a) and a not in digest and len(digest) == 64
    assert display_prefix(a) == a[: len(API_KEY_PREFIX) + 4]


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer sk-orq-abc", "sk-orq-abc"),
        ("bearer   sk-orq-abc ", "sk-orq-abc"),
        ("Basic dXNlcjpwYXNz", None),
        ("Bearer ", None),
        ("", None),
        (None, None),
    ],
)
def test_bearer_token_parsing(header: str | None, token: str | None) -> None:
    assert bearer_token(header) == token


async def test_internal_token_is_a_service_and_keys_go_to_the_verifier() -> None:
    seen: list[str] = []

    async def verify(key: str) -> Principal | None:
        seen.append(key)
        return Principal(kind="api_key", account_id="acct") if key == "sk-orq-good" else None

    assert await authenticate_bearer("internal-secret", "internal-secret", verify) is SERVICE_PRINCIPAL
    assert (await authenticate_bearer("sk-orq-good", "internal-secret", verify)).account_id == "acct"  # type: ignore[union-attr]
    assert await authenticate_bearer("sk-orq-bad", "internal-secret", verify) is None
    assert await authenticate_bearer(None, "internal-secret", verify) is None
    assert seen == ["sk-orq-good", "sk-orq-bad"]


def test_auth_cache_entries_are_named_and_sealed_with_the_internal_token() -> None:
    keys, other_deployment = AuthCacheKeys("internal-secret"), AuthCacheKeys("another-secret")
    alice, mallory = hash_api_key("sk-orq-alice"), hash_api_key("sk-orq-mallory")
    # Names reveal neither the key's hash nor, without the token, where a given key's entry is.
    assert keys.name(alice).startswith("orqen:auth:") and alice not in keys.name(alice)
    assert keys.name(alice) != other_deployment.name(alice) and keys.name(alice) != keys.name(mallory)
    payload = b'{"a":"acct","k":"key","n":"acme"}'
    sealed = keys.seal(alice, payload)
    assert keys.unseal(alice, sealed) == payload
    # Replayed under another key, sealed by someone without the token, or altered: refused.
    assert keys.unseal(mallory, sealed) is None
    assert keys.unseal(alice, other_deployment.seal(alice, payload)) is None
    assert keys.unseal(alice, sealed[:-2] + b"}}") is None
    assert keys.unseal(alice, payload) is None  # an entry in the old, unsealed format
    assert keys.unseal(alice, b"") is None


class MemoryRedis:
    """The two Redis calls the authenticator makes, over a dict (TTLs are not what is tested here)."""

    def __init__(self) -> None:
        self.values: dict[str, bytes] = {}

    async def get(self, key: str) -> bytes | None:
        return self.values.get(key)

    async def set(self, key: str, value: bytes, ex: int) -> None:
        self.values[key] = value


class Accounting:
    """Accounting's Authenticate: knows one key, or is away (restarting) and answers UNAVAILABLE."""

    def __init__(self, key: str) -> None:
        self.key_hash = hash_api_key(key)
        self.away = False
        self.calls = 0

    async def Authenticate(
        self,
        request: accounting_pb2.AuthenticateRequest,
        timeout: float,  # noqa: ASYNC109 (gRPC stub signature)
    ) -> accounting_pb2.AuthenticateResponse:
        self.calls += 1
        if self.away:
            raise grpc.aio.AioRpcError(
                grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), "connection refused"
            )
        if request.key_hash != self.key_hash:
            raise grpc.aio.AioRpcError(grpc.StatusCode.NOT_FOUND, grpc.aio.Metadata(), grpc.aio.Metadata(), "no")
        return accounting_pb2.AuthenticateResponse(account_id="acct", api_key_id="key", account_name="acme")


async def test_a_known_keys_last_verdict_holds_while_accounting_restarts(monkeypatch: pytest.MonkeyPatch) -> None:
    accounting = Accounting("sk-orq-alice")
    verify = ApiKeyAuthenticator(MemoryRedis(), accounting, 60, AuthCacheKeys("internal"), stale_seconds=3600)  # type: ignore[arg-type]
    now = 1_000_000.0
    monkeypatch.setattr(time, "time", lambda: now)
    assert (await verify("sk-orq-alice")).account_id == "acct"  # type: ignore[union-attr]
    now += 61  # the verdict is past its TTL: accounting is asked again
    accounting.away = True
    assert (await verify("sk-orq-alice")).account_id == "acct"  # type: ignore[union-attr]
    assert accounting.calls == 2
    # A key accounting never vouched for gets no verdict to fall back on: the caller sees a 503.
    with pytest.raises(OrqenError) as refused:
        await verify("sk-orq-mallory")
    assert refused.value.http_status == 503
    now += 3600  # past TTL and grace: no verdict stands in any more
    with pytest.raises(OrqenError):
        await verify("sk-orq-alice")


async def test_a_stale_verdict_is_not_used_when_accounting_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    accounting = Accounting("sk-orq-alice")
    verify = ApiKeyAuthenticator(MemoryRedis(), accounting, 60, AuthCacheKeys("internal"), stale_seconds=3600)  # type: ignore[arg-type]
    now = 1_000_000.0
    monkeypatch.setattr(time, "time", lambda: now)
    assert await verify("sk-orq-alice") is not None
    accounting.key_hash = "revoked"  # accounting no longer knows the key
    now += 61
    assert await verify("sk-orq-alice") is None


class Watch:
    """A change watch as the authenticator sees one: sure it hears (an epoch) or not (None), and what it hears."""

    def __init__(self) -> None:
        self.epoch: int | None = 1
        self.listeners: list[Callable[[str, str], None]] = []

    def current(self) -> int | None:
        return self.epoch

    def listen(self, listener: Callable[[str, str], None]) -> None:
        self.listeners.append(listener)

    def hear(self, kind: str, subject: str) -> None:
        for listener in self.listeners:
            listener(kind, subject)


class CountingRedis(MemoryRedis):
    def __init__(self, during_get: Callable[[], None] = lambda: None) -> None:
        super().__init__()
        self.gets = 0
        self.during_get = during_get

    async def get(self, key: str) -> bytes | None:
        self.gets += 1
        self.during_get()
        return await super().get(key)


async def test_with_a_watch_a_known_keys_verdict_is_kept_in_process_until_its_revocation_is_heard() -> None:
    accounting, redis, watch = Accounting("sk-orq-alice"), CountingRedis(), Watch()
    verify = ApiKeyAuthenticator(redis, accounting, 60, AuthCacheKeys("internal"), watch=watch)  # type: ignore[arg-type]
    for _ in range(3):
        assert (await verify("sk-orq-alice")).account_id == "acct"  # type: ignore[union-attr]
    assert (redis.gets, accounting.calls) == (1, 1)  # the first call only
    # Revoked: accounting deletes the Redis entry and announces it.
    accounting.key_hash, redis.values = "revoked", {}
    watch.hear("account", "acct")  # another kind of change leaves the verdict alone
    assert await verify("sk-orq-alice") is not None and redis.gets == 1
    watch.hear("key", hash_api_key("sk-orq-alice"))
    assert await verify("sk-orq-alice") is None and (redis.gets, accounting.calls) == (2, 2)


async def test_no_verdict_is_kept_while_the_watch_is_unsure_or_a_revocation_came_during_the_read() -> None:
    accounting, watch = Accounting("sk-orq-alice"), Watch()
    redis = CountingRedis(during_get=lambda: watch.hear("key", "some other key"))
    verify = ApiKeyAuthenticator(redis, accounting, 60, AuthCacheKeys("internal"), watch=watch)  # type: ignore[arg-type]
    await verify("sk-orq-alice")
    await verify("sk-orq-alice")
    assert redis.gets == 2  # each read heard a revocation it might have missed: nothing kept
    redis.during_get = lambda: None
    await verify("sk-orq-alice")
    await verify("sk-orq-alice")
    assert redis.gets == 3  # read quietly once, then kept
    watch.epoch = None  # the subscription was lost: every use asks Redis
    await verify("sk-orq-alice")
    assert redis.gets == 4
    watch.epoch = 2  # a new subscription may have missed messages: checked once, then kept again
    await verify("sk-orq-alice")
    await verify("sk-orq-alice")
    assert redis.gets == 5


async def test_unknown_keys_are_never_kept_in_process() -> None:
    accounting, redis = Accounting("sk-orq-alice"), CountingRedis()
    verify = ApiKeyAuthenticator(redis, accounting, 60, AuthCacheKeys("internal"), watch=Watch())  # type: ignore[arg-type]
    assert await verify("sk-orq-mallory") is None
    assert await verify("sk-orq-mallory") is None
    assert redis.gets == 2 and accounting.calls == 1  # the second from Redis's brief memory of it
