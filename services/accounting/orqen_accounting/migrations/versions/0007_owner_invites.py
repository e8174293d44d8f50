"""Owner invitations: one-time sign-up links an owner hands to a new owner of the same account.

Only the token's SHA-256 is stored: a database dump holds no usable link.

Revision ID: 0007
"""

from alembic import op

revision = "0007"
down_revision = "0006"


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE owner_invites (
            id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            account_id uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
            token_hash text NOT NULL UNIQUE,
            invited_by uuid REFERENCES owners (id) ON DELETE SET NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            expires_at timestamptz NOT NULL,
            -- Set at the first (and only) use.
            used_at timestamptz,
            used_by uuid REFERENCES owners (id) ON DELETE SET NULL
        );
        CREATE INDEX owner_invites_account ON owner_invites (account_id);
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE owner_invites;")
