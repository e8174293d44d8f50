"""Subscriptions and metered usage.

Revision ID: 0001
"""

from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE subscriptions (
            account_id uuid PRIMARY KEY,
            tier text NOT NULL DEFAULT 'free',
            updated_at timestamptz NOT NULL DEFAULT now()
        );
        -- One row per request: the request id makes metering idempotent under redelivery.
        CREATE TABLE metered_requests (
            request_id text PRIMARY KEY,
            account_id uuid NOT NULL,
            tokens bigint NOT NULL,
            created_at timestamptz NOT NULL
        );
        CREATE INDEX metered_requests_account_time ON metered_requests (account_id, created_at);
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE metered_requests; DROP TABLE subscriptions;")
