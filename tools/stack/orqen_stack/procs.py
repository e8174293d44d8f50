"""Small process and port helpers shared by the embedded servers and the local supervisor."""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import BinaryIO

# The ports the machine's own Postgres, Redis and NATS use: nothing we start may take them.
STANDARD_PORTS = frozenset({5432, 6379, 4222})
# The umask of every process the local stack starts: what they create (logs, data, the dev
# certificate) is readable by the owner only, whatever the user's own umask.
PRIVATE_UMASK = 0o077


def open_private_log(path: Path) -> BinaryIO:
    """Open a log for appending, owner-only (0600) even when an earlier run created it more open."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, "ab")


# Ports free_port handed out in this process: the kernel may offer a port again as soon as its
# probe socket closes, and two listeners given one port (the edge's HTTP and TLS) fail to start.
_handed_out: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now, chosen by the kernel: never a standard port, never one this
    process was given before."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port: int = sock.getsockname()[1]
        if port not in STANDARD_PORTS and port not in _handed_out:
            _handed_out.add(port)
            return port


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts TCP connections on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def tail(path: Path, lines: int = 40, since: int = 0) -> str:
    """The last `lines` lines of a text file written after byte offset `since`, or a note if it is missing."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            # Reading the last 64 KiB is plenty for 40 lines and bounded for huge logs.
            handle.seek(max(since, handle.tell() - 65536))
            text = handle.read().decode(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def terminate(proc: subprocess.Popen[bytes], grace: float) -> int:
    """Stop a child gracefully: SIGTERM, wait up to `grace` seconds, then SIGKILL. Returns its exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait()


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (and is not a zombie we could reap)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    status = Path(f"/proc/{pid}/stat")
    if status.exists():
        try:
            # Field 3 of /proc/<pid>/stat is the state; Z means it already exited.
            return status.read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except (OSError, IndexError):
            return True
    return True


def wait_pid_exit(pid: int, timeout: float) -> bool:
    """Wait for a process that is not our child to exit; True when it did within `timeout`.

    On Linux a pidfd makes this a single blocking wait; elsewhere it falls back to polling.
    """
    deadline = time.monotonic() + timeout
    pidfd_open = getattr(os, "pidfd_open", None)
    if pidfd_open is not None:
        try:
            fd = pidfd_open(pid)
        except ProcessLookupError:
            return True
        except OSError:
            fd = -1
        if fd >= 0:
            try:
                while pid_alive(pid):
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    # The pidfd becomes readable when the process exits; zombies need the recheck.
                    select.select([fd], [], [], min(remaining, 1.0))
                return True
            finally:
                os.close(fd)
    while pid_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)
    return True
