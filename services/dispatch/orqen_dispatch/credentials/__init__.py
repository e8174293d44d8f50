"""Accounts' saved provider credentials, and which credentials each call to a provider uses.

- `keyring`: the operator's keys that seal and open secrets (AES-256-GCM), and rotation.
- `validation`: what an account may save (secret shapes, base URL, region, private addresses)
  and what may go in a header.
- `precedence`: per-request credentials > the account's saved ones > the operator's environment,
  and the caller's own provider key only for the provider its model names.
- `store`: saving through accounting and reading back opened (kept per account by
  `orqen_dispatch.account_config`, the one cache).
"""

from orqen_dispatch.credentials.keyring import KeyRing
from orqen_dispatch.credentials.precedence import merge
from orqen_dispatch.credentials.store import CredentialStore, SavedCredentials
from orqen_dispatch.credentials.validation import header_value

__all__ = ["CredentialStore", "KeyRing", "SavedCredentials", "header_value", "merge"]
