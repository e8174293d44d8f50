"""The local stack's home directory (`ORQEN_HOME`, default ./.orqen): data, logs, secrets, pid file."""

from __future__ import annotations

import base64
import fcntl
import json
import os
import secrets
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from orqen_common.auth import generate_api_key
from orqen_stack.procs import pid_alive

SECRETS_FILE = "secrets.json"


@dataclass(frozen=True, slots=True)
class Secrets:
    """The secrets a local stack needs; the same on every run unless the environment overrides them."""

    internal_token: str
    bootstrap_api_key: str
    # The key ring that seals saved provider credentials ("key_id:base64 of 32 bytes").
    credentials_keys: str
    # The password of the bootstrap account's first dashboard owner (accounting creates it once).
    bootstrap_owner_password: str


class Home:
    """Paths under the home directory, and the small amount of state kept there."""

    def __init__(self, root: Path) -> None:
        self.root = root.expanduser().resolve()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Home:
        """`ORQEN_HOME` if set, else `.orqen` in the current directory."""
        env = os.environ if env is None else env
        return cls(Path(env.get("ORQEN_HOME") or ".orqen"))

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def pid_file(self) -> Path:
        return self.root / "orqen.pid"

    @property
    def supervisor_log(self) -> Path:
        return self.logs_dir / "orqen.log"

    @property
    def secrets_file(self) -> Path:
        return self.root / SECRETS_FILE

    def data_dir(self, name: str) -> Path:
        """Where an embedded server keeps its data: `pg`, `redis` or `nats`."""
        return self.root / name

    def tls_cert(self, env: Mapping[str, str]) -> Path:
        """The edge's certificate: `ORQEN_TLS_CERT`, else the dev certificate the edge generates here."""
        configured = env.get("ORQEN_TLS_CERT")
        return Path(configured) if configured else self.root / "tls" / "cert.pem"

    def ensure(self) -> None:
        """Create the home and logs directories, and make everything in the home owner-only."""
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.logs_dir.mkdir(mode=0o700, exist_ok=True)
        self.secure()

    def secure(self) -> None:
        """What the stack keeps in the home is the owner's alone: its files 0600, its folders 0700.

        Only the stack's own entries are touched (ORQEN_HOME may be a folder that holds other things).
        Run as root, the embedded Postgres runs as a user of its own (pgserver's `pgserver`), which
        opens the folders above its data for itself; its data stays that user's own (0700, and
        Postgres refuses looser), so here the home is 0711: that user may pass through, nobody may list.
        Anything another user owns keeps the mode its owner set; sockets and links are left alone.
        """
        me = os.geteuid()
        pg = self.data_dir("pg")
        postgres_runs_as_another_user = pg.is_dir() and pg.stat().st_uid != me
        os.chmod(self.root, 0o711 if postgres_runs_as_another_user else 0o700)
        for entry in self._own_entries():
            _make_private(entry, me)

    def _own_entries(self) -> list[Path]:
        """Everything the stack creates directly in the home."""
        folders = [self.logs_dir, self.tls_cert({}).parent, *(self.data_dir(name) for name in ("pg", "redis", "nats"))]
        return [*folders, self.secrets_file, self.pid_file]

    # --- secrets -----------------------------------------------------------------------

    def secrets(self, env: Mapping[str, str]) -> Secrets:
        """The stack's secrets: the environment wins, else the stored ones, else new ones, stored 0600."""
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.secrets_file, os.O_RDWR | os.O_CREAT, 0o600)
        with os.fdopen(fd, "r+", encoding="utf-8") as handle:
            # Two `orqen` commands racing on a fresh home must still agree on one set of secrets.
            fcntl.flock(handle, fcntl.LOCK_EX)
            text = handle.read()
            stored: dict[str, str] = json.loads(text) if text.strip() else {}
            missing: dict[str, Callable[[], str]] = {
                "internal_token": lambda: secrets.token_urlsafe(32),
                "bootstrap_api_key": generate_api_key,
                "credentials_keys": lambda: "k1:" + base64.b64encode(secrets.token_bytes(32)).decode(),
                "bootstrap_owner_password": lambda: secrets.token_urlsafe(18),
            }
            changed = False
            for name, make in missing.items():
                if not stored.get(name):
                    stored[name] = make()
                    changed = True
            if changed:
                handle.seek(0)
                handle.truncate()
                handle.write(json.dumps(stored, indent=2) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
        # A file copied in by hand may be readable by others; secrets never should be.
        os.chmod(self.secrets_file, 0o600)
        return Secrets(
            internal_token=env.get("ORQEN_INTERNAL_TOKEN") or stored["internal_token"],
            bootstrap_api_key=env.get("ORQEN_BOOTSTRAP_API_KEY") or stored["bootstrap_api_key"],
            credentials_keys=env.get("ORQEN_CREDENTIALS_KEYS") or stored["credentials_keys"],
            bootstrap_owner_password=env.get("ORQEN_BOOTSTRAP_OWNER_PASSWORD") or stored["bootstrap_owner_password"],
        )

    def stored_secret(self, name: str) -> str | None:
        """One stored secret without creating anything, or None."""
        try:
            value = json.loads(self.secrets_file.read_text(encoding="utf-8")).get(name)
        except (OSError, ValueError):
            return None
        return str(value) if value else None

    # --- the supervisor's pid file -------------------------------------------------------

    def running_pid(self) -> int | None:
        """The pid of a live supervisor recorded in the pid file; a stale file is removed."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        if pid != os.getpid() and pid_alive(pid) and _looks_like_orqen(pid):
            return pid
        if pid != os.getpid():
            self.pid_file.unlink(missing_ok=True)
        return None

    def write_pid(self, pid: int) -> None:
        """Record the supervisor's pid (written whole, then renamed, so readers never see half of it)."""
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = self.pid_file.with_suffix(f".{pid}.tmp")
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as out:
            out.write(f"{pid}\n")
        tmp.replace(self.pid_file)

    def remove_pid(self, pid: int) -> None:
        """Remove the pid file if it still names `pid`."""
        try:
            if int(self.pid_file.read_text().strip()) == pid:
                self.pid_file.unlink(missing_ok=True)
        except (OSError, ValueError):
            pass


def _make_private(top: Path, me: int) -> None:
    """chmod 0700 on the folders and 0600 on the regular files at and under `top` that `me` owns."""
    if not top.is_dir():
        _chmod_own(top, me, 0o600)
        return
    for folder, subfolders, files in os.walk(top):
        if not _chmod_own(Path(folder), me, 0o700):
            subfolders.clear()  # another user's data (the embedded Postgres run as root): theirs to guard
            continue
        for name in files:
            _chmod_own(Path(folder) / name, me, 0o600)


def _chmod_own(path: Path, me: int, mode: int) -> bool:
    """chmod a folder or regular file that `me` owns; False when it is another's, something else, or gone."""
    try:
        info = os.lstat(path)
        if info.st_uid != me or not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
            return False
        os.chmod(path, mode)
    except FileNotFoundError:  # a running server may remove a file between the listing and the chmod
        return False
    return True


def _looks_like_orqen(pid: int) -> bool:
    """Guard against a recycled pid: on Linux, the process must be running an orqen command."""
    try:
        return b"orqen" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc (macOS): trust the pid file
