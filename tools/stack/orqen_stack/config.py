"""Configuration of the local stack (`orqen up`): which services, which ports, which home.

Everything comes from an environment mapping, so a test can describe a whole stack with a dict.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from orqen_stack.home import Home, Secrets
from orqen_stack.restarts import RestartPolicy

SERVICES = ("accounting", "billing", "optimizer", "dispatch", "edge")
# Edge first so in-flight HTTP requests finish while everything behind it still answers.
STOP_ORDER = (("edge",), ("dispatch", "optimizer"), ("billing", "accounting"))
DEFAULT_ADDRS = {
    "optimizer": "localhost:50051",
    "dispatch": "localhost:50052",
    "accounting": "localhost:50053",
    "billing": "localhost:50054",
}
# The bootstrap account's first dashboard owner, unless ORQEN_BOOTSTRAP_OWNER_EMAIL names another.
DEFAULT_OWNER_EMAIL = "owner@orqen.local"
DEFAULT_METRICS_PORTS = {"optimizer": 9151, "dispatch": 9152, "accounting": 9153, "billing": 9154}


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """One child process of the stack: its name (which names its log) and its command line."""

    name: str
    argv: tuple[str, ...]


def default_services() -> tuple[ServiceSpec, ...]:
    """The five Orqen services, in start order."""
    return tuple(ServiceSpec(name, (sys.executable, "-m", f"orqen_{name}")) for name in SERVICES)


@dataclass(frozen=True, slots=True)
class StackInfo:
    """What a person needs once the stack is up."""

    edge_url: str
    tls_url: str
    cert_path: Path
    api_key: str
    # The bootstrap account's first dashboard owner.
    owner_email: str
    owner_password: str

    @property
    def dashboard_url(self) -> str:
        return f"{self.edge_url}/dashboard"

    def render(self, *, show_key: bool = True) -> str:
        """What to print once the stack is up; without `show_key` (output bound for a log) the key and
        the owner's password stay out."""
        cert = self.cert_path
        if cert.is_relative_to(Path.cwd()):
            cert = cert.relative_to(Path.cwd())
        kept = "(kept out of logs: `make up` printed it; see ORQEN_HOME/secrets.json)"
        key, password = (self.api_key, self.owner_password) if show_key else (kept, kept)
        return "\n".join(
            [
                "Orqen is up.",
                f"  Dashboard  {self.dashboard_url}",
                f"  Sign in    {self.owner_email}",
                f"  Password   {password}   (generated at the first start; changed since? use yours)",
                f"  API        {self.edge_url}",
                f"  API (TLS)  {self.tls_url}   (dev certificate: {cert})",
                f"  API key    {key}",
                "  Logs: make logs        Stop: make down",
            ]
        )


@dataclass(frozen=True)
class StackConfig:
    """Everything the supervisor needs, read from an environment mapping (os.environ by default)."""

    home: Home
    env: Mapping[str, str]
    services: tuple[ServiceSpec, ...] = field(default_factory=default_services)
    ready_timeout: float = 180.0
    grace: float = 15.0
    restart: RestartPolicy = field(default_factory=RestartPolicy)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> StackConfig:
        """Config from `env`; `ORQEN_STACK_READY_TIMEOUT` and `ORQEN_STACK_GRACE_SECONDS` tune the waits.

        Tests swap the service commands (or the restart policy) with `dataclasses.replace(config, services=...)`.
        """
        env = dict(os.environ if env is None else env)
        return cls(
            home=Home.from_env(env),
            env=env,
            ready_timeout=float(env.get("ORQEN_STACK_READY_TIMEOUT", "180")),
            grace=float(env.get("ORQEN_STACK_GRACE_SECONDS", "15")),
        )

    @property
    def edge_port(self) -> int:
        return int(self.env.get("ORQEN_EDGE_PORT", "8080"))

    @property
    def edge_tls_port(self) -> int:
        return int(self.env.get("ORQEN_EDGE_TLS_PORT", "8443"))

    @property
    def dashboard_url(self) -> str:
        """The dashboard on the edge's HTTP port (the default of ORQEN_DASHBOARD_URL in the local stack)."""
        return f"http://localhost:{self.edge_port}/dashboard"

    def addr(self, service: str) -> str:
        """The gRPC host:port of a service: `ORQEN_<SERVICE>_ADDR` or the default."""
        return self.env.get(f"ORQEN_{service.upper()}_ADDR", DEFAULT_ADDRS[service])

    def metrics_port(self, service: str) -> int | None:
        """A service's metrics port: `ORQEN_<SERVICE>_METRICS_PORT` or the default (edge: none of its own)."""
        configured = self.env.get(f"ORQEN_{service.upper()}_METRICS_PORT")
        return int(configured) if configured else DEFAULT_METRICS_PORTS.get(service)

    def ports(self) -> dict[str, int]:
        """Every local port the stack will listen on, by what listens there."""
        ports = {"edge HTTP": self.edge_port, "edge TLS": self.edge_tls_port}
        for service in DEFAULT_ADDRS:
            ports[f"{service} gRPC"] = int(self.addr(service).rsplit(":", 1)[1])
        for service in SERVICES:
            if (port := self.metrics_port(service)) is not None:
                ports[f"{service} metrics"] = port
        return ports

    @property
    def owner_email(self) -> str:
        return self.env.get("ORQEN_BOOTSTRAP_OWNER_EMAIL") or DEFAULT_OWNER_EMAIL

    def info(self, secrets: Secrets) -> StackInfo:
        return StackInfo(
            edge_url=f"http://localhost:{self.edge_port}",
            tls_url=f"https://localhost:{self.edge_tls_port}",
            cert_path=self.home.tls_cert(self.env),
            api_key=secrets.bootstrap_api_key,
            owner_email=self.owner_email,
            owner_password=secrets.bootstrap_owner_password,
        )
