"""Budgets and per-key limits: spend and token budgets per UTC period for an account or one of
its keys, the crossings of their thresholds, and each key's allowed models and per-minute limits.

Revision ID: 0009_budgets
"""

from alembic import op

revision = "0009_budgets"
down_revision = "0008_prices"


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE api_keys
            ADD COLUMN allowed_models text[] NOT NULL DEFAULT '{}',
            ADD COLUMN rpm integer NOT NULL DEFAULT 0 CHECK (rpm >= 0),
            ADD COLUMN tpm integer NOT NULL DEFAULT 0 CHECK (tpm >= 0);
        CREATE TABLE budgets (
            id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            account_id uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
            -- NULL: the budget of the whole account.
            api_key_id uuid REFERENCES api_keys (id) ON DELETE CASCADE,
            period text NOT NULL CHECK (period IN ('day', 'week', 'month')),
            -- 0: no limit of that kind.
            max_spend_usd numeric(20, 10) NOT NULL DEFAULT 0 CHECK (max_spend_usd >= 0),
            max_tokens bigint NOT NULL DEFAULT 0 CHECK (max_tokens >= 0),
            soft_percent integer NOT NULL DEFAULT 80 CHECK (soft_percent BETWEEN 1 AND 100),
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now()
        );
        -- One budget per scope and period: putting again replaces its limits.
        CREATE UNIQUE INDEX budgets_scope_period
            ON budgets (account_id, coalesce(api_key_id, '00000000-0000-0000-0000-000000000000'::uuid), period);
        CREATE TABLE budget_alerts (
            budget_id uuid NOT NULL REFERENCES budgets (id) ON DELETE CASCADE,
            period_start timestamptz NOT NULL,
            threshold text NOT NULL CHECK (threshold IN ('soft', 'hard')),
            crossed_at timestamptz NOT NULL DEFAULT now(),
            spend_usd numeric(20, 10) NOT NULL,
            tokens bigint NOT NULL,
            PRIMARY KEY (budget_id, period_start, threshold)
        );
        -- A budget past its soft threshold when the request was admitted (the request log shows it).
        ALTER TABLE requests ADD COLUMN budget_warning text NOT NULL DEFAULT '';
        -- A key's spend in a period is summed from its raw rows (the daily rollups are per account).
        CREATE INDEX requests_key_time ON requests (api_key_id, created_at) WHERE api_key_id IS NOT NULL;
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP INDEX requests_key_time;
        ALTER TABLE requests DROP COLUMN budget_warning;
        DROP TABLE budget_alerts;
        DROP TABLE budgets;
        ALTER TABLE api_keys DROP COLUMN allowed_models, DROP COLUMN rpm, DROP COLUMN tpm;
        """
    )
