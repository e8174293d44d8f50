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


# --- Dockerfiles ---


def _dockerfile(tmp_path: Path, svc: str, edit) -> Path:
    path = tmp_path / "Dockerfile"
    path.write_text(edit((check.ROOT / "services" / svc / "Dockerfile").read_text()))
    return path


def test_dockerfile_rejects_root_user(tmp_path):
    path = _dockerfile(tmp_path, "billing", lambda s: s.replace("USER 10001:10001", "USER root"))
    assert any("non-root USER" in e for e in check.check_dockerfile(path, "billing"))


def test_dockerfile_rejects_missing_user(tmp_path):
    path = _dockerfile(tmp_path, "edge", lambda s: s.replace("USER 10001:10001\n", ""))
    assert any("non-root USER" in e for e in check.check_dockerfile(path, "edge"))


def test_optimizer_dockerfile_rejects_torch_after_other_installs(tmp_path):
    torch = f"RUN {check.TORCH_CPU}\n"
    own = "RUN pip install --no-cache-dir ./services/common ./services/optimizer\n"
    path = _dockerfile(tmp_path, "optimizer", lambda s: s.replace(torch, "").replace(own, own + torch))
    assert any("first pip install" in e for e in check.check_dockerfile(path, "optimizer"))
