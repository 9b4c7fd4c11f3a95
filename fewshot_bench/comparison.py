"""Paired comparisons of methods against a baseline on identical test episodes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from fewshot_bench.errors import ConfigError
from fewshot_bench.stats import PairedResult, adjust_pvalues, paired_test


@dataclass(frozen=True)
class Comparison:
    """One method against the baseline in one setting (way, shot), seeds pooled episode by episode."""

    label: str
    way: int
    shot: int
    result: PairedResult
    p_adjusted: float


def compare_with_baseline(cells: Sequence[dict[str, Any]], baseline: str, test: str = "t",
                          correction: str = "holm") -> list[Comparison]:
    """Every other variant against ``baseline`` per setting; p-values corrected over all comparisons."""
    episodes: dict[tuple[str, int, int], dict[int, list[float]]] = {}
    for cell in cells:
        episodes.setdefault((cell["label"], cell["way"], cell["shot"]), {})[cell["seed"]] = cell["accuracies"]
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
            seeds = sorted(set(base) & set(other))
            if not seeds:
                continue
            a = np.concatenate([other[s] for s in seeds])
            b = np.concatenate([base[s] for s in seeds])
            raw.append((label, way, shot, paired_test(a, b, test)))
    adjusted = adjust_pvalues([r.p_value for *_, r in raw], correction)
    return [Comparison(label, way, shot, result, p) for (label, way, shot, result), p in zip(raw, adjusted)]


def render_comparison(results: Sequence[Comparison], baseline: str, test: str, correction: str, console) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"Paired comparison with {escape(baseline)} on identical test episodes", title_justify="left")
    for column in ("method", "setting", "Δ accuracy (points)", "95% CI of Δ", "p", f"p ({correction})", ""):
        table.add_column(column, justify="left" if column in ("method", "setting") else "right")
    for c in results:
        r = c.result
        verdict = "better" if c.p_adjusted < 0.05 and r.mean_diff > 0 else (
            "worse" if c.p_adjusted < 0.05 and r.mean_diff < 0 else "tied")
        table.add_row(escape(c.label), f"{c.way}-way {c.shot}-shot", f"{r.mean_diff:+.2f}",
                      f"[{r.mean_diff - r.ci95:+.2f}, {r.mean_diff + r.ci95:+.2f}]", f"{r.p_value:.3g}",
                      f"{c.p_adjusted:.3g}", verdict)
    console.print(table)
    name = "paired t-test" if test == "t" else "Wilcoxon signed-rank test"
    console.print(f"Δ = method − {baseline}, per episode, pooled over seeds (n = {results[0].result.n if results else 0}"
                  f" episodes); CI: t(0.975, n−1)·sd/√n; {name}; {correction} correction over "
                  f"{len(results)} comparisons; verdict at α = 0.05.", soft_wrap=True)
