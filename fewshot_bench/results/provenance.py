"""Which code produced a cell, as exact provenance: a hash of the source that computes it, and the git state
of the checkout.

The package version (0.1.0) stays the same across every commit that changes a method, so it cannot tell two
cells apart. ``code_version`` hashes every source file a cell's numbers can depend on: the method's class files
(and its bases'), the modules it declares in ``code_modules``, the backbone's module, every registered stage's
module and the whole core path that runs a cell (runner, cell pipeline, training, evaluation, episodes, options,
recipes, pre-training). It is exact — any edit of those files changes it, a comment too — so it says *which*
code ran, not whether the numbers would differ: that is the behavioural fingerprint's job
(``fewshot_bench.fingerprint``), which decides whether a published row is current.

``gpu_paths_version`` hashes the code only a GPU runs (CUDA-graph capture and replay, bf16 autocast), which the
CPU fingerprint cannot observe: a change there makes rows computed on a GPU stale whatever the fingerprint says.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fewshot_bench.method import MethodVariant

# The modules every cell runs through, whatever its method.
CORE_MODULES = ("fewshot_bench.engine.cell", "fewshot_bench.engine.runner", "fewshot_bench.engine.training",
                "fewshot_bench.engine.evaluation", "fewshot_bench.engine.graphs", "fewshot_bench.engine.pretraining",
                "fewshot_bench.device", "fewshot_bench.episodic.tasks", "fewshot_bench.episodic.augment",
                "fewshot_bench.episodic.episodes", "fewshot_bench.episodic.protocol", "fewshot_bench.method",
                "fewshot_bench.options", "fewshot_bench.recipes", "fewshot_bench.pretraining", "fewshot_bench.heads",
                "fewshot_bench.data", "fewshot_bench.backbones", "fewshot_bench.stages")
# The code only a GPU runs (see the module docstring), in this order.
GPU_PATH_FILES = ("fewshot_bench/engine/graphs.py", "fewshot_bench/device.py")


def _source_file(obj: object) -> Path | None:
    try:
        return Path(inspect.getfile(obj)).resolve()  # type: ignore[arg-type]
    except (TypeError, OSError):
        return None


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


_VERSIONS: dict[tuple, str] = {}


def cell_code_version(variant: MethodVariant) -> str:
    """The code version of a variant's cells (see the module docstring)."""
    from fewshot_bench.registry import BACKBONES, STAGES

    stages = tuple(entry.obj for entry in STAGES.entries())
    return code_version(variant.method_class, BACKBONES.get(variant.option_dict["backbone"]), stages)


def code_version(method_class: type, backbone_factory: object, stage_classes: tuple[type, ...] = ()) -> str:
    """``code:`` + 12 hex digits of the sha256 over the sources behind a cell (see the module docstring).

    Read once per (method, backbone, stages) and process, at its first cell's start: an edit made while a run
    is going does not relabel the cells that code computed (the next process sees it)."""
    key = (method_class, backbone_factory, stage_classes)
    if key not in _VERSIONS:
        _VERSIONS[key] = _hash_sources(method_class, backbone_factory, stage_classes)
    return _VERSIONS[key]


def _module_files(name: str) -> list[Path]:
    """The file of module ``name``, or every file of package ``name``; located, not imported: the version must
    not depend on which modules this process happened to import."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.origin:
        return []
    origin = Path(spec.origin).resolve()
    if spec.submodule_search_locations:
        return sorted(origin.parent.glob("*.py"))
    return [origin]


def _hash_sources(method_class: type, backbone_factory: object, stage_classes: tuple[type, ...]) -> str:
    files = set()
    for obj in (*method_class.__mro__, backbone_factory, *stage_classes):
        module = getattr(obj, "__module__", "")
        if module in ("builtins", "torch.nn.modules.module"):
            continue
        path = _source_file(obj)
        if path is not None and "torch" not in path.parts:
            files.add(path)
    for name in (*CORE_MODULES, *method_class.code_modules):
        files.update(_module_files(name))
    digest = hashlib.sha256()
    for path in sorted(files, key=lambda p: p.name + str(p)):
        # By file name, not full path: the same code installed elsewhere has the same version.
        digest.update(path.name.encode() + b"\0" + _file_digest(path).encode())
    return "code:" + digest.hexdigest()[:12]


def gpu_paths_version() -> str:
    """12 hex digits of the sha256 over the GPU-only code (``GPU_PATH_FILES``' bytes, NUL-separated)."""
    package = Path(__file__).resolve().parent.parent  # the installed fewshot_bench folder
    parts = [(package / Path(name).relative_to("fewshot_bench")).read_bytes() for name in GPU_PATH_FILES]
    return hashlib.sha256(b"\0".join(parts)).hexdigest()[:12]


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
