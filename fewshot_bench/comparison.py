"""Paired comparisons of methods against a baseline on identical test episodes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from fewshot_bench.errors import ConfigError
from fewshot_bench.console import warn
from fewshot_bench.stats import PairedResult, adjust_pvalues, paired_test
from fewshot_bench.tables import same_episodes


@dataclass(frozen=True)
class Comparison:
    """One method against the baseline in one setting (way, shot): seeds pooled episode by episode
    (``result``), and the per-seed mean differences tested over seeds (``over_seeds``, None with one seed)."""

    label: str
    way: int
    shot: int
    result: PairedResult
    p_adjusted: float
    over_seeds: PairedResult | None = None


def compare_with_baseline(cells: Sequence[dict[str, Any]], baseline: str, test: str = "t",
                          correction: str = "holm") -> list[Comparison]:
    """Every other variant against ``baseline`` per setting; p-values corrected over all comparisons."""
    episodes: dict[tuple[str, int, int], dict[int, list[float]]] = {}
    shas: dict[tuple[str, int, int], dict[int, str | None]] = {}
    for cell in cells:
        episodes.setdefault((cell["label"], cell["way"], cell["shot"]), {})[cell["seed"]] = cell["accuracies"]
        shas.setdefault((cell["label"], cell["way"], cell["shot"]), {})[cell["seed"]] = cell.get("test_episodes_sha")
    labels = list(dict.fromkeys(c["label"] for c in cells))
    if baseline not in labels:
        raise ConfigError(f"baseline '{baseline}' is not in this run; its variants are: {', '.join(labels)}")
    raw: list[tuple[str, int, int, PairedResult]] = []
    for way, shot in sorted({(c["way"], c["shot"]) for c in cells}):
        base = episodes.get((baseline, way, shot))
        if base is None:
            continue
        for label in labels:
            other = episodes.get((label, way, shot))
            if label == baseline or other is None:
                continue
            seeds = []
            for seed in sorted(set(base) & set(other)):
                if same_episodes({seed: shas[(baseline, way, shot)][seed]}, {seed: shas[(label, way, shot)][seed]}):
                    seeds.append(seed)
                else:
                    warn(f"{label} and {baseline} at {way}-way {shot}-shot seed {seed} were scored on different "
                         "test episodes; that seed is left out of their comparison")
            if not seeds:
                continue
            a = np.concatenate([other[s] for s in seeds])
            b = np.concatenate([base[s] for s in seeds])
            # Over seeds: each seed's mean accuracy is one paired observation (a t-test on k differences),
            # so the variation between training runs counts, not only that between test episodes.
            seed_level = paired_test(np.array([np.mean(other[s]) for s in seeds]),
                                     np.array([np.mean(base[s]) for s in seeds])) if len(seeds) > 1 else None
            raw.append((label, way, shot, paired_test(a, b, test), seed_level))
    adjusted = adjust_pvalues([r.p_value for _, _, _, r, _ in raw], correction)
    return [Comparison(label, way, shot, result, p, seed_level)
            for (label, way, shot, result, seed_level), p in zip(raw, adjusted)]


def render_comparison(results: Sequence[Comparison], baseline: str, test: str, correction: str, console) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"Paired comparison with {escape(baseline)} on identical test episodes", title_justify="left")
    for column in ("method", "setting", "Δ accuracy (points)", "95% CI of Δ", "p", f"p ({correction})", "",
                   "seeds", "95% CI of Δ over seeds", "p over seeds"):
        table.add_column(column, justify="left" if column in ("method", "setting") else "right")
    for c in results:
        r, s = c.result, c.over_seeds
        verdict = "better" if c.p_adjusted < 0.05 and r.mean_diff > 0 else (
            "worse" if c.p_adjusted < 0.05 and r.mean_diff < 0 else "tied")
        seed_cells = ("1", "—", "—") if s is None else (
            str(s.n), f"[{s.mean_diff - s.ci95:+.2f}, {s.mean_diff + s.ci95:+.2f}]", f"{s.p_value:.3g}")
        table.add_row(escape(c.label), f"{c.way}-way {c.shot}-shot", f"{r.mean_diff:+.2f}",
                      f"[{r.mean_diff - r.ci95:+.2f}, {r.mean_diff + r.ci95:+.2f}]", f"{r.p_value:.3g}",
                      f"{c.p_adjusted:.3g}", verdict, *seed_cells)
    console.print(table)
    name = "paired t-test" if test == "t" else "Wilcoxon signed-rank test"
    console.print(f"Δ = method − {baseline}, per episode, pooled over seeds (n = {results[0].result.n if results else 0}"
                  f" episodes); CI: t(0.975, n−1)·sd/√n; {name}; {correction} correction over "
                  f"{len(results)} comparisons; verdict at α = 0.05. Over seeds: the same test on the k per-seed "
                  "mean accuracies (uncorrected; with few seeds its interval is wide, and a verdict from the episode "
                  "test alone ignores how much another training run could move the result).", soft_wrap=True)
