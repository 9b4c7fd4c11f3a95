"""Debian packages that tests bring up where they are missing (Chromium, Slurm, tmux): the one way the test
set-up installs them, so that tests on a fresh machine (CI) need no step of their own."""

from __future__ import annotations

import os
import shutil
import subprocess

# Another apt run (a parallel test worker installing another package) holds dpkg's lock: wait for it.
LOCK_WAIT = ["-o", "DPkg::Lock::Timeout=300"]


def _tail(text: str, lines: int = 3) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])


def install(packages: list[str], timeout_s: float = 900, path: str | None = None) -> str | None:
    """``apt-get install`` ``packages``: None once installed, else why they could not be (one line). A fresh
    container has no package lists yet, so a failed install is retried once after ``apt-get update``."""
    if os.geteuid() != 0:
        return f"installing {' '.join(packages)} with apt-get needs root"
    if shutil.which("apt-get", path=path) is None:
        return f"no apt-get here to install {' '.join(packages)} (not Debian or Ubuntu)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive", **({"PATH": path} if path else {})}
    command = ["apt-get", *LOCK_WAIT, "install", "-y", "--no-install-recommends", *packages]
    output = ""
    for attempt in ([command], [["apt-get", *LOCK_WAIT, "update"], command]):
        try:
            for step in attempt:
                done = subprocess.run(step, capture_output=True, text=True, env=env, timeout=timeout_s)
                output = done.stdout + done.stderr
                if done.returncode != 0:
                    break
            else:
                return None
        except subprocess.TimeoutExpired:
            output = f"apt-get did not finish within {timeout_s:.0f} s"
    return f"`apt-get install {' '.join(packages)}` failed: {_tail(output)}"
