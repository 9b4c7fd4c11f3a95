"""The audit's re-evaluation with test-time batch statistics: each finished cell's saved weights evaluated again on
its own test episodes, with every batch-norm layer normalising by the statistics of the images it is given (the
episode's support and queries together: a transductive protocol some few-shot code runs at test time) instead of
the running statistics of training. The difference to the cell's honest accuracy is what that protocol adds."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fewshot_bench.config import merge
from fewshot_bench.engine.evaluation import evaluate
from fewshot_bench.engine.runner import CellRunner, cell_id
from fewshot_bench.options import Spec
from fewshot_bench.pretraining import resolve
from fewshot_bench.results.store import RunStore


@contextlib.contextmanager
def episode_batch_statistics(model: nn.Module) -> Iterator[None]:
    """Within the block, every batch-norm layer of ``model`` normalises by its input's own mean and variance and
    leaves its running statistics untouched, in eval mode too."""
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]

    def batch_normalised(layer: nn.modules.batchnorm._BatchNorm):
        return lambda x: F.batch_norm(x, None, None, layer.weight, layer.bias, True, 0.0, layer.eps)

    for layer in layers:
        layer.forward = batch_normalised(layer)
    try:
        yield
    finally:
        for layer in layers:
            del layer.forward  # back to the class's forward


def batch_statistics_accuracies(run: Path, cells: Sequence[dict[str, Any]]) -> dict[tuple, float]:
    """Per (label, way, shot, query): the mean test accuracy (percent, seeds pooled) of the cells whose final weights
    the run folder kept, evaluated with ``episode_batch_statistics``. Rows without saved weights are left out."""
    store = RunStore(run)
    runner: CellRunner | None = None
    pooled: dict[tuple, list[float]] = {}
    for cell in sorted(cells, key=lambda c: (c["label"], c["shot"], c["seed"])):
        path = store.checkpoint(cell_id(cell["label"], cell["way"], cell["shot"], cell["query"], cell["seed"])).path
        if not path.is_file():
            continue
        if runner is None:
            runner = CellRunner(merge(run / "config.yaml", {"device": "cpu"}), store)
        method = resolve(Spec.parse(cell["label"])).build(runner.protocol.dataset.image_shape)
        method.load_state_dict(torch.load(path, map_location="cpu", weights_only=True)["model"])
        with episode_batch_statistics(method):
            result = evaluate(method, runner.builder, runner.episodes(cell["shot"], cell["seed"])[1], amp=False,
                              cuda_graphs=False)
        pooled.setdefault((cell["label"], cell["way"], cell["shot"], cell["query"]), []).extend(result.accuracies)
    return {key: float(np.mean(values) * 100) for key, values in pooled.items()}
