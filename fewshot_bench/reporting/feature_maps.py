"""The per-class feature-map figure of methods that compare queries with class maps (CRN, its ablations, RN):
what the class maps of one test episode look like with and without the Jensen–Shannon term
(../shared/docs/CRN.md asks for it).

Each row is a variant, each column a test class: the class map the method compares queries with (its
``episode_class_maps`` hook: DAP's mean over the K shots for CRN, the sum for RN and ``crn[dap=false]``),
averaged over channels and scaled to its own range; the row title gives the number the hook returns with the
maps (for RN and CRN the mean Jensen–Shannon divergence between the classes' map distributions). Which methods
have a figure is their ``class_map_figure`` declaration.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch

from fewshot_bench.config import merge
from fewshot_bench.engine.runner import CellRunner, cell_id
from fewshot_bench.errors import ConfigError
from fewshot_bench.pretraining import resolve
from fewshot_bench.options import Spec
from fewshot_bench.reporting.plots import pyplot, save_figure
from fewshot_bench.results.store import RunStore


def class_map_rows(run: Path, cells: Sequence[dict[str, Any]], shot: int | None = None,
                   seed: int | None = None) -> tuple[list[str], int, int, list[tuple[str, torch.Tensor, float]]]:
    """(class names, shot, seed, rows) for the first test episode of (``shot``, ``seed``): per relation-style
    variant of the run whose final weights were saved, its label, its (n_way, C, h, w) class maps and their
    mean pairwise JS divergence. Defaults: the largest shot and the first seed run."""
    def has_class_maps(label: str) -> bool:
        try:
            return resolve(Spec.parse(label)).method_class.class_map_figure
        except ConfigError:  # a plugin variant that is not loaded here
            return False

    store = RunStore(run)
    relational = [c for c in cells if has_class_maps(c["label"])]
    shot = shot if shot is not None else max((c["shot"] for c in relational), default=None)
    seed = seed if seed is not None else min((c["seed"] for c in relational if c["shot"] == shot), default=None)
    chosen = [c for c in relational if c["shot"] == shot and c["seed"] == seed
              and store.checkpoint(cell_id(c["label"], c["way"], c["shot"], c["query"], c["seed"])).path.is_file()]
    if not chosen:
        raise ConfigError(f"run '{run}' has no finished CRN or Relation Network cell with saved weights"
                          + (f" at {shot} shots, seed {seed}" if shot is not None else "")
                          + "; --feature-maps draws their class maps (run crn and crn[js_weight=0], say)")
    config = merge(run / "config.yaml", {"device": "cpu"})
    runner = CellRunner(config, store)
    task = runner.builder.task(runner.episodes(shot, seed)[1][0])
    names = [runner.protocol.class_names[i] for i in runner.episodes(shot, seed)[1][0].class_ids]
    rows = []
    for cell in chosen:
        variant = resolve(Spec.parse(cell["label"]))
        method = variant.build(runner.protocol.dataset.image_shape)
        path = store.checkpoint(cell_id(cell["label"], cell["way"], cell["shot"], cell["query"], cell["seed"])).path
        method.load_state_dict(torch.load(path, map_location="cpu", weights_only=True)["model"])
        maps, divergence = method.eval().episode_class_maps(task)
        rows.append((cell["label"], maps, divergence))
    return names, shot, seed, rows


def feature_map_figure(run: Path, out: Path, cells: Sequence[dict[str, Any]], shot: int | None = None,
                       seed: int | None = None) -> list[Path]:
    """Draw ``class_map_rows`` as feature_maps.png / .pdf in ``out``."""
    names, shot, seed, rows = class_map_rows(run, cells, shot, seed)
    plt = pyplot()
    n_way = len(names)
    fig, axes = plt.subplots(len(rows), n_way, figsize=(1.9 * n_way, 2.0 * len(rows)), squeeze=False)
    for r, (label, maps, js) in enumerate(rows):
        for c in range(n_way):
            image = maps[c].mean(0)
            image = (image - image.min()) / (image.max() - image.min()).clamp_min(1e-12)
            axes[r][c].imshow(image.numpy(), cmap="viridis", vmin=0, vmax=1)
            axes[r][c].set_xticks([])
            axes[r][c].set_yticks([])
            for spine in axes[r][c].spines.values():
                spine.set_visible(False)
            if r == 0:
                axes[r][c].set_title(names[c], fontsize=9)
        axes[r][0].set_ylabel(f"{label}\nmean JS {js:.3f}", fontsize=8)
    fig.suptitle(f"class maps (channel mean, each scaled to its range) of test episode 0, {n_way}-way {shot}-shot, "
                 f"seed {seed}", fontsize=9)
    return save_figure(fig, out, "feature_maps")
