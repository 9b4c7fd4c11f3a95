"""The ``evaluate`` stage: accuracy on the setting's fixed test episodes, the same for every method
(``fewshot_bench.engine.evaluation.evaluate``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from fewshot_bench.engine.evaluation import QUERY_ORDER, evaluate
from fewshot_bench.episodic.protocol import Protocol
from fewshot_bench.registry import register_stage
from fewshot_bench.stats import ci95
from fewshot_bench.stages import CellContext, Stage


def per_class_accuracy(class_correct: np.ndarray, class_ids: np.ndarray,
                       protocol: Protocol) -> tuple[dict[str, float], dict[str, float]]:
    """Accuracy on each test class over all episodes (correct queries / queries of that class), and its 95% CI
    over the episodes that hold the class (1.96 · std / √n of the class's accuracy in each of them)."""
    accuracy, interval = {}, {}
    for c in sorted(protocol.test_ids):
        mask = class_ids == c
        if mask.any():
            name = protocol.class_names[c]
            accuracy[name] = float(class_correct[mask].sum()) / float(mask.sum() * protocol.query)
            interval[name] = round(ci95(class_correct[mask] / protocol.query), 6)
    return accuracy, interval


@register_stage("evaluate")
class Evaluate(Stage):
    """Every test episode of the setting, gradients off (methods that adapt at test time re-enable them)."""

    order = 50

    def run(self, cell: CellContext) -> dict[str, Any]:
        settings = cell.settings
        result = evaluate(cell.method, cell.builder, cell.test_episodes, progress=cell.observer.evaluated,
                          amp=settings.amp, cuda_graphs=settings.cuda_graphs and not cell.compiled)
        class_accuracy, class_interval = per_class_accuracy(result.class_correct, cell.test_episodes.class_ids,
                                                            cell.protocol)
        return {"eval_seconds": round(result.seconds, 3), "eval_steps": result.step_mode, "query_order": QUERY_ORDER,
                "mean": float(np.mean(result.accuracies) * 100),
                "accuracies": [round(float(a), 6) for a in result.accuracies],
                "class_accuracy": class_accuracy, "class_ci95": class_interval}
