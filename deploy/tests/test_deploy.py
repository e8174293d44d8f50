"""Runs deploy/check.py and proves its validators reject broken input."""

from __future__ import annotations

import copy
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("orqen_deploy_check", DEPLOY / "check.py")
check = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check)


def test_check_script_passes():
    proc = subprocess.run(
        [sys.executable, str(DEPLOY / "check.py")],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "all deployment checks passed" in proc.stdout


# --- compose ---


def _compose(tmp_path: Path, condition: str) -> Path:
    path = tmp_path / "docker-compose.yml"
    path.write_text(
        yaml.safe_dump(
            {
                "services": {
                    "x": {
                        "image": "redis:7",
                        "healthcheck": {"test": ["CMD", "redis-cli", "ping"]},
                    },
                    "app": {
                        "image": "busybox",
                        "depends_on": {"x": {"condition": condition}},
                    },
                }
            }
        )
    )
    return path


def test_compose_schema_accepts_valid_condition(tmp_path):
    # Control for the next test: the file is rejected for the condition only.
    assert check.validate_compose_schema(_compose(tmp_path, "service_healthy")) == []


def test_compose_schema_rejects_bogus_condition(tmp_path):
    errors = check.validate_compose_schema(_compose(tmp_path, "bogus"))
    assert errors and "bogus" in errors[0]


def test_compose_rejects_wait_on_service_without_healthcheck(tmp_path):
    data = yaml.safe_load(check.COMPOSE.read_text())
    del data["services"]["redis"]["healthcheck"]
    for key in [k for k in data if k.startswith("x-")]:  # anchors already expanded by the load
        del data[key]
    path = tmp_path / "docker-compose.yml"
    path.write_text(yaml.safe_dump(data))
    assert any("redis to be healthy" in e for e in check.check_compose(path))


def test_compose_rejects_grpc_services_listening_on_their_service_name(tmp_path):
    data = yaml.safe_load(check.COMPOSE.read_text())
    for key in [k for k in data if k.startswith("x-")]:  # anchors already expanded by the load
        del data[key]
    del data["services"]["dispatch"]["environment"]["ORQEN_GRPC_HOST"]
    path = tmp_path / "docker-compose.yml"
    path.write_text(yaml.safe_dump(data))
    assert any("dispatch: ORQEN_GRPC_HOST" in e for e in check.check_compose(path))


# --- Kubernetes ---


@pytest.fixture(scope="module")
def base_docs():
    return check.render_builtin(check.K8S / "base")


def _find(docs, kind, name):
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


def test_k8s_strict_rejects_unknown_field(base_docs):
    dep = copy.deepcopy(_find(base_docs, "Deployment", "dispatch"))
    dep["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    assert check.validate_k8s_docs([dep], "t")


def test_k8s_rejects_unknown_kind(base_docs):
    # kubernetes-validate's CLI only warns here; check.py must fail.
    hpa = copy.deepcopy(_find(base_docs, "HorizontalPodAutoscaler", "edge"))
    hpa["kind"] = "HorizontalPodAutoscalr"
    assert check.validate_k8s_docs([hpa], "t")


def test_policy_rejects_writable_root_fs(base_docs):
    docs = copy.deepcopy(base_docs)
    sc = _find(docs, "Deployment", "optimizer")["spec"]["template"]["spec"]["containers"][0]["securityContext"]
    sc["readOnlyRootFilesystem"] = False
    assert check.check_k8s_policy(base_docs, "t") == []
    assert any("not hardened" in e for e in check.check_k8s_policy(docs, "t"))


def test_policy_rejects_wrong_grpc_probe_port(base_docs):
    docs = copy.deepcopy(base_docs)
    c = _find(docs, "Deployment", "billing")["spec"]["template"]["spec"]["containers"][0]
    c["readinessProbe"]["grpc"]["port"] = 50051
    assert any("billing readinessProbe" in e for e in check.check_k8s_policy(docs, "t"))


def test_policy_rejects_grpc_services_listening_on_their_service_name(base_docs):
    docs = copy.deepcopy(base_docs)
    del _find(docs, "ConfigMap", "orqen-config")["data"]["ORQEN_GRPC_HOST"]
    assert any("ORQEN_GRPC_HOST" in e for e in check.check_k8s_policy(docs, "t"))


@pytest.mark.parametrize("kdir", check.KUSTOMIZATIONS, ids=lambda p: p.name)
def test_builtin_renderer_matches_real_kustomize(kdir):
    real = check.render_real(kdir)
    if real is None:
        pytest.skip("no pykustomize, kustomize or kubectl on this machine")
    assert check.compare_renders(check.render_builtin(kdir), real[0]) == []


def test_builtin_renderer_refuses_unsupported_fields(tmp_path):
    (tmp_path / "kustomization.yaml").write_text("resources: []\nnamePrefix: x-\n")
    with pytest.raises(ValueError, match="namePrefix"):
        check.render_builtin(tmp_path)


# --- Dockerfile ---


def _dockerfile(tmp_path: Path, edit) -> Path:
    path = tmp_path / "Dockerfile"
    text = check.DOCKERFILE.read_text()
    edited = edit(text)
    assert edited != text, "the edit must change the Dockerfile"
    path.write_text(edited)
    return path


def test_dockerfile_passes():
    # Control for the tests below: each is rejected for its own edit only.
    assert check.check_dockerfile() == []


def test_dockerfile_rejects_root_user(tmp_path):
    path = _dockerfile(tmp_path, lambda s: s.replace("USER 10001:10001", "USER root"))
    assert any("non-root USER" in e for e in check.check_dockerfile(path))


def test_dockerfile_rejects_missing_user(tmp_path):
    path = _dockerfile(tmp_path, lambda s: s.replace("USER 10001:10001\n", ""))
    assert any("non-root USER" in e for e in check.check_dockerfile(path))


def test_dockerfile_rejects_torch_after_other_installs(tmp_path):
    torch = f"RUN {check.TORCH_STEP}\n"
    own = f"RUN {check.SERVICE_INSTALL}\n"
    path = _dockerfile(tmp_path, lambda s: s.replace(torch, "").replace(own, own + torch))
    assert any("first pip install" in e for e in check.check_dockerfile(path))


def test_dockerfile_rejects_copying_the_tools_into_an_image(tmp_path):
    path = _dockerfile(tmp_path, lambda s: s.replace("WORKDIR /src\n", "WORKDIR /src\nCOPY tools ./tools\n"))
    assert any("may copy only" in e for e in check.check_dockerfile(path))


def test_dockerfile_rejects_a_service_stage_with_the_wrong_command(tmp_path):
    path = _dockerfile(tmp_path, lambda s: s.replace('"orqen_billing"]', '"orqen_accounting"]'))
    assert any("(billing): CMD" in e for e in check.check_dockerfile(path))


def test_dockerfile_rejects_a_service_without_a_stage(tmp_path):
    path = _dockerfile(tmp_path, lambda s: s.replace("FROM runtime AS dispatch", "FROM runtime AS dispatcher"))
    assert any("(dispatch): no stage" in e for e in check.check_dockerfile(path))


def test_dockerfile_keeps_the_hub_offline_settings_to_the_optimizer(tmp_path):
    path = _dockerfile(
        tmp_path, lambda s: s.replace("EXPOSE 50052 9152\n", "EXPOSE 50052 9152\nENV HF_HUB_OFFLINE=1\n")
    )
    assert any("(dispatch): HF_HUB_OFFLINE" in e for e in check.check_dockerfile(path))


def test_dockerfile_image_is_the_stage_named_by_service(tmp_path):
    path = _dockerfile(tmp_path, lambda s: s.replace("FROM ${SERVICE}\n", "FROM edge\n"))
    assert any("FROM ${SERVICE}" in e for e in check.check_dockerfile(path))


def test_compose_rejects_a_service_built_as_another(tmp_path):
    data = yaml.safe_load(check.COMPOSE.read_text())
    data["services"]["billing"]["build"]["args"]["SERVICE"] = "accounting"
    for key in [k for k in data if k.startswith("x-")]:
        del data[key]
    path = tmp_path / "docker-compose.yml"
    path.write_text(yaml.safe_dump(data))
    assert any(
        "compose billing: not built from ./Dockerfile with SERVICE=billing" in e for e in check.check_compose(path)
    )


def test_policy_rejects_a_deployment_running_another_services_image(base_docs):
    docs = copy.deepcopy(base_docs)
    _find(docs, "Deployment", "billing")["spec"]["template"]["spec"]["containers"][0]["image"] = "orqen/edge:0.1.0"
    assert any("billing must run the image orqen/billing" in e for e in check.check_k8s_policy(docs, "t"))


# --- placeholder secrets ---


@pytest.mark.parametrize(
    ("key", "usable"),
    [
        ("ORQEN_INTERNAL_TOKEN", "a-real-internal-token-0123456789abcdef"),
        ("ORQEN_BOOTSTRAP_API_KEY", "sk-orq-Q2hvb3NlIGEgcmVhbCBrZXkgaGVyZQ"),
        ("ORQEN_CREDENTIALS_KEYS", "k1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="),
        ("ORQEN_DATABASE_URL", "postgresql://orqen:a-real-password-0123456789@postgres:5432/orqen"),
        ("OPENAI_API_KEY", "sk-proj-a-real-looking-openai-key-0123456789"),
    ],
)
def test_policy_rejects_a_usable_secret_in_the_shipped_manifests(base_docs, key, usable):
    assert check.check_k8s_policy(base_docs, "t") == []
    docs = copy.deepcopy(base_docs)
    _find(docs, "Secret", "orqen-secrets")["stringData"][key] = usable
    assert any(f"{key} ships a value the services would accept" in e for e in check.check_k8s_policy(docs, "t"))


def test_a_database_url_without_a_password_ships_no_secret(base_docs):
    docs = copy.deepcopy(base_docs)
    _find(docs, "Secret", "orqen-secrets")["stringData"]["ORQEN_DATABASE_URL"] = "postgresql://orqen@db:5432/orqen"
    assert check.check_k8s_policy(docs, "t") == []


def test_policy_rejects_development_mode_in_kubernetes(base_docs):
    docs = copy.deepcopy(base_docs)
    _find(docs, "ConfigMap", "orqen-config")["data"]["ORQEN_ENV"] = "development"
    assert any("ORQEN_ENV must not be set" in e for e in check.check_k8s_policy(docs, "t"))


@pytest.mark.parametrize(
    ("key", "value", "refused"),
    [
        (
            "ORQEN_BOOTSTRAP_API_KEY",
            "${ORQEN_BOOTSTRAP_API_KEY:-dev-bootstrap-key-change-me}",
            "default ORQEN_BOOTSTRAP",
        ),
        ("ORQEN_ENV", "${ORQEN_ENV:-production}", "ORQEN_ENV must default to development"),
    ],
)
def test_compose_defaults_must_start_a_development_stack(tmp_path, key, value, refused):
    data = yaml.safe_load(check.COMPOSE.read_text())
    assert check.check_compose() == []
    for service in data["services"].values():
        if key in service.get("environment", {}):
            service["environment"][key] = value
    for anchor in [k for k in data if k.startswith("x-")]:
        del data[anchor]
    path = tmp_path / "docker-compose.yml"
    path.write_text(yaml.safe_dump(data))
    assert any(refused in e for e in check.check_compose(path))
