"""`frozen` holds every thread of a process stopped for its block, and lets the process go after it."""

from __future__ import annotations

import subprocess
import sys
import time

from orqen_testing.servers import frozen, is_stopped

# Two threads always running: a stop must reach both before the block starts.
SPINNING = "import threading\ndef spin():\n    while True: pass\nthreading.Thread(target=spin).start()\nspin()"


def test_a_frozen_process_is_stopped_through_the_block_and_runs_again_after_it() -> None:
    process = subprocess.Popen([sys.executable, "-c", SPINNING])
    try:
        time.sleep(0.2)  # both threads started
        assert not is_stopped(process.pid)
        with frozen(process.pid):
            assert is_stopped(process.pid)
            time.sleep(0.05)
            assert is_stopped(process.pid) and process.poll() is None
        deadline = time.monotonic() + 5
        while is_stopped(process.pid) and time.monotonic() < deadline:  # SIGCONT is asynchronous too
            time.sleep(0.01)
        assert not is_stopped(process.pid)
    finally:
        process.kill()
        process.wait()
