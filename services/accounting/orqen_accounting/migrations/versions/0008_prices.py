"""Requests whose model has no known price: cost NULL and flagged, counted apart in the rollups.

`price_unknown` marks a request with tokens that neither genai-prices nor the operator's
overrides price (orqen_common.prices); its cost_usd and savings_usd are NULL, never 0. The
daily rollups and the sessions count those requests (and their tokens) so a summary can say how
much of its traffic its cost leaves out. Rows stored before this revision were priced by the
old catalogue, which recorded an unpriced model at 0: they read price_unknown false.

Revision ID: 0008_prices
"""

from alembic import op

revision = "0008_prices"
down_revision = "0007"


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE requests
            ALTER COLUMN cost_usd DROP NOT NULL,
            ALTER COLUMN cost_usd DROP DEFAULT,
            ALTER COLUMN savings_usd DROP NOT NULL,
            ALTER COLUMN savings_usd DROP DEFAULT,
            ADD COLUMN price_unknown boolean NOT NULL DEFAULT false;
        ALTER TABLE usage_daily
            ADD COLUMN unpriced_requests bigint NOT NULL DEFAULT 0,
            ADD COLUMN unpriced_tokens bigint NOT NULL DEFAULT 0;
        ALTER TABLE sessions ADD COLUMN unpriced_requests bigint NOT NULL DEFAULT 0;
        """
    )


def downgrade() -> None:
    op.execute(
        """
        ALTER TABLE sessions DROP COLUMN unpriced_requests;
        ALTER TABLE usage_daily DROP COLUMN unpriced_tokens, DROP COLUMN unpriced_requests;
        UPDATE requests SET cost_usd = 0, savings_usd = 0 WHERE price_unknown;
        ALTER TABLE requests
            DROP COLUMN price_unknown,
            ALTER COLUMN cost_usd SET DEFAULT 0,
            ALTER COLUMN cost_usd SET NOT NULL,
            ALTER COLUMN savings_usd SET DEFAULT 0,
            ALTER COLUMN savings_usd SET NOT NULL;
        """
    )
