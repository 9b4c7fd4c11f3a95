"""Shell scripts that stand in for a cluster's commands (sbatch, squeue, sacct, srun) in tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def fake_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, only: bool = False, **scripts: str) -> Path:
    """Write each script (its body, without the ``#!/bin/sh`` line) as an executable named after its keyword in
    ``tmp_path/bin``, and put that folder first on PATH; with ``only``, it is all of PATH (a real Slurm installed
    here, as test_slurm.py may do, must not answer instead)."""
    fake = tmp_path / "bin"
    fake.mkdir(exist_ok=True)
    for name, body in scripts.items():
        tool = fake / name
        tool.write_text("#!/bin/sh\n" + body)
        tool.chmod(0o755)
    monkeypatch.setenv("PATH", str(fake) if only else f"{fake}{os.pathsep}{os.environ['PATH']}")
    return fake
