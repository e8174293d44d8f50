"""Dashboard owners: people who log in to an account's dashboard with an email and a password.

Revision ID: 0004
"""

from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE owners (
            id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            account_id uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
            -- Stored lower-cased, so one address is one owner whatever its spelling.
            email text NOT NULL UNIQUE,
            -- argon2id, in the PHC string format (parameters and salt included).
            password_hash text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX owners_account ON owners (account_id);
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE owners;")
