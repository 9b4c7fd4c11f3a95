import math

import numpy as np
import pytest

from fewshot_bench.stats import CI_FORMULA, ci95, summarize


def test_ci95_is_196_std_over_sqrt_n():
    values = np.array([0.2, 0.4, 0.4, 0.6, 1.0])
    std = math.sqrt(sum((v - 0.52) ** 2 for v in values) / 5)
    assert ci95(values) == pytest.approx(1.96 * std / math.sqrt(5))
    assert "1.96" in CI_FORMULA and "ddof=0" in CI_FORMULA


def test_summary_pools_seeds_in_percent_and_reports_seed_spread():
    s = summarize({0: np.array([0.5, 0.7]), 1: np.array([0.9, 0.9])})
    assert s.mean == pytest.approx(75.0)
    assert s.n_episodes == 4 and s.n_seeds == 2
    assert s.ci95 == pytest.approx(ci95(np.array([50, 70, 90, 90.0])))
    assert s.seed_std == pytest.approx(np.std([60.0, 90.0], ddof=1))
    assert summarize({0: np.array([0.5, 1.0])}).seed_std == 0.0
