"""Accounts' saved provider credentials, and which credentials each call to a provider uses.

- `keyring`: the operator's keys that seal and open secrets (AES-256-GCM), and rotation.
- `validation`: what an account may save (secret shapes, base URL, region, private addresses)
  and what may go in a header.
- `precedence`: per-request credentials > the account's saved ones > the operator's environment.
- `store`: saving through accounting and reading back opened (kept per account by
  `orqen_dispatch.account_config`, the one cache).
"""

from orqen_dispatch.credentials.keyring import (
    KEYS_SETTING,
    KeyRing,
    UnusableCredentialError,
    credentials_not_configured,
    generate_key_setting,
)
from orqen_dispatch.credentials.precedence import merge
from orqen_dispatch.credentials.store import CredentialStore, SavedCredentials
from orqen_dispatch.credentials.validation import (
    ValidatedSecret,
    fits_a_header,
    header_value,
    refuse_private_address,
    validate_secret,
)

__all__ = [
    "KEYS_SETTING",
    "CredentialStore",
    "KeyRing",
    "SavedCredentials",
    "UnusableCredentialError",
    "ValidatedSecret",
    "credentials_not_configured",
    "fits_a_header",
    "generate_key_setting",
    "header_value",
    "merge",
    "refuse_private_address",
    "validate_secret",
]
