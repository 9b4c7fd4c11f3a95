"""Paired comparisons of methods against a baseline on identical test episodes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from fewshot_bench.console import warn
from fewshot_bench.errors import ConfigError
from fewshot_bench.report import Column, Report, Value
from fewshot_bench.reporting.tables import same_episodes
from fewshot_bench.stats import PairedResult, adjust_pvalues, paired_test


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
    if not raw:
        raise ConfigError(f"nothing to compare with '{baseline}': the run has no other variant scored on the same "
                          "settings and test episodes; add methods to the run first")
    adjusted = adjust_pvalues([r.p_value for _, _, _, r, _ in raw], correction)
    return [Comparison(label, way, shot, result, p, seed_level)
            for (label, way, shot, result, seed_level), p in zip(raw, adjusted)]


def comparison_report(results: Sequence[Comparison], baseline: str, test: str, correction: str) -> Report:
    """The comparisons as a report: Δ with its CI and p-values, the verdict, and the same test over seeds."""
    headers = ("method", "setting", "Δ accuracy (points)", "95% CI of Δ", "p", f"p ({correction})", "verdict",
               "seeds", "95% CI of Δ over seeds", "p over seeds")
    columns = [Column(h, "left" if h in ("method", "setting", "verdict") else "right") for h in headers]
    rows = []
    for c in results:
        r, s = c.result, c.over_seeds
        verdict = "better" if c.p_adjusted < 0.05 and r.mean_diff > 0 else (
            "worse" if c.p_adjusted < 0.05 and r.mean_diff < 0 else "tied")
        interval = {"low": r.mean_diff - r.ci95, "high": r.mean_diff + r.ci95}
        seed_cells: list[Any] = [1, None, None] if s is None else [
            s.n, Value({"low": s.mean_diff - s.ci95, "high": s.mean_diff + s.ci95},
                       f"[{s.mean_diff - s.ci95:+.2f}, {s.mean_diff + s.ci95:+.2f}]"),
            Value(s.p_value, f"{s.p_value:.3g}")]
        rows.append([c.label, Value({"way": c.way, "shot": c.shot}, f"{c.way}-way {c.shot}-shot"),
                     Value(r.mean_diff, f"{r.mean_diff:+.2f}"),
                     Value(interval, f"[{interval['low']:+.2f}, {interval['high']:+.2f}]"),
                     Value(r.p_value, f"{r.p_value:.3g}"), Value(c.p_adjusted, f"{c.p_adjusted:.3g}"),
                     Value(verdict, verdict, style={"better": "green", "worse": "red"}.get(verdict, "")),
                     *seed_cells])
    name = "paired t-test" if test == "t" else "Wilcoxon signed-rank test"
    caption = (f"Δ = method − {baseline}, per episode, pooled over seeds (n = {results[0].result.n if results else 0}"
               f" episodes); CI: t(0.975, n−1)·sd/√n; {name}; {correction} correction over "
               f"{len(results)} comparisons; verdict at α = 0.05. Over seeds: the same test on the k per-seed "
               "mean accuracies (uncorrected; with few seeds its interval is wide, and a verdict from the episode "
               "test alone ignores how much another training run could move the result).")
    return Report(f"Paired comparison with {baseline} on identical test episodes", columns, rows, caption,
                  kind="comparison", extra={"baseline": baseline, "test": test, "correction": correction})
