"""The ledger at scale: every figure of a request, daily rollups kept on ingest, sessions,
tool health, and the indexes the account API reads by.

Rollups are written in the same transaction as the request rows they count, and only for
rows that were newly inserted, so a redelivered event is neither stored nor counted twice.
Summaries read the rollups, never the raw log; retention deletes old raw rows in batches
(orqen_accounting.retention) and keeps the rollups.

Revision ID: 0005
"""

from alembic import op

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE requests
            ADD COLUMN gateway_ms double precision NOT NULL DEFAULT 0,
            ADD COLUMN ctx_tokens_in bigint NOT NULL DEFAULT 0,
            ADD COLUMN ctx_tokens_out bigint NOT NULL DEFAULT 0,
            ADD COLUMN ctx_tokens_saved bigint NOT NULL DEFAULT 0,
            ADD COLUMN tool_tokens_in bigint NOT NULL DEFAULT 0,
            ADD COLUMN tool_tokens_out bigint NOT NULL DEFAULT 0,
            ADD COLUMN tool_tokens_saved bigint NOT NULL DEFAULT 0,
            ADD COLUMN tokens_saved bigint NOT NULL DEFAULT 0,
            ADD COLUMN k integer NOT NULL DEFAULT 0,
            ADD COLUMN k_reason text NOT NULL DEFAULT '',
            -- Money as exact decimals: the ledger sums millions of small amounts.
            ADD COLUMN cost_usd numeric(20, 10) NOT NULL DEFAULT 0,
            ADD COLUMN savings_usd numeric(20, 10) NOT NULL DEFAULT 0;
        -- /sessions/{id}/requests: a session's requests, newest first.
        CREATE INDEX requests_account_session ON requests (account_id, session_id, created_at DESC, request_id DESC)
            WHERE session_id <> '';
        -- Retention deletes by age across accounts; rows arrive in time order, so a BRIN index
        -- finds them for almost nothing on ingest.
        CREATE INDEX requests_created_brin ON requests USING brin (created_at);

        CREATE TABLE usage_daily (
            account_id uuid NOT NULL,
            day date NOT NULL,
            provider text NOT NULL,
            model text NOT NULL,
            routing text NOT NULL,
            requests bigint NOT NULL,
            errors bigint NOT NULL,
            input_tokens bigint NOT NULL,
            output_tokens bigint NOT NULL,
            cached_input_tokens bigint NOT NULL,
            optimized bigint NOT NULL,
            tools_input bigint NOT NULL,
            tools_output bigint NOT NULL,
            tool_tokens_in bigint NOT NULL,
            tool_tokens_out bigint NOT NULL,
            ctx_tokens_in bigint NOT NULL,
            ctx_tokens_out bigint NOT NULL,
            tokens_saved bigint NOT NULL,
            cost_usd numeric(24, 10) NOT NULL,
            savings_usd numeric(24, 10) NOT NULL,
            latency_ms_sum double precision NOT NULL,
            upstream_ms_sum double precision NOT NULL,
            gateway_ms_sum double precision NOT NULL,
            ttft_ms_sum double precision NOT NULL,
            streamed bigint NOT NULL,
            PRIMARY KEY (account_id, day, provider, model, routing)
        );
        -- Latency histograms of the same groups (orqen_accounting.histogram): percentiles of any
        -- period add up from them.
        CREATE TABLE latency_daily (
            account_id uuid NOT NULL,
            day date NOT NULL,
            provider text NOT NULL,
            model text NOT NULL,
            routing text NOT NULL,
            bucket smallint NOT NULL,
            requests bigint NOT NULL,
            PRIMARY KEY (account_id, day, provider, model, routing, bucket)
        );

        CREATE TABLE sessions (
            account_id uuid NOT NULL,
            session_id text NOT NULL,
            first_at timestamptz NOT NULL,
            last_at timestamptz NOT NULL,
            requests bigint NOT NULL,
            errors bigint NOT NULL,
            input_tokens bigint NOT NULL,
            output_tokens bigint NOT NULL,
            tokens_saved bigint NOT NULL,
            cost_usd numeric(24, 10) NOT NULL,
            savings_usd numeric(24, 10) NOT NULL,
            last_model text NOT NULL,
            PRIMARY KEY (account_id, session_id)
        );
        -- GET /sessions: most recently active first (keyset pagination).
        CREATE INDEX sessions_account_recent ON sessions (account_id, last_at DESC, session_id DESC);

        CREATE TABLE tool_usage_daily (
            account_id uuid NOT NULL,
            day date NOT NULL,
            tool text NOT NULL,
            offered bigint NOT NULL,
            forwarded bigint NOT NULL,
            called bigint NOT NULL,
            errors bigint NOT NULL,
            called_not_forwarded bigint NOT NULL,
            PRIMARY KEY (account_id, day, tool)
        );
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE tool_usage_daily;
        DROP TABLE sessions;
        DROP TABLE latency_daily;
        DROP TABLE usage_daily;
        DROP INDEX requests_created_brin;
        DROP INDEX requests_account_session;
        ALTER TABLE requests DROP COLUMN savings_usd, DROP COLUMN cost_usd, DROP COLUMN k_reason, DROP COLUMN k,
            DROP COLUMN tokens_saved, DROP COLUMN tool_tokens_saved, DROP COLUMN tool_tokens_out,
            DROP COLUMN tool_tokens_in, DROP COLUMN ctx_tokens_saved,
            DROP COLUMN ctx_tokens_out, DROP COLUMN ctx_tokens_in, DROP COLUMN gateway_ms;
        """
    )
