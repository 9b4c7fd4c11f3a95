import math

import numpy as np
import pytest

from fewshot_bench.stats import CI_FORMULA, ci95, seed_difference, summarize


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


def test_seed_difference_is_welchs_interval_over_independent_trainings():
    from scipy import stats

    ours, peer = [60.8, 59.3, 61.0], [57.5, 57.7, 58.9, 56.0]
    d = seed_difference(ours, peer)
    welch = stats.ttest_ind(ours, peer, equal_var=False)
    assert d.mean_diff == pytest.approx(np.mean(ours) - np.mean(peer))
    assert d.p_value == pytest.approx(welch.pvalue)
    assert d.dof == pytest.approx(welch.df)
    se = math.sqrt(np.var(ours, ddof=1) / 3 + np.var(peer, ddof=1) / 4)
    assert d.ci95 == pytest.approx(stats.t.ppf(0.975, welch.df) * se)
    # Two seeds a side that land far apart give a wide interval: the same 2.4-point gap is no longer significant.
    assert seed_difference([60.8, 59.3], [57.5, 57.7]).ci95 > 2.4
    assert math.isnan(seed_difference([60.0], [57.0, 58.0]).ci95)
    exact = seed_difference([50.0, 50.0], [48.0, 48.0])
    assert (exact.mean_diff, exact.ci95, exact.p_value) == (2.0, 0.0, 0.0)
