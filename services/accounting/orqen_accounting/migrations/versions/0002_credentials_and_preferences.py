"""Provider credentials (sealed by dispatch), routing preferences and model toggles.

Revision ID: 0002
"""

from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.execute(
        """
        -- The secret arrives sealed (AES-GCM by dispatch); only its last 4 characters are readable here.
        CREATE TABLE provider_credentials (
            id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            account_id uuid NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
            provider text NOT NULL,
            auth text NOT NULL,
            last4 text NOT NULL DEFAULT '',
            base_url text NOT NULL DEFAULT '',
            region text NOT NULL DEFAULT '',
            key_id text NOT NULL,
            nonce bytea NOT NULL,
            ciphertext bytea NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            -- One credential per account and provider; its index also serves the per-account reads.
            UNIQUE (account_id, provider)
        );
        -- No row means the defaults (orqen_accounting.repository.DEFAULT_PREFERENCES).
        CREATE TABLE routing_preferences (
            account_id uuid PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
            mode text NOT NULL,
            k_floor integer NOT NULL,
            k_cap integer NOT NULL,
            ab_control_share double precision NOT NULL,
            fallback_models text[] NOT NULL DEFAULT '{}',
            updated_at timestamptz NOT NULL DEFAULT now()
        );
        -- No row for a model means it is enabled.
        CREATE TABLE model_toggles (
            account_id uuid NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
            model text NOT NULL,
            enabled boolean NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (account_id, model)
        );
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE model_toggles; DROP TABLE routing_preferences; DROP TABLE provider_credentials;")
