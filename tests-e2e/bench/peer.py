"""LiteLLM's proxy, the gateway most Orqen users would otherwise run, beside Orqen in `make bench-peer`.

It runs from its own virtual environment (`.venv-peer`, made by `make bench-peer` with a pinned
`litellm[proxy]`), so its dependencies never meet Orqen's. It is configured the way a user
would to reach the same fake upstreams: one model per format, no database, the model cost map
read from the installed package (no download) and telemetry off.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from harness import ANTHROPIC_KEY, OPENAI_KEY
from orqen_stack.procs import free_port

PEER_VENV = Path(__file__).resolve().parents[2] / ".venv-peer"
PEER_KEY = "sk-peer-bench-master-key"
# The name `pip install` printed: the table says which version it measured.
PEER_NAME = "LiteLLM"

_CONFIG = """\
model_list:
  - model_name: gpt-4o-mini
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: {openai}/v1
      api_key: {openai_key}
  - model_name: claude-sonnet-4-6
    litellm_params:
      model: anthropic/claude-sonnet-4-6
      api_base: {anthropic}
      api_key: {anthropic_key}
litellm_settings:
  telemetry: false
general_settings:
  master_key: {master_key}
"""


def peer_version() -> str:
    """The installed LiteLLM version, from the peer's own environment."""
    python = PEER_VENV / "bin" / "python"
    code = "import importlib.metadata as m; print(m.version('litellm'))"
    return subprocess.run([str(python), "-c", code], check=True, capture_output=True, text=True).stdout.strip()


@contextmanager
def litellm_proxy(urls: dict[str, str]) -> Iterator[str]:
    """A running LiteLLM proxy in front of the fake OpenAI and Anthropic upstreams; yields its URL."""
    executable = PEER_VENV / "bin" / "litellm"
    if not executable.exists():
        raise SystemExit(f"{executable} is missing: run `make bench-peer`, which installs it")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="orqen-peer-") as home:
        config = Path(home) / "config.yaml"
        config.write_text(
            _CONFIG.format(
                openai=urls["openai"],
                anthropic=urls["anthropic"],
                openai_key=OPENAI_KEY,
                anthropic_key=ANTHROPIC_KEY,
                master_key=PEER_KEY,
            )
        )
        env = {
            **os.environ,
            # The cost map ships inside the package; without this LiteLLM fetches it at start.
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "LITELLM_LOG": "ERROR",
            "HOME": home,
        }
        env.pop("DATABASE_URL", None)
        log = open(Path(home) / "litellm.log", "wb")  # noqa: SIM115 - closed below, after the process
        cmd = [str(executable), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_ready(url, proc, Path(home) / "litellm.log")
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120  # importing the proxy takes a while on two cores
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"LiteLLM exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url + "/health/readiness", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"LiteLLM did not become ready:\n{log.read_text()[-3000:]}")
