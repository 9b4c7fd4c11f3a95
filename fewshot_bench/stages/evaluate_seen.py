"""The ``evaluate_seen`` stage: the method on episodes of its own training classes, drawn from the images the
seen-class hold-out kept from every training (``fewshot_bench.episodic.holdout``; ``--context seen``).

Beside the test accuracy on unseen classes it tells whether the method learnt at all: a method near its floor on
the test classes but far above it here learnt features that do not transfer; one near its floor on both did not
learn. Recorded in the cell's ``seen`` block, shown among the context rows, never ranked.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fewshot_bench.engine.evaluation import evaluate
from fewshot_bench.registry import register_stage
from fewshot_bench.stages import CellContext, Stage


@register_stage("evaluate_seen")
class EvaluateSeen(Stage):
    """The setting's seen-class episodes (as many as its test episodes), when the run holds images out."""

    order = 55

    def applies(self, cell: CellContext) -> bool:
        return cell.protocol.holds_out_seen_images

    def run(self, cell: CellContext) -> dict[str, Any]:
        episodes = cell.protocol.seen_episodes(cell.shot, cell.seed, len(cell.test_episodes))
        result = evaluate(cell.method, cell.builder, episodes, amp=cell.settings.amp,
                          cuda_graphs=cell.settings.cuda_graphs and not cell.compiled, purpose="seen-class")
        return {"seen": {"mean": float(np.mean(result.accuracies) * 100),
                         "accuracies": [round(float(a), 6) for a in result.accuracies],
                         "episodes_sha": episodes.fingerprint(), "way": int(episodes.class_ids.shape[1]),
                         "holdout_sha": cell.protocol.seen_holdout_sha}}
