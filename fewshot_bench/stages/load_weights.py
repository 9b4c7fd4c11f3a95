"""The ``load_weights`` stage: the variant starts from the weights of a file (``weights=PATH``, mapped by
``weights_layout``), after any pre-training and before meta-training."""

from __future__ import annotations

from typing import Any

from fewshot_bench.engine.weights import load_initial_weights
from fewshot_bench.registry import register_stage
from fewshot_bench.stages import CellContext, Stage


@register_stage("load_weights")
class LoadWeights(Stage):
    """Initial weights from a file, recorded by its sha256 (cells without a file record nothing)."""

    order = 15

    def applies(self, cell: CellContext) -> bool:
        return bool(cell.variant.option_dict.get("weights"))

    def run(self, cell: CellContext) -> dict[str, Any]:
        options = cell.variant.option_dict
        return {"initial_weights": load_initial_weights(cell.method, options["weights"],
                                                        options.get("weights_layout", "native"), cell.variant.label)}
