"""The request log keeps how each request was routed: its attempts, the route reason, the
optimizer's tool-routing trace and the tools the model then called.

Revision ID: 0003
"""

from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE requests
            ADD COLUMN route_reason text NOT NULL DEFAULT '',
            ADD COLUMN attempts jsonb NOT NULL DEFAULT '[]',
            ADD COLUMN trace jsonb,
            ADD COLUMN tools_called text[] NOT NULL DEFAULT '{}';
        -- /routing/traces reads the newest decisions; /routing/calibration the A/B control ones.
        CREATE INDEX requests_account_traced ON requests (account_id, created_at DESC) WHERE trace IS NOT NULL;
        CREATE INDEX requests_account_ab_control ON requests (account_id, created_at DESC)
            WHERE routing LIKE '%\\_ab\\_ctrl';
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP INDEX requests_account_ab_control;
        DROP INDEX requests_account_traced;
        ALTER TABLE requests DROP COLUMN tools_called, DROP COLUMN trace, DROP COLUMN attempts,
            DROP COLUMN route_reason;
        """
    )
