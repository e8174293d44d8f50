"""Prompt-cache writes of a request: the part of input_tokens written to the provider's prompt cache.

Rows stored before this revision read 0: their cache writes, if any, were only counted in
input_tokens.

Revision ID: 0006
"""

from alembic import op

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    op.execute("ALTER TABLE requests ADD COLUMN cache_write_input_tokens bigint NOT NULL DEFAULT 0;")


def downgrade() -> None:
    op.execute("ALTER TABLE requests DROP COLUMN cache_write_input_tokens;")
