"""The peer benchmark's verdict: agreement is judged over independent trainings, not over shared test episodes."""

import importlib.util
from pathlib import Path

import numpy as np

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "throughput.py"


def load_benchmark():
    spec = importlib.util.spec_from_file_location("throughput_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def repeat(mean: float, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    accuracies = np.clip(mean + rng.normal(0, 0.15, 200), 0, 1)
    return {"train_eps": 4.0, "eval_eps": 20.0, "s_per_1000": 250.0, "data_share": 0.01, "rss_mb": 900.0,
            "cuda_mb": 0.0, "accuracies": accuracies}


def test_a_gap_within_the_training_spread_agrees_and_a_consistent_one_differs():
    bench = load_benchmark()
    ours = bench.summarise([repeat(m, i) for i, m in enumerate((0.61, 0.57, 0.60))])
    peer = bench.summarise([repeat(m, 10 + i) for i, m in enumerate((0.56, 0.60, 0.58))])
    line = bench.format_row("synthetic-fer", "matchingnet", "easyfsl", peer, ours)
    assert " agree" in line and "differ" not in line

    peer_far = bench.summarise([repeat(m, 20 + i) for i, m in enumerate((0.50, 0.505, 0.51))])
    line = bench.format_row("synthetic-fer", "matchingnet", "easyfsl", peer_far, ours)
    assert "differ" in line


def test_one_training_a_side_gives_no_verdict():
    bench = load_benchmark()
    ours, peer = bench.summarise([repeat(0.6, 0)]), bench.summarise([repeat(0.5, 1)])
    line = bench.format_row("synthetic-fer", "maml", "learn2learn", peer, ours)
    assert "agree" not in line and "differ" not in line
