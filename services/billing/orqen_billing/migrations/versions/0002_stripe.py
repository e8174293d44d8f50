"""Stripe: the customer and subscription behind each account, processed webhook events, invoices.

Revision ID: 0002
"""

from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE subscriptions
            ADD COLUMN stripe_customer_id text UNIQUE,
            ADD COLUMN stripe_subscription_id text,
            ADD COLUMN status text NOT NULL DEFAULT '',
            ADD COLUMN price_id text NOT NULL DEFAULT '',
            ADD COLUMN cancel_at_period_end boolean NOT NULL DEFAULT false,
            -- Stripe time (epoch seconds) of the newest state applied: webhooks arrive in any
            -- order, and an older snapshot must not overwrite a newer one.
            ADD COLUMN stripe_as_of bigint NOT NULL DEFAULT 0;
        -- Webhook events already processed: Stripe delivers at least once.
        CREATE TABLE stripe_events (
            event_id text PRIMARY KEY,
            type text NOT NULL,
            account_id uuid,
            created bigint NOT NULL,
            received_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE TABLE invoices (
            invoice_id text PRIMARY KEY,
            account_id uuid NOT NULL,
            stripe_subscription_id text,
            status text NOT NULL,
            amount_due bigint NOT NULL,
            amount_paid bigint NOT NULL,
            currency text NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX invoices_account ON invoices (account_id);
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE invoices; DROP TABLE stripe_events;
        ALTER TABLE subscriptions DROP COLUMN stripe_customer_id, DROP COLUMN stripe_subscription_id,
            DROP COLUMN status, DROP COLUMN price_id, DROP COLUMN cancel_at_period_end, DROP COLUMN stripe_as_of;
        """
    )
