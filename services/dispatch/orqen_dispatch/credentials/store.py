"""Accounts' provider credentials through accounting: saved sealed, read back and opened here.

Accounting stores what `KeyRing.seal` produces and never sees a plaintext secret; opened
secrets live only in dispatch's memory. Each read is one call to accounting: requests
read an account's credentials through `AccountConfigs`, which keeps them per account.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass

import grpc
import structlog

from orqen.v1 import accounting_pb2, accounting_pb2_grpc
from orqen_common.errors import from_rpc_error
from orqen_dispatch.credentials.keyring import KeyRing, UnusableCredentialError, credentials_not_configured
from orqen_dispatch.credentials.validation import refuse_private_address, validate_secret

log = structlog.get_logger(__name__)

SavedCredentials = dict[str, dict[str, str]]
"""An account's opened credentials by provider: the sealed fields (secret, base_url, region)."""


@dataclass(eq=False)
class CredentialStore:
    """Saves an account's credentials through accounting, and reads them back opened."""

    accounting: accounting_pb2_grpc.AccountingAsyncStub
    keyring: KeyRing
    _: KW_ONLY
    rpc_timeout_seconds: float = 5.0
    # ORQEN_ALLOW_PRIVATE_BASE_URLS: an account's base URL may then be on the operator's own network.
    allow_private_base_urls: bool = False

    async def save(
        self,
        account_id: str,
        provider: str,
        auth: str,
        secret: Mapping[str, str],
        base_url: str = "",
        region: str = "",
    ) -> accounting_pb2.CredentialInfo:
        """Validate, seal and store an account's credential for `provider` (replacing any).

        Accounting bumps the account's change counter, so every dispatch replica reads the
        account's credentials again for its next request.
        """
        if not self.keyring.can_seal:
            raise credentials_not_configured()
        fields, info = validate_secret(provider, auth, secret, base_url, region)
        if info.base_url and not self.allow_private_base_urls:
            await refuse_private_address(info.base_url)
        info.account_id = account_id
        sealed = self.keyring.seal(fields, account_id, info.provider)
        try:
            stored: accounting_pb2.CredentialInfo = await self.accounting.PutCredential(
                accounting_pb2.SealedCredential(info=info, sealed=sealed), timeout=self.rpc_timeout_seconds
            )
        except grpc.aio.AioRpcError as err:
            raise from_rpc_error(err, "accounting") from None
        return stored

    async def read(self, account_id: str) -> SavedCredentials:
        """The account's usable saved credentials by provider; OrqenError when accounting fails.

        A row that does not open is left out (and logged), so the rest of the account works.
        """
        if not self.keyring.can_seal:
            return {}  # without operator keys nothing saved could be opened
        try:
            found: accounting_pb2.SealedCredentials = await self.accounting.GetSealedCredentials(
                accounting_pb2.AccountRef(account_id=account_id), timeout=self.rpc_timeout_seconds
            )
        except grpc.aio.AioRpcError as err:
            raise from_rpc_error(err, "accounting") from None
        opened: SavedCredentials = {}
        for credential in found.credentials:
            provider = credential.info.provider
            try:
                # Opened as the account asked for: a row of another account never opens here.
                opened[provider] = self.keyring.open(credential.sealed, account_id, provider)
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
        old key can be retired once no row names it (see docs/operations.md, key rotation). A failed write is
        only logged: the row still opens with the old key, and the next read tries again.
        """
        resealed = self.keyring.rotate(credential.sealed, account_id, credential.info.provider)
        if resealed is None:
            return
        try:
            await self.accounting.PutCredential(
                accounting_pb2.SealedCredential(info=credential.info, sealed=resealed), timeout=self.rpc_timeout_seconds
            )
        except grpc.aio.AioRpcError as err:
            log.warning("re-sealing a credential under the new key failed", credential_id=credential.info.id,
                        code=err.code().name)  # fmt: skip
            return
        log.info("credential re-sealed under the active key", credential_id=credential.info.id,
                 old_key_id=credential.sealed.key_id, key_id=resealed.key_id)  # fmt: skip
