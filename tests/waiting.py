"""Waiting in tests for something another process does (a worker, a Slurm job), within a time limit."""

from __future__ import annotations

import subprocess
import time
from typing import Any, Callable


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 180.0,
             process: subprocess.Popen | None = None) -> Any:
    """``condition()``'s first truthy value, polled every 50 ms; fails naming ``what`` after ``timeout`` seconds,
    or at once when ``process`` ended before it came."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        assert process is None or process.poll() is None, f"the run ended while waiting for {what}"
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
