"""Accounts, API keys and the request log.

Revision ID: 0001
"""

from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE accounts (
            id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            name text NOT NULL UNIQUE,
            created_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE TABLE api_keys (
            id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            account_id uuid NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
            name text NOT NULL DEFAULT '',
            key_hash text NOT NULL UNIQUE,
            prefix text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            last_used_at timestamptz,
            revoked_at timestamptz
        );
        CREATE INDEX api_keys_account ON api_keys (account_id);
        CREATE TABLE requests (
            request_id text PRIMARY KEY,
            account_id uuid NOT NULL,
            api_key_id uuid,
            session_id text NOT NULL DEFAULT '',
            ingress text NOT NULL,
            model_requested text NOT NULL DEFAULT '',
            model_used text NOT NULL DEFAULT '',
            provider text NOT NULL DEFAULT '',
            status integer NOT NULL,
            error text NOT NULL DEFAULT '',
            stream boolean NOT NULL DEFAULT false,
            input_tokens bigint NOT NULL DEFAULT 0,
            output_tokens bigint NOT NULL DEFAULT 0,
            cached_input_tokens bigint NOT NULL DEFAULT 0,
            latency_ms double precision NOT NULL DEFAULT 0,
            upstream_ms double precision NOT NULL DEFAULT 0,
            ttft_ms double precision NOT NULL DEFAULT 0,
            tools_input integer NOT NULL DEFAULT 0,
            tools_output integer NOT NULL DEFAULT 0,
            routing text NOT NULL DEFAULT '',
            created_at timestamptz NOT NULL
        );
        -- The request log is read newest first per account (keyset pagination).
        CREATE INDEX requests_account_time ON requests (account_id, created_at DESC, request_id DESC);
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE requests; DROP TABLE api_keys; DROP TABLE accounts;")
