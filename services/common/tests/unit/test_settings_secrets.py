"""Empty and placeholder secrets are refused at start, outside development mode for the placeholders."""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys

import pytest
from pydantic import AliasChoices, Field, SecretStr

from orqen_common.auth import generate_api_key
from orqen_common.settings import DatabaseSettings, ServiceSettings, load_settings, secret_is_usable

ZERO_KEY = "k1:" + base64.b64encode(bytes(32)).decode()
REAL_KEY = "k1:" + base64.b64encode(secrets.token_bytes(32)).decode()
REAL_TOKEN = secrets.token_urlsafe(32)


class WithEverySecret(ServiceSettings, DatabaseSettings):
    """Like accounting (bootstrap key, database) and dispatch (credentials keys, provider keys) together."""

    bootstrap_api_key: SecretStr | None = Field(None, description="bootstrap key")
    credentials_keys: SecretStr | None = Field(None, description="credentials key ring")
    openai_api_key: SecretStr | None = Field(None, validation_alias=AliasChoices("OPENAI_API_KEY"), description="key")


_VARIABLES = ("ORQEN_ENV", "ORQEN_INTERNAL_TOKEN", "ORQEN_BOOTSTRAP_API_KEY", "ORQEN_CREDENTIALS_KEYS")


def _settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> WithEverySecret:
    for name in (*_VARIABLES, "ORQEN_DATABASE_URL", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name.upper() if name == "openai_api_key" else f"ORQEN_{name.upper()}", value)
    return WithEverySecret()  # type: ignore[call-arg]


def test_real_secrets_are_accepted_in_production(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings(
        monkeypatch,
        internal_token=REAL_TOKEN,
        bootstrap_api_key=generate_api_key(),
        credentials_keys=REAL_KEY,
        database_url=f"postgresql://orqen:{REAL_TOKEN}@postgres:5432/orqen",
        openai_api_key="sk-proj-" + REAL_TOKEN,
    )
    assert settings.env == "production"
    # A database URL without a password (peer or certificate auth) and no provider key at all are fine too.
    assert _settings(
        monkeypatch, internal_token=REAL_TOKEN, database_url="postgresql://orqen@db/orqen", openai_api_key=""
    )


@pytest.mark.parametrize(
    ("env", "refused"),
    [
        # The values docker-compose.yml and deploy/k8s/base used to ship.
        ({"internal_token": "change-me-internal-token"}, "ORQEN_INTERNAL_TOKEN is a placeholder"),
        ({"internal_token": "dev-internal-token-change-me"}, "ORQEN_INTERNAL_TOKEN is a placeholder"),
        ({"credentials_keys": ZERO_KEY}, "ORQEN_CREDENTIALS_KEYS key 'k1' is one repeated byte"),
        ({"credentials_keys": f"k2:{REAL_KEY[3:]},{ZERO_KEY}"}, "key 'k1' is one repeated byte"),
        ({"bootstrap_api_key": "sk-orq-dev-bootstrap-key-change-me"}, "ORQEN_BOOTSTRAP_API_KEY is a placeholder"),
        ({"bootstrap_api_key": "change-me-bootstrap-key"}, "ORQEN_BOOTSTRAP_API_KEY must start with sk-orq-"),
        ({"internal_token": " "}, "ORQEN_INTERNAL_TOKEN is empty"),
        ({"credentials_keys": ""}, "ORQEN_CREDENTIALS_KEYS is empty"),
        ({"bootstrap_api_key": ""}, "ORQEN_BOOTSTRAP_API_KEY must start with sk-orq-"),
        # The Kubernetes base's database URL and OpenAI key.
        (
            {"database_url": "postgresql://orqen:change-me@postgres:5432/orqen"},
            "ORQEN_DATABASE_URL holds a placeholder password",
        ),
        ({"openai_api_key": "sk-change-me"}, "OPENAI_API_KEY is a placeholder"),
    ],
)
def test_empty_and_placeholder_secrets_are_refused_in_production(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], refused: str
) -> None:
    with pytest.raises(ValueError, match=refused):
        _settings(monkeypatch, **{"internal_token": REAL_TOKEN, **env})


def test_development_mode_accepts_placeholders_but_not_unusable_values(monkeypatch: pytest.MonkeyPatch) -> None:
    placeholders = {
        "internal_token": "dev-internal-token-change-me",
        "bootstrap_api_key": "sk-orq-dev-bootstrap-key-change-me",
        "credentials_keys": ZERO_KEY,
        "database_url": "postgresql://orqen:change-me@postgres:5432/orqen",
        "openai_api_key": "sk-change-me",
    }
    assert _settings(monkeypatch, env="development", **placeholders).env == "development"
    with pytest.raises(ValueError, match="ORQEN_INTERNAL_TOKEN is empty"):
        _settings(monkeypatch, env="development", internal_token="")
    with pytest.raises(ValueError, match="must start with sk-orq-"):
        _settings(monkeypatch, env="development", internal_token=REAL_TOKEN, bootstrap_api_key="dev-key")


def test_a_service_checks_only_the_secrets_it_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    # The edge's settings have no credentials key ring: a placeholder one in a shared Secret is dispatch's concern.
    monkeypatch.setenv("ORQEN_CREDENTIALS_KEYS", ZERO_KEY)
    monkeypatch.setenv("ORQEN_INTERNAL_TOKEN", REAL_TOKEN)
    monkeypatch.delenv("ORQEN_ENV", raising=False)
    assert ServiceSettings().env == "production"  # type: ignore[call-arg]


def test_secret_is_usable_answers_as_production_services_do() -> None:
    assert secret_is_usable("ORQEN_INTERNAL_TOKEN", REAL_TOKEN)
    assert not secret_is_usable("ORQEN_INTERNAL_TOKEN", "change-me-internal-token")
    assert not secret_is_usable("ORQEN_CREDENTIALS_KEYS", ZERO_KEY)
    assert not secret_is_usable("ORQEN_BOOTSTRAP_API_KEY", "")
    assert not secret_is_usable("OPENAI_API_KEY", "sk-change-me")
    assert not secret_is_usable("ORQEN_DATABASE_URL", "postgresql://orqen:change-me@postgres/orqen")
    assert secret_is_usable("ORQEN_DATABASE_URL", "postgresql://orqen@postgres/orqen")


def test_a_placeholder_database_password_is_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError) as refused:
        _settings(monkeypatch, internal_token=REAL_TOKEN, database_url="postgresql://u:pw-change-me-42@db/orqen")
    assert "pw-change-me-42" not in str(refused.value).split("[type=")[0]


def test_load_settings_ends_the_process_with_one_clear_line_and_no_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORQEN_INTERNAL_TOKEN", "change-me-internal-token")
    monkeypatch.delenv("ORQEN_ENV", raising=False)
    with pytest.raises(SystemExit) as refused:
        load_settings(ServiceSettings)
    message = str(refused.value.code)
    assert "refusing to start" in message and "ORQEN_INTERNAL_TOKEN is a placeholder" in message
    assert "change-me-internal-token" not in message


@pytest.mark.parametrize("service", ["edge", "optimizer", "dispatch", "accounting", "billing"])
def test_every_service_refuses_a_placeholder_internal_token_at_start(service: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORQEN_")}
    env["ORQEN_INTERNAL_TOKEN"] = "change-me-internal-token"
    started = subprocess.run(
        [sys.executable, "-m", f"orqen_{service}"], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert started.returncode != 0
    assert "refusing to start" in started.stderr and "ORQEN_INTERNAL_TOKEN is a placeholder" in started.stderr
