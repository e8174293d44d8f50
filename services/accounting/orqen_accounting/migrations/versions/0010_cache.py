"""The response cache: each account's cache settings, and hits in the request log and the rollups.

`requests.cache` is "hit", "miss" or "" (the cache was not consulted); `cache_saved_usd` is the
list-price cost of the answer a hit replayed, also counted in `savings_usd`. Rows stored before
this revision read "" and 0.

Revision ID: 0010_cache
"""

from alembic import op

revision = "0010_cache"
down_revision = "0009_budgets"


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE cache_settings (
            account_id uuid PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
            enabled boolean NOT NULL,
            ttl_seconds integer NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now()
        );
        ALTER TABLE requests
            ADD COLUMN cache text NOT NULL DEFAULT '',
            ADD COLUMN cache_saved_usd numeric(20, 10) NOT NULL DEFAULT 0;
        ALTER TABLE usage_daily
            ADD COLUMN cache_hits bigint NOT NULL DEFAULT 0,
            ADD COLUMN cache_saved_usd numeric(24, 10) NOT NULL DEFAULT 0;
        """
    )


def downgrade() -> None:
    op.execute(
        """
        ALTER TABLE usage_daily DROP COLUMN cache_hits, DROP COLUMN cache_saved_usd;
        ALTER TABLE requests DROP COLUMN cache, DROP COLUMN cache_saved_usd;
        DROP TABLE cache_settings;
        """
    )
