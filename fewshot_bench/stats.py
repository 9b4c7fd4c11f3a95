"""Accuracy statistics: mean and 95% confidence interval over test episodes, spread across seeds."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import numpy as np

CI_FORMULA = "95% CI = 1.96 · std / √n over test episodes (std with ddof=0, as ProtoNet/MAML/Closer Look)"
SEED_CI_FORMULA = ("in parentheses, where a row has several training seeds: the 95% CI over seeds, "
                   "t(0.975, k−1) · sd / √k of the k per-seed means (sd with ddof=1)")


def seed_ci95(seed_means: np.ndarray) -> float:
    """Half-width of the Student-t 95% CI of the mean of ``seed_means`` (NaN with fewer than two seeds).

    The episode interval treats every test episode as independent, but the episodes of one seed share one
    trained model: with few seeds the variation between training runs is usually the larger uncertainty.
    """
    values = np.asarray(seed_means, dtype=np.float64)
    if values.size < 2:
        return float("nan")
    from scipy import stats  # imported only when needed: it costs a second and a half per process

    return float(stats.t.ppf(0.975, values.size - 1) * values.std(ddof=1) / math.sqrt(values.size))


def ci95(accuracies: np.ndarray) -> float:
    """Half-width of the 95% confidence interval of the mean: 1.96 · std (ddof=0) / sqrt(n)."""
    values = np.asarray(accuracies, dtype=np.float64)
    if values.size == 0:
        return float("nan")
    return float(1.96 * values.std() / math.sqrt(values.size))


@dataclass(frozen=True)
class AccuracySummary:
    """Accuracy over all test episodes of all seeds of one setting, in percent.

    Attributes:
        mean: mean episode accuracy.
        ci95: half-width of the 95% CI of ``mean`` (episodes pooled over seeds).
        std: standard deviation of episode accuracies.
        n_episodes: episodes pooled over seeds.
        n_seeds: number of seeds.
        seed_std: standard deviation of the per-seed means (ddof=1; 0 with one seed).
        seed_ci95: half-width of the Student-t 95% CI over the per-seed means (NaN with one seed).
    """

    mean: float
    ci95: float
    std: float
    n_episodes: int
    n_seeds: int
    seed_std: float
    seed_ci95: float = float("nan")


def summarize(per_seed: Mapping[int, np.ndarray]) -> AccuracySummary:
    """Pool per-seed episode accuracies (fractions in [0, 1]) into a percent summary."""
    pooled = np.concatenate([np.asarray(v, dtype=np.float64) for v in per_seed.values()]) * 100.0
    seed_means = np.array([np.mean(v) * 100.0 for v in per_seed.values()])
    seed_std = float(seed_means.std(ddof=1)) if len(seed_means) > 1 else 0.0
    return AccuracySummary(float(pooled.mean()), ci95(pooled), float(pooled.std()), int(pooled.size),
                           len(per_seed), seed_std, seed_ci95(seed_means))


@dataclass(frozen=True)
class PairedResult:
    """A paired comparison of two methods on the same episodes (differences a − b, in percent points).

    Attributes:
        mean_diff: mean of the per-episode differences.
        ci95: half-width of the Student-t 95% CI of ``mean_diff``.
        p_value: two-sided p-value of the paired test.
        n: number of paired episodes.
        test: "t" (paired t-test) or "wilcoxon" (signed-rank).
    """

    mean_diff: float
    ci95: float
    p_value: float
    n: int
    test: str


def paired_test(a: np.ndarray, b: np.ndarray, test: str = "t") -> PairedResult:
    """Compare per-episode accuracies ``a`` and ``b`` (fractions) measured on the same episodes."""
    from scipy import stats

    # Tests run on the accuracies as given: scaling to percent first would perturb tied |differences|
    # in the last bit and change Wilcoxon's ranks.
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.size < 2:
        raise ValueError("paired tests need two equally long vectors of at least 2 episodes")
    diff = (a - b) * 100.0
    n = diff.size
    sd = diff.std(ddof=1)
    constant = sd <= 1e-9 * max(1.0, abs(diff.mean()))  # every episode differs by the same amount
    half = 0.0 if constant else float(stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n))
    if not np.any(np.abs(diff) > 1e-9):
        p = 1.0
    elif test == "t":
        p = 0.0 if constant else float(stats.ttest_rel(a, b).pvalue)
    elif test == "wilcoxon":
        p = float(stats.wilcoxon(a, b).pvalue)
    else:
        raise ValueError(f"unknown paired test '{test}'; use t or wilcoxon")
    return PairedResult(float(diff.mean()), half, p, n, test)


@dataclass(frozen=True)
class SeedDifference:
    """The difference between two implementations' (or methods') accuracies across independent trainings.

    Each side is a set of per-seed mean accuracies from separate trainings; the trainings of the two sides are
    not paired (each draws its own initial weights and episodes), so the interval is Welch's: it carries the
    training-to-training spread that a paired interval over shared test episodes leaves out.

    Attributes:
        mean_diff: mean of ``a``'s seed means minus mean of ``b``'s, in the inputs' unit.
        ci95: half-width of Welch's 95% CI of ``mean_diff`` (NaN with fewer than two seeds on a side).
        p_value: two-sided p-value of Welch's t-test (NaN likewise).
        dof: Welch–Satterthwaite degrees of freedom.
    """

    mean_diff: float
    ci95: float
    p_value: float
    dof: float


def seed_difference(a: np.ndarray, b: np.ndarray) -> SeedDifference:
    """Welch's comparison of two sets of per-seed mean accuracies (independent trainings)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    diff = float(a.mean() - b.mean()) if a.size and b.size else float("nan")
    if a.size < 2 or b.size < 2:
        return SeedDifference(diff, float("nan"), float("nan"), float("nan"))
    from scipy import stats

    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    se = math.sqrt(va + vb)
    if se == 0.0:  # both sides constant: the difference is exact
        return SeedDifference(diff, 0.0, 1.0 if diff == 0.0 else 0.0, float("inf"))
    dof = (va + vb) ** 2 / (va ** 2 / (a.size - 1) + vb ** 2 / (b.size - 1))
    half = float(stats.t.ppf(0.975, dof) * se)
    p = float(2 * stats.t.sf(abs(diff) / se, dof))
    return SeedDifference(diff, half, p, float(dof))


def adjust_pvalues(pvalues: list[float], method: str = "holm") -> list[float]:
    """Multiple-comparison correction: Holm (step-down, default), Bonferroni, or none."""
    p = np.asarray(pvalues, dtype=np.float64)
    m = p.size
    if m == 0 or method == "none":
        return p.tolist()
    if method == "bonferroni":
        return np.minimum(p * m, 1.0).tolist()
    if method != "holm":
        raise ValueError(f"unknown correction '{method}'; use holm, bonferroni or none")
    order = np.argsort(p)
    adjusted = np.empty(m)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return adjusted.tolist()
