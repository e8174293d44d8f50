"""The account API: what an account's API keys (and, for what the dashboard shows, its owner's
session) call under /v1/account/...: keys and provider credentials, models and routing
preferences, usage and analytics, the request log, and billing with its Stripe endpoints."""
