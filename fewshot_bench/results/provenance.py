"""Which code produced a cell: a hash of the source that computes it, and the git state of the checkout.

The package version (0.1.0) stays the same across every commit that changes a method, so it cannot tell
two cells apart. ``code_version`` hashes the source files a cell's numbers depend on: the method's module
and those of its base classes, the backbone's module, the core training and evaluation path, and for cells
that pre-train the pre-training stage's modules (so adding the stage changed no other cell's version). Editing
any of them (a plugin file too) gives new cells a new version, which the run reports when it meets
finished cells of another version and which every leaderboard row lists.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import subprocess
from pathlib import Path

# The modules every cell runs through, whatever its method.
CORE_MODULES = ("fewshot_bench.engine.training", "fewshot_bench.engine.evaluation", "fewshot_bench.engine.graphs",
                "fewshot_bench.device", "fewshot_bench.episodic.tasks", "fewshot_bench.episodic.augment",
                "fewshot_bench.episodic.episodes", "fewshot_bench.episodic.protocol", "fewshot_bench.method",
                "fewshot_bench.data", "fewshot_bench.backbones")


def _source_file(obj: object) -> Path | None:
    try:
        return Path(inspect.getfile(obj)).resolve()  # type: ignore[arg-type]
    except (TypeError, OSError):
        return None


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


_VERSIONS: dict[tuple[type, object, tuple[str, ...]], str] = {}


def code_version(method_class: type, backbone_factory: object, extra_modules: tuple[str, ...] = ()) -> str:
    """``code:`` + 12 hex digits of the sha256 over the sources behind a cell (see the module docstring).

    Read once per (method, backbone) and process, at its first cell's start: an edit made while a run is
    going does not relabel the cells that code computed (the next process sees it)."""
    key = (method_class, backbone_factory, tuple(extra_modules))
    if key not in _VERSIONS:
        _VERSIONS[key] = _hash_sources(method_class, backbone_factory, tuple(extra_modules))
    return _VERSIONS[key]


def _hash_sources(method_class: type, backbone_factory: object, extra_modules: tuple[str, ...] = ()) -> str:
    files = set()
    for klass in method_class.__mro__:
        if klass.__module__ not in ("builtins", "torch.nn.modules.module"):
            path = _source_file(klass)
            if path is not None and "torch" not in path.parts:
                files.add(path)
    backbone_file = _source_file(backbone_factory)
    if backbone_file is not None:
        files.add(backbone_file)
    # Modules a method declares it computes with besides its classes' files (shared helpers, heads).
    for name in (*CORE_MODULES, *extra_modules, *getattr(method_class, "code_modules", ())):
        # Located, not imported: the version must not depend on which modules this process happened to import
        # (a run imports them all; `bench card` checking a record's version need not).
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin:
            files.add(Path(spec.origin).resolve())
    digest = hashlib.sha256()
    for path in sorted(files, key=lambda p: p.name + str(p)):
        # By file name, not full path: the same code installed elsewhere has the same version.
        digest.update(path.name.encode() + b"\0" + _file_digest(path).encode())
    return "code:" + digest.hexdigest()[:12]


def git_state() -> tuple[str | None, bool | None]:
    """(commit, whether the checkout has uncommitted changes) of the source tree this package runs from, or
    (None, None) when it is not a git checkout (an installed wheel)."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=here)
        if commit.returncode != 0 or not commit.stdout.strip():
            return None, None
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                                text=True, timeout=5, cwd=here)
    except (OSError, subprocess.SubprocessError):
        return None, None
    return commit.stdout.strip(), bool(status.stdout.strip()) if status.returncode == 0 else None
