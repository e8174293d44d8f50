"""Load balancing: an account's logical models, each served by several deployments.

One row per logical model; its deployments (name, provider, model, region, weight, rpm,
tpm) are a jsonb list in the order the owner gave them, checked by
orqen_common.deployments before they are stored.

Revision ID: 0011_balance
"""

from alembic import op

revision = "0011_balance"
down_revision = "0010_cache"


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE model_deployments (
            account_id uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
            model text NOT NULL,
            strategy text NOT NULL,
            deployments jsonb NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (account_id, model)
        );
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE model_deployments;")
