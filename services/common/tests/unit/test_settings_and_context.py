import grpc
import pytest

from orqen_common.context import SERVICE_PRINCIPAL, Principal, account_scope, principal_var, require_service
from orqen_common.db import plain_postgres_url, sqlalchemy_url
from orqen_common.errors import OrqenError
from orqen_common.settings import DispatchAddress, NatsSettings, ServiceSettings, grpc_port


class CallsDispatch(ServiceSettings, DispatchAddress):
    """A service's settings as each service composes them: the common part plus the peers it calls."""


def test_settings_come_from_orqen_env_and_never_from_a_dotenv_file(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / ".env").write_text("ORQEN_LOG_LEVEL=DEBUG\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ORQEN_INTERNAL_TOKEN", "t")
    monkeypatch.setenv("ORQEN_DISPATCH_ADDR", "dispatch:6000")
    settings = CallsDispatch()  # type: ignore[call-arg]
    assert settings.log_level == "INFO"
    assert grpc_port(settings.dispatch_addr) == 6000


def test_internal_token_is_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ORQEN_INTERNAL_TOKEN", raising=False)
    with pytest.raises(ValueError, match="internal_token"):
        ServiceSettings()  # type: ignore[call-arg]


def test_nats_prefix_must_be_a_safe_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORQEN_NATS_PREFIX", "bad.prefix>")
    with pytest.raises(ValueError, match="nats_prefix"):
        NatsSettings()


def test_database_url_is_plain_postgresql_and_the_driver_is_ours() -> None:
    assert plain_postgres_url("postgres://u@h:5432/d") == "postgresql://u@h:5432/d"
    assert plain_postgres_url("postgresql+asyncpg://u@h/d") == "postgresql://u@h/d"
    assert sqlalchemy_url("postgresql://u@/d?host=/tmp/s") == "postgresql+psycopg://u@/d?host=/tmp/s"
    with pytest.raises(ValueError, match="postgresql://"):
        plain_postgres_url("mysql://u@h/d")


def _as(principal: Principal) -> None:
    principal_var.set(principal)


def test_account_scope_confines_api_keys_to_their_own_account() -> None:
    _as(Principal(kind="api_key", account_id="a1"))
    assert account_scope("") == "a1"
    assert account_scope("a1") == "a1"
    with pytest.raises(OrqenError) as denied:
        account_scope("a2")
    assert denied.value.kind.grpc_code == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(OrqenError):
        require_service()


def test_services_act_for_the_account_they_name() -> None:
    _as(SERVICE_PRINCIPAL)
    assert account_scope("a2") == "a2"
    require_service()
    with pytest.raises(OrqenError):
        account_scope("")
