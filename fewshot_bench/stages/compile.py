"""The ``compile`` stage: ``torch.compile`` of the backbone, in place, after pre-training and before
meta-training (``--compile``; methods that call their backbone with swapped-in weights declare themselves not
``compilable``)."""

from __future__ import annotations

from typing import Any

from fewshot_bench.registry import register_stage
from fewshot_bench.stages import CellContext, Stage


@register_stage("compile")
class Compile(Stage):
    """Compiles the backbone; the later stages then skip CUDA-graph capture (compile brings its own)."""

    order = 20

    def applies(self, cell: CellContext) -> bool:
        return bool(cell.settings.compile_backend) and cell.method.compilable

    def run(self, cell: CellContext) -> dict[str, Any]:
        # In place, so parameter names (checkpoints, functional calls) stay those of the plain module.
        cell.method.backbone.compile(backend=cell.settings.compile_backend)
        cell.compiled = True
        return {"compiled": cell.settings.compile_backend}

    def skipped(self, cell: CellContext) -> dict[str, Any]:
        return {"compiled": None}
