"""The orqen.v1.Accounting gRPC service."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import asyncpg
import grpc
import structlog
from google.protobuf.timestamp_pb2 import Timestamp
from redis.asyncio import Redis
from redis.exceptions import RedisError

from orqen.v1 import accounting_pb2, accounting_pb2_grpc, usage_pb2
from orqen_accounting.budgets import (
    BudgetRepository,
    budget_message,
    budgets_with_use,
    checked_budget,
    checked_key_limits,
    timestamp_datetime,
)
from orqen_accounting.ledger_record import request_message
from orqen_accounting.owners import (
    MAX_INVITE_TOKEN,
    MAX_PASSWORD,
    EmailTakenError,
    LastOwnerError,
    Owner,
    OwnerRepository,
    UnknownInviterError,
    WrongPasswordError,
    checked_email,
    checked_password,
)
from orqen_accounting.pagination import InvalidCursorError
from orqen_accounting.repository import (
    DEFAULT_CACHE_SETTINGS,
    DEFAULT_PREFERENCES,
    AccountingRepository,
    CacheSettings,
    KeyConflictError,
    Preferences,
    RequestFilter,
    UnknownAccountError,
)
from orqen_accounting.routing_stats import RoutingStats, insights
from orqen_accounting.stored_json import list_from_json, plain_dict, to_json
from orqen_accounting.tool_learning import ToolLearningStore
from orqen_accounting.usage import UsageStats
from orqen_accounting.validation import (
    checked_cache_settings,
    checked_count,
    checked_credential,
    checked_model,
    checked_preferences,
    checked_searchable,
    checked_uuid,
)
from orqen_common.auth import API_KEY_PREFIX, hash_api_key
from orqen_common.cache import AuthCacheKeys, account_config_key
from orqen_common.caller_text import checked_text
from orqen_common.changes import ACCOUNT, KEY, announce
from orqen_common.context import Principal, account_scope, require_service
from orqen_common.deployments import from_message, to_message
from orqen_common.errors import OrqenError, invalid_request, not_found, unavailable
from orqen_common.grpc_server import ServicerContext

_MAX_PAGE = 200
TRACES_PAGE, MAX_TRACES_PAGE = 50, 200
PERIOD_DAYS, MAX_PERIOD_DAYS = 7, 90
USAGE_DAYS, MAX_USAGE_DAYS = 30, 366
SESSIONS_PAGE, MAX_SESSIONS_PAGE = 50, 200
TOOLS_LIMIT, MAX_TOOLS_LIMIT = 200, 1000
_STATUS_FILTER = re.compile(r"success|error|[1-5][0-9][0-9]")

log = structlog.get_logger(__name__)


class AccountingServicer(accounting_pb2_grpc.AccountingServicer):
    """`redis` is where services cache what accounting owns (orqen_common.cache), API keys under `auth_cache`."""

    def __init__(
        self,
        repo: AccountingRepository,
        routing: RoutingStats,
        usage: UsageStats,
        redis: Redis,
        auth_cache: AuthCacheKeys,
    ) -> None:
        self._repo = repo
        self._routing = routing
        self._usage = usage
        self._redis = redis
        self._auth_cache = auth_cache
        self._owners = OwnerRepository(repo.pool)
        self._budgets = BudgetRepository(repo.pool)
        self._learning = ToolLearningStore(redis)

    async def Authenticate(
        self, request: accounting_pb2.AuthenticateRequest, context: ServicerContext
    ) -> accounting_pb2.AuthenticateResponse:
        require_service()
        owner = await self._repo.key_owner(request.key_hash)
        if owner is None:
            raise not_found("Unknown or revoked API key.")
        return accounting_pb2.AuthenticateResponse(
            account_id=owner.account_id, api_key_id=owner.api_key_id, account_name=owner.account_name
        )

    async def EnsureAccount(
        self, request: accounting_pb2.EnsureAccountRequest, context: ServicerContext
    ) -> accounting_pb2.Account:
        require_service()
        name = checked_text(request.name, "name").strip()
        if not name:
            raise invalid_request("Account name is required.")
        row = await self._repo.ensure_account(name)
        return accounting_pb2.Account(id=row["id"], name=row["name"], created_at=_timestamp(row["created_at"]))

    async def CreateApiKey(
        self, request: accounting_pb2.CreateApiKeyRequest, context: ServicerContext
    ) -> accounting_pb2.CreateApiKeyResponse:
        account_id = _account(request.account_id)
        if request.plaintext and not request.plaintext.startswith(API_KEY_PREFIX):
            raise invalid_request(f"API keys start with {API_KEY_PREFIX!r}.")
        if not await self._repo.account_exists(account_id):
            raise _no_such_account()
        try:
            key = await self._repo.create_key(account_id, checked_text(request.name, "name"), request.plaintext or None)
        except KeyConflictError:
            raise OrqenError.of(grpc.StatusCode.ALREADY_EXISTS, "That key belongs to another account.") from None
        return accounting_pb2.CreateApiKeyResponse(
            api_key_id=key.api_key_id, plaintext=key.plaintext, prefix=key.prefix
        )

    async def ListRequests(
        self, request: accounting_pb2.ListRequestsRequest, context: ServicerContext
    ) -> accounting_pb2.ListRequestsResponse:
        account_id = _account(request.account_id)
        limit = min(request.limit or 50, _MAX_PAGE)
        try:
            rows, next_cursor = await self._repo.list_requests(account_id, limit, request.cursor, _filter(request))
        except InvalidCursorError:
            raise invalid_request("Invalid pagination cursor.") from None
        return accounting_pb2.ListRequestsResponse(requests=[request_message(r) for r in rows], next_cursor=next_cursor)

    async def GetRequest(
        self, request: accounting_pb2.GetRequestRequest, context: ServicerContext
    ) -> accounting_pb2.RequestRecord:
        account_id = _account(request.account_id)
        row = await self._repo.get_request(account_id, checked_searchable(request.request_id, "request_id"))
        if row is None:
            raise not_found(f"No request {request.request_id!r} in this account.")
        return request_message(row)

    # --- API keys --------------------------------------------------------------------

    async def ListApiKeys(
        self, request: accounting_pb2.AccountRef, context: ServicerContext
    ) -> accounting_pb2.ListApiKeysResponse:
        account_id = _account(request.account_id)
        rows = await self._of_account(account_id, await self._repo.list_keys(account_id))
        return accounting_pb2.ListApiKeysResponse(keys=[_key_info(r) for r in rows])

    async def RevokeApiKey(
        self, request: accounting_pb2.ApiKeyRef, context: ServicerContext
    ) -> accounting_pb2.ApiKeyInfo:
        account_id = _account(request.account_id)
        api_key_id = checked_uuid(request.api_key_id, "api_key_id")
        row = await self._repo.revoke_key(account_id, api_key_id)
        if row is None:
            # The same answer for another account's key as for no key: ids reveal nothing.
            raise not_found(f"No API key {api_key_id} in this account.")
        await self._forget_cached_key(row["key_hash"])
        return _key_info(row)

    async def _forget_cached_key(self, key_hash: str) -> None:
        """Drop the cached verdict on a key, so a revocation holds at once rather than after the cache TTL."""
        try:
            # Announced too: services that keep verdicts in process drop this one as the message arrives.
            await announce(self._redis, KEY, key_hash, lambda redis: redis.delete(self._auth_cache.name(key_hash)))
        except RedisError as err:
            # Redis is only a cache: the revocation is recorded, and an entry left behind
            # expires within ORQEN_AUTH_CACHE_TTL_SECONDS.
            log.warning("auth cache unavailable; a revoked key may stay cached until its TTL", error=str(err))

    async def _config_changed(self, account_id: str) -> None:
        """Tell dispatch replicas that the account's credentials, preferences, toggles or cache settings changed."""
        try:
            await announce(self._redis, ACCOUNT, account_id, lambda redis: redis.incr(account_config_key(account_id)))
        except RedisError as err:
            # Dispatch then sees the change when its cached copy expires
            # (ORQEN_ACCOUNT_CONFIG_TTL_SECONDS).
            log.warning("redis unavailable; dispatch sees this account change after its cache TTL", error=str(err))

    # --- provider credentials ----------------------------------------------------------

    async def PutCredential(
        self, request: accounting_pb2.SealedCredential, context: ServicerContext
    ) -> accounting_pb2.CredentialInfo:
        account_id = _account(request.info.account_id)
        credential = checked_credential(request)
        try:
            row = await self._repo.put_credential(account_id, credential)
        except UnknownAccountError:
            raise _no_such_account() from None
        await self._config_changed(account_id)
        return _credential_info(row)

    async def ListCredentials(
        self, request: accounting_pb2.AccountRef, context: ServicerContext
    ) -> accounting_pb2.ListCredentialsResponse:
        account_id = _account(request.account_id)
        rows = await self._of_account(account_id, await self._repo.list_credentials(account_id))
        return accounting_pb2.ListCredentialsResponse(credentials=[_credential_info(r) for r in rows])

    async def DeleteCredential(
        self, request: accounting_pb2.CredentialRef, context: ServicerContext
    ) -> accounting_pb2.DeleteCredentialResponse:
        account_id = _account(request.account_id)
        credential_id = checked_uuid(request.credential_id, "credential_id")
        if not await self._repo.delete_credential(account_id, credential_id):
            # Unknown, already deleted or another account's: one answer, so ids reveal nothing.
            raise not_found(f"No credential {credential_id} in this account.")
        await self._config_changed(account_id)
        return accounting_pb2.DeleteCredentialResponse(deleted=True)

    async def GetSealedCredentials(
        self, request: accounting_pb2.AccountRef, context: ServicerContext
    ) -> accounting_pb2.SealedCredentials:
        require_service()
        account_id = checked_uuid(request.account_id, "account_id")
        rows = await self._of_account(account_id, await self._repo.sealed_credentials(account_id))
        return accounting_pb2.SealedCredentials(
            credentials=[
                accounting_pb2.SealedCredential(
                    info=_credential_info(r),
                    sealed=accounting_pb2.SealedSecret(
                        key_id=r["key_id"], nonce=r["nonce"], ciphertext=r["ciphertext"]
                    ),
                )
                for r in rows
            ]
        )

    # --- routing preferences and model toggles ----------------------------------------

    async def GetRoutingPreferences(
        self, request: accounting_pb2.AccountRef, context: ServicerContext
    ) -> accounting_pb2.RoutingPreferences:
        account_id = _account(request.account_id)
        saved = await self._repo.routing_preferences(account_id)
        if saved is None:
            await self._require_account(account_id)
        return _preferences_message(account_id, saved or DEFAULT_PREFERENCES)

    async def PutRoutingPreferences(
        self, request: accounting_pb2.RoutingPreferences, context: ServicerContext
    ) -> accounting_pb2.RoutingPreferences:
        account_id = _account(request.account_id)
        preferences = checked_preferences(request)
        try:
            saved = await self._repo.put_routing_preferences(account_id, preferences)
        except UnknownAccountError:
            raise _no_such_account() from None
        await self._config_changed(account_id)
        return _preferences_message(account_id, saved)

    # --- response cache settings -------------------------------------------------------

    async def GetCacheSettings(
        self, request: accounting_pb2.AccountRef, context: ServicerContext
    ) -> accounting_pb2.CacheSettings:
        account_id = _account(request.account_id)
        saved = await self._repo.cache_settings(account_id)
        if saved is None:
            await self._require_account(account_id)
        return _cache_settings_message(account_id, saved or DEFAULT_CACHE_SETTINGS)

    async def PutCacheSettings(
        self, request: accounting_pb2.CacheSettings, context: ServicerContext
    ) -> accounting_pb2.CacheSettings:
        account_id = _account(request.account_id)
        settings = checked_cache_settings(request)
        try:
            saved = await self._repo.put_cache_settings(account_id, settings)
        except UnknownAccountError:
            raise _no_such_account() from None
        await self._config_changed(account_id)  # dispatch reads them with the account's configuration
        return _cache_settings_message(account_id, saved)

    async def ListModelToggles(
        self, request: accounting_pb2.AccountRef, context: ServicerContext
    ) -> accounting_pb2.ModelToggles:
        account_id = _account(request.account_id)
        rows = await self._of_account(account_id, await self._repo.model_toggles(account_id))
        return _toggles(rows)

    async def SetModelToggle(
        self, request: accounting_pb2.SetModelToggleRequest, context: ServicerContext
    ) -> accounting_pb2.ModelToggles:
        account_id = _account(request.account_id)
        model = checked_model(request.model)
        try:
            rows = await self._repo.set_model_toggle(account_id, model, request.enabled)
        except UnknownAccountError:
            raise _no_such_account() from None
        await self._config_changed(account_id)
        return _toggles(rows)

    # --- load-balanced models ----------------------------------------------------------

    async def ListModelDeployments(
        self, request: accounting_pb2.AccountRef, context: ServicerContext
    ) -> accounting_pb2.ModelDeploymentsList:
        account_id = _account(request.account_id)
        rows = await self._of_account(account_id, await self._repo.model_deployments(account_id))
        return accounting_pb2.ModelDeploymentsList(models=[_model_deployments(account_id, r) for r in rows])

    async def PutModelDeployments(
        self, request: accounting_pb2.ModelDeployments, context: ServicerContext
    ) -> accounting_pb2.ModelDeployments:
        account_id = _account(request.account_id)
        balanced = to_message(from_message(request))  # checked, defaults filled in
        stored = to_json([plain_dict(d) for d in balanced.deployments])
        try:
            await self._repo.put_model_deployments(account_id, balanced.model, balanced.strategy, stored)
        except UnknownAccountError:
            raise _no_such_account() from None
        await self._config_changed(account_id)
        balanced.account_id = account_id
        return balanced

    async def DeleteModelDeployments(
        self, request: accounting_pb2.ModelDeploymentsRef, context: ServicerContext
    ) -> accounting_pb2.DeleteModelDeploymentsResponse:
        account_id = _account(request.account_id)
        if not await self._repo.delete_model_deployments(account_id, request.model):
            raise not_found(f"No deployments of model {request.model[:200]!r} in this account.")
        await self._config_changed(account_id)
        return accounting_pb2.DeleteModelDeploymentsResponse(deleted=True)

    # --- routing analytics --------------------------------------------------------------

    async def ListRoutingTraces(
        self, request: accounting_pb2.ListRoutingTracesRequest, context: ServicerContext
    ) -> accounting_pb2.ListRoutingTracesResponse:
        account_id = _account(request.account_id)
        limit = checked_count(request.limit, "limit", TRACES_PAGE, MAX_TRACES_PAGE)
        return accounting_pb2.ListRoutingTracesResponse(traces=await self._routing.traces(account_id, limit))

    async def GetRoutingCalibration(
        self, request: accounting_pb2.RoutingPeriod, context: ServicerContext
    ) -> accounting_pb2.RoutingCalibration:
        account_id = _account(request.account_id)
        days = checked_count(request.days, "days", PERIOD_DAYS, MAX_PERIOD_DAYS)
        calibration = await self._routing.calibration(account_id, days)
        policy = await self._repo.routing_preferences(account_id) or DEFAULT_PREFERENCES
        return accounting_pb2.RoutingCalibration(
            policy=_preferences_message(account_id, policy),
            days=days,
            control_requests=calibration.overall.requests,
            recall=calibration.overall.recall,
            mean_k=calibration.mean_k,
            unranked_calls=calibration.unranked_calls,
            buckets=calibration.buckets(),
            recall_with_learning=calibration.overall.recall_with_learning,
            learned_control_requests=calibration.overall.learned,
            learning=await self._learning_summary(account_id),
        )

    async def _learning_summary(self, account_id: str) -> accounting_pb2.ToolLearning | None:
        try:
            return await self._learning.summary(account_id)
        except RedisError as err:
            # Only learning lives in Redis: the calibration is shown without it.
            log.warning("redis unavailable; calibration shown without learned tool usage", error=str(err))
            return None

    async def ResetToolLearning(
        self, request: accounting_pb2.AccountRef, context: ServicerContext
    ) -> accounting_pb2.ToolLearningReset:
        account_id = _account(request.account_id)
        try:
            deleted = await self._learning.reset(account_id)
        except RedisError as err:
            log.warning("redis unavailable; learned tool usage not reset", error=str(err))
            raise unavailable("Learned tool usage could not be reset: Redis is unavailable. Try again.") from None
        return accounting_pb2.ToolLearningReset(keys_deleted=deleted)

    async def GetRoutingInsights(
        self, request: accounting_pb2.RoutingPeriod, context: ServicerContext
    ) -> accounting_pb2.RoutingInsights:
        account_id = _account(request.account_id)
        days = checked_count(request.days, "days", PERIOD_DAYS, MAX_PERIOD_DAYS)
        calibration = await self._routing.calibration(account_id, days)
        return insights(days, calibration, await self._routing.models(account_id, days))

    # --- usage and analytics -------------------------------------------------------------

    async def GetUsageSummary(self, request: usage_pb2.UsagePeriod, context: ServicerContext) -> usage_pb2.UsageSummary:
        account_id = await self._existing_account(request.account_id)
        return await self._usage.summary(account_id, _today())

    async def GetUsageDaily(self, request: usage_pb2.UsagePeriod, context: ServicerContext) -> usage_pb2.UsageDaily:
        account_id, days = await self._period(request)
        return await self._usage.daily(account_id, days, _today())

    async def GetAnalyticsDaily(
        self, request: usage_pb2.UsagePeriod, context: ServicerContext
    ) -> usage_pb2.AnalyticsDaily:
        account_id, days = await self._period(request)
        return await self._usage.analytics_daily(account_id, days, _today())

    async def GetSavings(self, request: usage_pb2.UsagePeriod, context: ServicerContext) -> usage_pb2.SavingsBreakdown:
        account_id, days = await self._period(request)
        return await self._usage.savings(account_id, days, _today())

    async def GetLatency(self, request: usage_pb2.UsagePeriod, context: ServicerContext) -> usage_pb2.LatencySummary:
        account_id, days = await self._period(request)
        return await self._usage.latency(account_id, days, _today())

    async def GetOptimizationStats(
        self, request: usage_pb2.UsagePeriod, context: ServicerContext
    ) -> usage_pb2.OptimizationStats:
        account_id, days = await self._period(request)
        return await self._usage.optimization(account_id, days, _today())

    async def GetToolHealth(
        self, request: usage_pb2.ToolHealthRequest, context: ServicerContext
    ) -> usage_pb2.ToolHealth:
        account_id, days = await self._period(request)
        limit = checked_count(request.limit, "limit", TOOLS_LIMIT, MAX_TOOLS_LIMIT)
        return await self._usage.tool_health(account_id, days, limit, _today())

    async def ListSessions(
        self, request: usage_pb2.ListSessionsRequest, context: ServicerContext
    ) -> usage_pb2.ListSessionsResponse:
        account_id = await self._existing_account(request.account_id)
        limit = checked_count(request.limit, "limit", SESSIONS_PAGE, MAX_SESSIONS_PAGE)
        try:
            sessions, next_cursor = await self._usage.sessions(account_id, limit, request.cursor)
        except InvalidCursorError:
            raise invalid_request("Invalid pagination cursor.") from None
        return usage_pb2.ListSessionsResponse(sessions=sessions, next_cursor=next_cursor)

    async def GetSession(
        self, request: accounting_pb2.GetSessionRequest, context: ServicerContext
    ) -> usage_pb2.Session:
        account_id = _account(request.account_id)
        session = await self._usage.session(account_id, checked_searchable(request.session_id, "session_id"))
        if session is None:
            raise not_found(f"No session {request.session_id!r} in this account.")
        return session

    async def _period(self, request: usage_pb2.UsagePeriod | usage_pb2.ToolHealthRequest) -> tuple[str, int]:
        days = checked_count(request.days, "days", USAGE_DAYS, MAX_USAGE_DAYS)
        return await self._existing_account(request.account_id), days

    async def _existing_account(self, requested: str) -> str:
        """The caller's account; zeros are only an answer for an account that exists."""
        account_id = _account(requested)
        await self._require_account(account_id)
        return account_id

    async def CreateOwner(
        self, request: accounting_pb2.CreateOwnerRequest, context: ServicerContext
    ) -> accounting_pb2.Owner:
        require_service()
        account_id = checked_uuid(request.account_id, "account_id")
        email, password = checked_email(request.email), checked_password(request.password)
        await self._require_account(account_id)
        try:
            return _owner_message(await self._owners.create(account_id, email, password))
        except EmailTakenError:
            raise OrqenError.of(grpc.StatusCode.ALREADY_EXISTS, "An owner with this email already exists.") from None

    async def VerifyOwner(
        self, request: accounting_pb2.VerifyOwnerRequest, context: ServicerContext
    ) -> accounting_pb2.Owner:
        require_service()
        owner = None
        if request.email and 0 < len(request.password) <= MAX_PASSWORD:
            owner = await self._owners.verify(request.email.strip().lower(), request.password)
        if owner is None:
            raise OrqenError.of(grpc.StatusCode.UNAUTHENTICATED, "Wrong email or password.")
        return _owner_message(owner)

    async def ListOwners(
        self, request: accounting_pb2.AccountRef, context: ServicerContext
    ) -> accounting_pb2.ListOwnersResponse:
        require_service()
        account_id = checked_uuid(request.account_id, "account_id")
        owners = await self._owners.of_account(account_id)
        if not owners:
            await self._require_account(account_id)
        return accounting_pb2.ListOwnersResponse(owners=[_owner_message(o) for o in owners])

    async def CreateOwnerInvite(
        self, request: accounting_pb2.CreateOwnerInviteRequest, context: ServicerContext
    ) -> accounting_pb2.OwnerInvite:
        require_service()
        account_id = checked_uuid(request.account_id, "account_id")
        inviter = (
            checked_uuid(request.invited_by_owner_id, "invited_by_owner_id") if request.invited_by_owner_id else None
        )
        await self._require_account(account_id)
        try:
            invite = await self._owners.create_invite(account_id, inviter)
        except UnknownInviterError:
            raise not_found(f"No owner {inviter} in this account.") from None
        return accounting_pb2.OwnerInvite(
            id=invite.id, account_id=invite.account_id, token=invite.token, expires_at=_timestamp(invite.expires_at)
        )

    async def AcceptOwnerInvite(
        self, request: accounting_pb2.AcceptOwnerInviteRequest, context: ServicerContext
    ) -> accounting_pb2.Owner:
        require_service()
        email, password = checked_email(request.email), checked_password(request.password)
        owner = None
        if 0 < len(request.token) <= MAX_INVITE_TOKEN:
            try:
                owner = await self._owners.accept_invite(request.token, email, password)
            except EmailTakenError:
                raise OrqenError.of(
                    grpc.StatusCode.ALREADY_EXISTS, "An owner with this email already exists."
                ) from None
        if owner is None:
            # One answer for every unusable link: it tells nothing about which tokens ever existed.
            raise not_found("This sign-up link is unknown, already used or expired; ask an owner for a new one.")
        return _owner_message(owner)

    async def RemoveOwner(self, request: accounting_pb2.OwnerRef, context: ServicerContext) -> accounting_pb2.Owner:
        require_service()
        account_id = checked_uuid(request.account_id, "account_id")
        owner_id = checked_uuid(request.owner_id, "owner_id")
        try:
            owner = await self._owners.remove(account_id, owner_id)
        except LastOwnerError:
            raise OrqenError.of(
                grpc.StatusCode.FAILED_PRECONDITION,
                "This is the account's last owner: add another owner before removing this one.",
            ) from None
        if owner is None:
            # The same answer for another account's owner as for none: ids reveal nothing.
            raise not_found(f"No owner {owner_id} in this account.")
        return _owner_message(owner)

    async def ChangeOwnerPassword(
        self, request: accounting_pb2.ChangeOwnerPasswordRequest, context: ServicerContext
    ) -> accounting_pb2.Owner:
        require_service()
        account_id = checked_uuid(request.account_id, "account_id")
        owner_id = checked_uuid(request.owner_id, "owner_id")
        new_password = checked_password(request.new_password)
        wrong = OrqenError.of(grpc.StatusCode.PERMISSION_DENIED, "The current password is wrong.")
        if not 0 < len(request.old_password) <= MAX_PASSWORD:
            raise wrong
        try:
            owner = await self._owners.change_password(account_id, owner_id, request.old_password, new_password)
        except WrongPasswordError:
            raise wrong from None
        if owner is None:
            raise not_found(f"No owner {owner_id} in this account.")
        return _owner_message(owner)

    # --- budgets and per-key limits ----------------------------------------------------------

    async def SetApiKeyLimits(
        self, request: accounting_pb2.ApiKeyLimits, context: ServicerContext
    ) -> accounting_pb2.ApiKeyInfo:
        account_id = _account(request.account_id)
        api_key_id = checked_uuid(request.api_key_id, "api_key_id")
        models, rpm, tpm = checked_key_limits(request)
        row = await self._budgets.set_key_limits(account_id, api_key_id, models, rpm, tpm)
        if row is None:
            raise not_found(f"No API key {api_key_id} in this account.")
        return _key_info(row)

    async def PutBudget(
        self, request: accounting_pb2.BudgetDefinition, context: ServicerContext
    ) -> accounting_pb2.BudgetDefinition:
        account_id = _account(request.account_id)
        await self._require_account(account_id)
        api_key_id, period, max_spend, max_tokens, soft = checked_budget(request)
        row = await self._budgets.put(account_id, api_key_id, period, max_spend, max_tokens, soft)
        if row is None:
            raise not_found(f"No API key {api_key_id} in this account.")
        return budget_message(row)

    async def ListBudgets(
        self, request: accounting_pb2.AccountRef, context: ServicerContext
    ) -> accounting_pb2.ListBudgetsResponse:
        account_id = _account(request.account_id)
        budgets = await budgets_with_use(self._budgets, account_id, dt.datetime.now(dt.UTC))
        if not budgets:
            await self._require_account(account_id)
        return accounting_pb2.ListBudgetsResponse(budgets=budgets)

    async def DeleteBudget(
        self, request: accounting_pb2.BudgetRef, context: ServicerContext
    ) -> accounting_pb2.BudgetDefinition:
        account_id = _account(request.account_id)
        try:
            budget_id = checked_uuid(request.budget_id, "budget_id")
        except OrqenError:
            # Budget ids are UUIDs: any other string names no budget (a 404, as an unknown id is).
            raise not_found(f"No budget {request.budget_id!r} in this account.") from None
        row = await self._budgets.delete(account_id, budget_id)
        if row is None:
            raise not_found(f"No budget {budget_id} in this account.")
        return budget_message(row)

    async def GetLimitPolicy(
        self, request: accounting_pb2.AccountRef, context: ServicerContext
    ) -> accounting_pb2.LimitPolicy:
        require_service()
        account_id = _account(request.account_id)
        keys = await self._budgets.keys_with_limits(account_id)
        return accounting_pb2.LimitPolicy(
            budgets=[budget_message(row) for row in await self._budgets.of_account(account_id)],
            keys=[
                accounting_pb2.ApiKeyLimits(
                    account_id=account_id,
                    api_key_id=k["id"],
                    allowed_models=k["allowed_models"],
                    rpm=k["rpm"],
                    tpm=k["tpm"],
                )
                for k in keys
                if k["allowed_models"] or k["rpm"] or k["tpm"]
            ],
            key_labels={k["id"]: f"{k['name']} ({k['prefix']}...)" for k in keys},
        )

    async def GetBudgetUse(
        self, request: accounting_pb2.BudgetUseRequest, context: ServicerContext
    ) -> accounting_pb2.BudgetUse:
        require_service()
        account_id = _account(request.account_id)
        api_key_id = checked_uuid(request.api_key_id, "api_key_id") if request.api_key_id else None
        spend, tokens = await self._budgets.use(account_id, api_key_id, timestamp_datetime(request.since))
        return accounting_pb2.BudgetUse(spend_usd=spend, tokens=tokens)

    async def RecordBudgetAlert(
        self, request: accounting_pb2.BudgetAlert, context: ServicerContext
    ) -> accounting_pb2.BudgetAlert:
        require_service()
        account_id = _account(request.account_id)
        if request.threshold not in ("soft", "hard"):
            raise invalid_request("threshold must be 'soft' or 'hard'.")
        budget_id = checked_uuid(request.budget_id, "budget_id")
        start = timestamp_datetime(request.period_start)
        if not await self._budgets.record_alert(
            account_id, budget_id, start, request.threshold, request.spend_usd, request.tokens
        ):
            raise not_found(f"No budget {budget_id} in this account.")
        return request

    async def _of_account(self, account_id: str, rows: list[asyncpg.Record]) -> list[asyncpg.Record]:
        """The account's rows; none is only an answer for an account that exists."""
        if not rows:
            await self._require_account(account_id)
        return rows

    async def _require_account(self, account_id: str) -> None:
        """Empty results are only an answer for an account that exists."""
        if not await self._repo.account_exists(account_id):
            raise _no_such_account()


async def verify_api_key_locally(repo: AccountingRepository, plaintext: str) -> Principal | None:
    """Accounting checks API keys against its own tables instead of calling itself."""
    if not plaintext.startswith(API_KEY_PREFIX):
        return None
    owner = await repo.key_owner(hash_api_key(plaintext))
    if owner is None:
        return None
    return Principal(
        kind="api_key", account_id=owner.account_id, api_key_id=owner.api_key_id, account_name=owner.account_name
    )


def _account(requested: str) -> str:
    """The account the caller may act on (see account_scope), as a canonical UUID."""
    return checked_uuid(account_scope(requested), "account_id")


def _today() -> dt.date:
    """Usage days are UTC calendar days."""
    return dt.datetime.now(dt.UTC).date()


def _filter(request: accounting_pb2.ListRequestsRequest) -> RequestFilter:
    if request.status and not _STATUS_FILTER.fullmatch(request.status):
        raise invalid_request("status must be 'success', 'error' or an HTTP status code such as 429.")
    return RequestFilter(
        model=checked_searchable(request.model, "model"),
        status=request.status,
        session_id=checked_searchable(request.session_id, "session_id"),
        ingress=checked_searchable(request.ingress, "ingress"),
        since=request.since.ToDatetime(tzinfo=dt.UTC) if request.HasField("since") else None,
        until=request.until.ToDatetime(tzinfo=dt.UTC) if request.HasField("until") else None,
    )


def _no_such_account() -> OrqenError:
    return not_found("No such account.")


def _timestamp(value: Any) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


def _timestamps(row: asyncpg.Record, *columns: str) -> dict[str, Timestamp]:
    """The row's times that are set, as message fields (an unset time stays unset, not 1970)."""
    return {c: _timestamp(row[c]) for c in columns if row[c] is not None}


def _owner_message(owner: Owner) -> accounting_pb2.Owner:
    return accounting_pb2.Owner(
        id=owner.id,
        account_id=owner.account_id,
        email=owner.email,
        account_name=owner.account_name,
        created_at=_timestamp(owner.created_at),
    )


def _key_info(row: asyncpg.Record) -> accounting_pb2.ApiKeyInfo:
    return accounting_pb2.ApiKeyInfo(
        id=row["id"],
        name=row["name"],
        prefix=row["prefix"],
        allowed_models=row["allowed_models"],
        rpm=row["rpm"],
        tpm=row["tpm"],
        **_timestamps(row, "created_at", "last_used_at", "revoked_at"),
    )


def _credential_info(row: asyncpg.Record) -> accounting_pb2.CredentialInfo:
    return accounting_pb2.CredentialInfo(
        id=row["id"],
        account_id=row["account_id"],
        provider=row["provider"],
        auth=row["auth"],
        last4=row["last4"],
        base_url=row["base_url"],
        region=row["region"],
        **_timestamps(row, "created_at", "updated_at"),
    )


def _preferences_message(account_id: str, preferences: Preferences) -> accounting_pb2.RoutingPreferences:
    return accounting_pb2.RoutingPreferences(
        account_id=account_id,
        mode=preferences.mode,
        k_floor=preferences.k_floor,
        k_cap=preferences.k_cap,
        ab_control_share=preferences.ab_control_share,
        fallback_models=list(preferences.fallback_models),
    )


def _cache_settings_message(account_id: str, settings: CacheSettings) -> accounting_pb2.CacheSettings:
    return accounting_pb2.CacheSettings(
        account_id=account_id, enabled=settings.enabled, ttl_seconds=settings.ttl_seconds
    )


def _model_deployments(account_id: str, row: asyncpg.Record) -> accounting_pb2.ModelDeployments:
    return accounting_pb2.ModelDeployments(
        account_id=account_id,
        model=row["model"],
        strategy=row["strategy"],
        deployments=list_from_json(row["deployments"], accounting_pb2.ModelDeployment),
    )


def _toggles(rows: list[asyncpg.Record]) -> accounting_pb2.ModelToggles:
    return accounting_pb2.ModelToggles(
        toggles=[accounting_pb2.ModelToggle(model=r["model"], enabled=r["enabled"]) for r in rows]
    )
