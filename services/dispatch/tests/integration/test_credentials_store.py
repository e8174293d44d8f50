"""CredentialStore and AccountConfigs over real gRPC against an in-memory stand-in for accounting.

The stand-in speaks the real contract (orqen.v1.Accounting, behind the shared server
interceptor): GetSealedCredentials is for services only and PutCredential is scoped to the
account, as accounting's own servicer does. It stores exactly what it is sent and, given a
Redis, bumps the account's change counter on every put, as accounting does.
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from redis.asyncio import Redis
from structlog.testing import capture_logs

from fakes.serve import free_port
from orqen.v1 import accounting_pb2, accounting_pb2_grpc
from orqen_common.cache import account_config_key
from orqen_common.context import Principal, account_scope, require_service
from orqen_common.deployments import BalancedModel, Deployment, to_message
from orqen_common.errors import OrqenError, not_found
from orqen_common.grpc_client import open_channel
from orqen_common.grpc_server import ServerInterceptor, ServicerContext
from orqen_dispatch.account_config import AccountConfig, AccountConfigs
from orqen_dispatch.credentials import CredentialStore, KeyRing

TOKEN = "internal-test-token"
OLD_KEY = "k1:" + base64.b64encode(bytes(range(32))).decode()
NEW_KEY = "k2:" + base64.b64encode(bytes(range(32, 64))).decode()
TTL = 30.0
ALICE, BOB = "acct-alice", "acct-bob"
OPENAI_KEY = "sk-proj-alice-0123456789"


LLAMA = BalancedModel(
    "llama-70b", "least_inflight", (Deployment("a", "vllm-a", weight=3), Deployment("b", "vllm-b", rpm=60))
)


class InMemoryAccounting(accounting_pb2_grpc.AccountingServicer):
    """GetSealedCredentials and PutCredential over a dict; one credential per account and provider."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], accounting_pb2.SealedCredential] = {}
        self.reads = 0
        self.credential_reads = 0
        self.read_gate: asyncio.Event | None = None  # when set, reads wait for it
        self.read_started = asyncio.Event()
        self.put_error: OrqenError | None = None
        self.fallbacks: list[str] = []
        self.disabled: list[str] = []
        self.balanced: list[accounting_pb2.ModelDeployments] = []
        self.preferences_error: OrqenError | None = None
        self.redis: Redis | None = None  # when set, every put bumps the account's change counter

    async def PutCredential(
        self, request: accounting_pb2.SealedCredential, context: ServicerContext
    ) -> accounting_pb2.CredentialInfo:
        account_id = account_scope(request.info.account_id)
        if self.put_error is not None:
            raise self.put_error
        row = accounting_pb2.SealedCredential()
        row.CopyFrom(request)
        now = Timestamp()
        now.GetCurrentTime()
        previous = self.rows.get((account_id, request.info.provider))
        row.info.id = previous.info.id if previous else str(uuid.uuid4())
        row.info.account_id = account_id
        row.info.created_at.CopyFrom(previous.info.created_at if previous else now)
        row.info.updated_at.CopyFrom(now)
        self.rows[(account_id, request.info.provider)] = row
        if self.redis is not None:
            await self.redis.incr(account_config_key(account_id))
        return row.info

    async def GetSealedCredentials(
        self, request: accounting_pb2.AccountRef, context: ServicerContext
    ) -> accounting_pb2.SealedCredentials:
        require_service()
        self.reads += 1
        self.credential_reads += 1
        self.read_started.set()
        account_id = account_scope(request.account_id)
        # Read before the gate: a gated read answers what was stored when it started.
        found = accounting_pb2.SealedCredentials(
            credentials=[row for (owner, _), row in self.rows.items() if owner == account_id]
        )
        if self.read_gate is not None:
            await self.read_gate.wait()
        return found

    async def GetRoutingPreferences(
        self, request: accounting_pb2.AccountRef, context: ServicerContext
    ) -> accounting_pb2.RoutingPreferences:
        self.reads += 1
        if self.preferences_error is not None:
            raise self.preferences_error
        return accounting_pb2.RoutingPreferences(
            account_id=account_scope(request.account_id), fallback_models=self.fallbacks
        )

    async def ListModelToggles(
        self, request: accounting_pb2.AccountRef, context: ServicerContext
    ) -> accounting_pb2.ModelToggles:
        self.reads += 1
        account_scope(request.account_id)
        return accounting_pb2.ModelToggles(
            toggles=[accounting_pb2.ModelToggle(model=m, enabled=False) for m in self.disabled]
        )

    async def GetCacheSettings(
        self, request: accounting_pb2.AccountRef, context: ServicerContext
    ) -> accounting_pb2.CacheSettings:
        return accounting_pb2.CacheSettings(account_id=account_scope(request.account_id), ttl_seconds=3600)

    async def ListModelDeployments(
        self, request: accounting_pb2.AccountRef, context: ServicerContext
    ) -> accounting_pb2.ModelDeploymentsList:
        self.reads += 1
        account_scope(request.account_id)
        return accounting_pb2.ModelDeploymentsList(models=self.balanced)

    def move(self, provider: str, from_account: str, to_account: str) -> None:
        """What someone with write access to accounting's tables could do."""
        row = self.rows.pop((from_account, provider))
        row.info.account_id = to_account
        self.rows[(to_account, provider)] = row


@dataclass
class FakeClock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Accounting:
    servicer: InMemoryAccounting
    addr: str
    server: grpc.aio.Server
    channels: list[grpc.aio.Channel] = field(default_factory=list)

    def configs(self, redis: Redis, clock: FakeClock, keys: str | None = OLD_KEY) -> AccountConfigs:
        """One dispatch replica's view of the accounts."""
        store = self.store(keys)
        return AccountConfigs(store, store.accounting, redis, TTL, clock=clock)

    def store(self, keys: str | None = OLD_KEY, *, allow_private: bool = True) -> CredentialStore:
        channel = open_channel(self.addr, TOKEN)
        self.channels.append(channel)
        return CredentialStore(
            accounting_pb2_grpc.AccountingStub(channel),
            KeyRing.from_setting(keys),
            rpc_timeout_seconds=5,
            # The base URLs of most tests are made up; the guard is tested on its own below.
            allow_private_base_urls=allow_private,
        )


async def _no_api_keys(key: str) -> Principal | None:
    return None


@pytest.fixture
async def accounting() -> AsyncIterator[Accounting]:
    servicer = InMemoryAccounting()  # type: ignore[abstract]  # only the credential methods are served
    server = grpc.aio.server(interceptors=[ServerInterceptor("accounting", TOKEN, _no_api_keys)])
    accounting_pb2_grpc.add_AccountingServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    fixture = Accounting(servicer, f"127.0.0.1:{port}", server)
    yield fixture
    for channel in fixture.channels:
        await channel.close()
    await server.stop(None)


async def test_a_saved_secret_reaches_accounting_only_sealed_and_opens_in_dispatch(accounting: Accounting) -> None:
    store = accounting.store()
    info = await store.save(ALICE, "openai", "api_key", {"api_key": OPENAI_KEY})
    assert info.id and info.account_id == ALICE and info.last4 == "6789" and info.created_at.seconds > 0
    stored = accounting.servicer.rows[(ALICE, "openai")]
    assert stored.sealed.key_id == "k1" and len(stored.sealed.nonce) == 12
    assert OPENAI_KEY.encode() not in stored.SerializeToString()
    assert await store.read(ALICE) == {"openai": {"api_key": OPENAI_KEY}}
    assert await store.read(BOB) == {}


async def test_every_kind_of_credential_round_trips(accounting: Accounting) -> None:
    store = accounting.store()
    iam = {"access_key_id": "AKIAALICE", "secret_access_key": "alice-secret-key-xyz", "session_token": "tok"}
    bedrock = await store.save(ALICE, "bedrock", "iam", iam, region="eu-west-1")
    compatible = await store.save(ALICE, "together", "", {"api_key": "tgp-alice-1234"}, "https://llm.example/v1/")
    assert (bedrock.auth, bedrock.region, bedrock.last4) == ("iam", "eu-west-1", "-xyz")
    assert compatible.base_url == "https://llm.example/v1"
    assert await store.read(ALICE) == {
        "bedrock": {**iam, "region": "eu-west-1"},
        "together": {"api_key": "tgp-alice-1234", "base_url": "https://llm.example/v1"},
    }


async def test_an_invalid_credential_is_a_400_and_nothing_is_stored(accounting: Accounting) -> None:
    with pytest.raises(OrqenError, match="region is required for bedrock") as refused:
        await accounting.store().save(ALICE, "bedrock", "bearer", {"bearer_token": "ABSK-alice-token"})
    assert refused.value.http_status == 400 and not accounting.servicer.rows


async def test_without_operator_keys_saving_is_refused_naming_the_setting(accounting: Accounting) -> None:
    store = accounting.store(keys="")
    with pytest.raises(OrqenError, match="ORQEN_CREDENTIALS_KEYS") as refused:
        await store.save(ALICE, "openai", "api_key", {"api_key": OPENAI_KEY})
    assert refused.value.kind.grpc_code == grpc.StatusCode.FAILED_PRECONDITION
    assert await store.read(ALICE) == {} and accounting.servicer.reads == 0


async def test_a_row_moved_to_another_account_does_not_open_and_is_logged_without_the_secret(
    accounting: Accounting,
) -> None:
    store = accounting.store()
    await store.save(ALICE, "openai", "api_key", {"api_key": OPENAI_KEY})
    await store.save(BOB, "anthropic", "api_key", {"api_key": "sk-ant-bob-0123456789"})
    accounting.servicer.move("openai", ALICE, BOB)
    with capture_logs() as logs:
        opened = await store.read(BOB)
    assert opened == {"anthropic": {"api_key": "sk-ant-bob-0123456789"}}  # the rest of the account still works
    [warning] = [entry for entry in logs if entry["log_level"] == "warning"]
    assert (warning["account_id"], warning["provider"], warning["key_id"]) == (BOB, "openai", "k1")
    assert "another account or provider" in warning["reason"]
    assert OPENAI_KEY not in repr(logs)


async def test_a_rotation_reseals_rows_as_they_are_read_so_the_old_key_can_be_retired(
    accounting: Accounting,
) -> None:
    await accounting.store(keys=OLD_KEY).save(ALICE, "openai", "api_key", {"api_key": OPENAI_KEY})
    await accounting.store(keys=OLD_KEY).save(BOB, "openai", "api_key", {"api_key": OPENAI_KEY})
    rotated = accounting.store(keys=f"{NEW_KEY},{OLD_KEY}")
    with capture_logs() as logs:
        assert await rotated.read(ALICE) == {"openai": {"api_key": OPENAI_KEY}}
    assert accounting.servicer.rows[(ALICE, "openai")].sealed.key_id == "k2"
    assert any(entry["event"] == "credential re-sealed under the active key" for entry in logs)
    await rotated.save(ALICE, "groq", "api_key", {"api_key": "gsk-alice-0123456789"})
    assert accounting.servicer.rows[(ALICE, "groq")].sealed.key_id == "k2"
    # With the old key retired, Alice's rows (re-sealed) still open; Bob's, never read since, do not.
    retired = accounting.store(keys=NEW_KEY)
    assert await retired.read(ALICE) == {
        "openai": {"api_key": OPENAI_KEY},
        "groq": {"api_key": "gsk-alice-0123456789"},
    }
    with capture_logs() as logs:
        assert await retired.read(BOB) == {}
    assert any("not in ORQEN_CREDENTIALS_KEYS" in entry.get("reason", "") for entry in logs)


async def test_accountings_refusal_of_a_put_reaches_the_caller(accounting: Accounting) -> None:
    accounting.servicer.put_error = not_found("Account acct-gone does not exist.")
    with pytest.raises(OrqenError, match="acct-gone does not exist") as refused:
        await accounting.store().save("acct-gone", "openai", "api_key", {"api_key": OPENAI_KEY})
    assert refused.value.http_status == 404


# --- AccountConfigs: the account's credentials, fallbacks and toggles, checked against Redis ----


@pytest.fixture
async def redis(orqen_redis_db_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(orqen_redis_db_url)
    yield client
    await client.aclose()


async def test_an_accounts_configuration_is_read_once_until_accounting_says_it_changed(
    accounting: Accounting, redis: Redis
) -> None:
    account = f"acct-{uuid.uuid4()}"
    clock = FakeClock()
    configs = accounting.configs(redis, clock)
    await accounting.store().save(account, "anthropic", "api_key", {"api_key": "sk-ant-first-0001"})
    accounting.servicer.fallbacks, accounting.servicer.disabled = ["claude-haiku-4-5"], ["gpt-5"]
    accounting.servicer.balanced = [to_message(LLAMA)]
    first = await configs.get(account)
    assert first == AccountConfig(
        {"anthropic": {"api_key": "sk-ant-first-0001"}},
        ("claude-haiku-4-5",),
        frozenset({"gpt-5"}),
        balanced_models={"llama-70b": LLAMA},
    )
    reads = accounting.servicer.reads
    clock.now += TTL - 1
    assert await configs.get(account) == first
    assert accounting.servicer.reads == reads, "unchanged: served from memory"

    # What accounting does on every change, wherever it was made: the next request sees it.
    await accounting.store().save(account, "anthropic", "api_key", {"api_key": "sk-ant-second-002"})
    accounting.servicer.fallbacks, accounting.servicer.balanced = [], []
    await redis.incr(account_config_key(account))
    changed = await configs.get(account)
    assert changed.credentials == {"anthropic": {"api_key": "sk-ant-second-002"}}
    assert changed.fallback_models == () and changed.disabled_models == frozenset({"gpt-5"})
    assert changed.balanced_models == {}


async def test_without_redis_a_copy_is_trusted_for_its_ttl_then_read_again(accounting: Accounting) -> None:
    account = f"acct-{uuid.uuid4()}"
    clock = FakeClock()
    dead = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.5)
    configs = accounting.configs(dead, clock)
    await accounting.store().save(account, "openai", "api_key", {"api_key": "sk-proj-first-0001"})
    with capture_logs() as logs:
        assert (await configs.get(account)).credentials == {"openai": {"api_key": "sk-proj-first-0001"}}
    assert any("redis unavailable" in entry["event"] for entry in logs)
    await accounting.store().save(account, "openai", "api_key", {"api_key": "sk-proj-second-002"})
    clock.now += TTL - 1
    assert (await configs.get(account)).credentials == {"openai": {"api_key": "sk-proj-first-0001"}}
    clock.now += 2
    assert (await configs.get(account)).credentials == {"openai": {"api_key": "sk-proj-second-002"}}
    await dead.aclose()


async def test_a_credential_saved_through_one_replica_is_used_by_the_next_request_on_every_replica(
    accounting: Accounting, redis: Redis
) -> None:
    accounting.servicer.redis = redis
    account = f"acct-{uuid.uuid4()}"
    clock = FakeClock()
    here, there = accounting.configs(redis, clock), accounting.configs(redis, clock)
    await accounting.store().save(account, "openai", "api_key", {"api_key": "sk-proj-first-0001"})
    assert (await here.get(account)).credentials == (await there.get(account)).credentials
    reads = accounting.servicer.credential_reads
    assert (await here.get(account)).credentials == {"openai": {"api_key": "sk-proj-first-0001"}}
    assert accounting.servicer.credential_reads == reads, "unchanged: served from memory"

    await here._store.save(account, "openai", "api_key", {"api_key": "sk-proj-second-002"})
    for replica in (here, there):
        assert (await replica.get(account)).credentials == {"openai": {"api_key": "sk-proj-second-002"}}


async def test_requests_that_miss_together_make_one_read(accounting: Accounting, redis: Redis) -> None:
    account = f"acct-{uuid.uuid4()}"
    configs = accounting.configs(redis, FakeClock())
    await accounting.store().save(account, "openai", "api_key", {"api_key": OPENAI_KEY})
    accounting.servicer.read_gate = gate = asyncio.Event()
    readers = [asyncio.create_task(configs.get(account)) for _ in range(20)]
    await accounting.servicer.read_started.wait()
    readers[0].cancel()  # one caller giving up does not cancel the read the others wait for
    gate.set()
    results = await asyncio.gather(*readers[1:])
    assert accounting.servicer.credential_reads == 1
    assert all(r.credentials == {"openai": {"api_key": OPENAI_KEY}} for r in results)
    assert (await configs.get(account)).credentials == {"openai": {"api_key": OPENAI_KEY}}
    assert accounting.servicer.credential_reads == 1, "the read was kept although its first caller left"


async def test_a_request_after_a_change_never_waits_for_a_read_that_started_before_it(
    accounting: Accounting, redis: Redis
) -> None:
    accounting.servicer.redis = redis
    account = f"acct-{uuid.uuid4()}"
    configs = accounting.configs(redis, FakeClock())
    await accounting.store().save(account, "openai", "api_key", {"api_key": "sk-proj-first-0001"})
    accounting.servicer.read_gate = gate = asyncio.Event()
    before = asyncio.create_task(configs.get(account))
    await accounting.servicer.read_started.wait()
    await accounting.store().save(account, "openai", "api_key", {"api_key": "sk-proj-second-002"})
    accounting.servicer.read_gate = None  # reads from now on answer at once
    async with asyncio.timeout(10):  # joined to the read under way, it would wait for ever
        after = await configs.get(account)
    assert after.credentials == {"openai": {"api_key": "sk-proj-second-002"}} and not before.done()
    gate.set()
    assert (await before).credentials == {"openai": {"api_key": "sk-proj-first-0001"}}
    assert (await configs.get(account)).credentials == {"openai": {"api_key": "sk-proj-second-002"}}
    assert accounting.servicer.credential_reads == 2


async def test_when_accounting_is_down_the_last_credentials_read_are_used(accounting: Accounting, redis: Redis) -> None:
    account, never_read = f"acct-{uuid.uuid4()}", f"acct-{uuid.uuid4()}"
    clock = FakeClock()
    configs = accounting.configs(redis, clock)
    await accounting.store().save(account, "openai", "api_key", {"api_key": OPENAI_KEY})
    assert (await configs.get(account)).credentials == {"openai": {"api_key": OPENAI_KEY}}
    await accounting.server.stop(None)
    clock.now += TTL + 1
    with capture_logs() as logs:
        assert (await configs.get(account)).credentials == {"openai": {"api_key": OPENAI_KEY}}
    assert any(entry["event"] == "accounting unreachable; using expired credentials" for entry in logs)
    with pytest.raises(OrqenError) as unavailable:
        await configs.get(never_read)  # nothing read before: nothing to fall back on
    assert unavailable.value.http_status == 503


async def test_when_accounting_cannot_give_the_preferences_routing_goes_on_without_them(
    accounting: Accounting, redis: Redis
) -> None:
    account = f"acct-{uuid.uuid4()}"
    accounting.servicer.preferences_error = OrqenError.of(grpc.StatusCode.UNAVAILABLE, "database down")
    configs = accounting.configs(redis, FakeClock())
    with capture_logs() as logs:
        config = await configs.get(account)
    assert config.fallback_models == () and config.credentials == {}
    assert any(entry["event"] == "account routing settings unavailable" for entry in logs)
    # Not remembered: the next request asks again, and gets them once accounting is back.
    accounting.servicer.preferences_error = None
    accounting.servicer.fallbacks = ["gpt-4o-mini"]
    assert (await configs.get(account)).fallback_models == ("gpt-4o-mini",)


@pytest.mark.parametrize(
    "base_url",
    ["http://127.0.0.1:8000/v1", "http://localhost/v1", "http://169.254.169.254/latest", "http://10.1.2.3/v1",
     "http://[::1]:8000/v1", "http://100.64.0.1/v1"],
)  # fmt: skip
async def test_a_base_url_on_a_private_or_local_address_is_refused_unless_the_operator_allows_it(
    accounting: Accounting, base_url: str
) -> None:
    guarded = accounting.store(allow_private=False)
    with pytest.raises(OrqenError) as refused:
        await guarded.save(ALICE, "local", "api_key", {"api_key": "sk-local-0123456789"}, base_url)
    assert refused.value.http_status == 400 and "ORQEN_ALLOW_PRIVATE_BASE_URLS" in refused.value.message
    assert not accounting.servicer.rows
    assert (await accounting.store().save(ALICE, "local", "api_key", {"api_key": "sk-local-0123456789"}, base_url)).id


async def test_a_base_url_whose_host_does_not_resolve_is_refused_and_a_public_one_is_kept(
    accounting: Accounting,
) -> None:
    guarded = accounting.store(allow_private=False)
    with pytest.raises(OrqenError, match="cannot be resolved"):
        await guarded.save(ALICE, "together", "api_key", {"api_key": "tgp-0123456789"}, "https://llm.invalid/v1")
    saved = await guarded.save(ALICE, "together", "api_key", {"api_key": "tgp-0123456789"}, "https://8.8.8.8/v1")
    assert saved.base_url == "https://8.8.8.8/v1"


async def test_a_stored_balanced_model_that_no_longer_passes_the_checks_is_left_out(
    accounting: Accounting, redis: Redis
) -> None:
    account = f"acct-{uuid.uuid4()}"
    broken = to_message(LLAMA)
    broken.model, broken.deployments[0].weight = "too-heavy", 5000
    accounting.servicer.balanced = [broken, to_message(LLAMA)]
    configs = accounting.configs(redis, FakeClock())
    with capture_logs() as logs:
        config = await configs.get(account)
    assert config.balanced_models == {"llama-70b": LLAMA}  # the account's other models still work
    assert any(entry["event"] == "stored deployments are invalid; model not balanced" for entry in logs)
