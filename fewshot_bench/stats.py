"""Accuracy statistics: mean and 95% confidence interval over test episodes, spread across seeds."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import numpy as np

CI_FORMULA = "95% CI = 1.96 · std / √n over test episodes (std with ddof=0, as ProtoNet/MAML/Closer Look)"


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
    """

    mean: float
    ci95: float
    std: float
    n_episodes: int
    n_seeds: int
    seed_std: float


def summarize(per_seed: Mapping[int, np.ndarray]) -> AccuracySummary:
    """Pool per-seed episode accuracies (fractions in [0, 1]) into a percent summary."""
    pooled = np.concatenate([np.asarray(v, dtype=np.float64) for v in per_seed.values()]) * 100.0
    seed_means = np.array([np.mean(v) * 100.0 for v in per_seed.values()])
    seed_std = float(seed_means.std(ddof=1)) if len(seed_means) > 1 else 0.0
    return AccuracySummary(float(pooled.mean()), ci95(pooled), float(pooled.std()), int(pooled.size),
                           len(per_seed), seed_std)
