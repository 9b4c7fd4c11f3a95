"""Shared fixtures: a private cache folder, tiny datasets, and the location of the shared real data."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path | None:
    """``$FEWSHOT_BENCH_DATA`` or ``../shared/data`` beside the repository, if it exists."""
    candidates = [os.environ.get("FEWSHOT_BENCH_DATA"), REPO.parent / "shared" / "data"]
    for candidate in candidates:
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return None


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    os.environ["FEWSHOT_BENCH_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    os.environ["COLUMNS"] = "200"  # rich wraps tables at 80 columns when output is not a terminal
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # Two test workers share the 2-core machine: one thread each (and in the processes they start), or
        # OpenMP's spinning threads slow both down.
        os.environ["OMP_NUM_THREADS"] = "1"
        torch.set_num_threads(1)
    else:
        torch.set_num_threads(min(2, torch.get_num_threads()))


# The longest single tests (20-90 s each on the 2-core machine, mostly `bench` processes): run first, so the two
# xdist workers end together instead of one finishing a long test alone at the end.
LONGEST_FIRST = ("test_gpu_script.py::", "test_slurm.py::test_a_cancelled_slurm_run_resumes_byte_identical",
                 "test_docs_plugins.py::test_tutorial_commands_all_succeed",
                 "test_methods_beat_chance.py::", "test_docs_analysis.py::",
                 "test_launch.py::test_a_killed_worker_is_reported_and_resumed",
                 "test_resume.py::test_sigterm_and_ctrl_c_stop_a_run_and_resume_finishes_it",
                 "test_fingerprint.py::test_refactors_stay_current_and_behaviour_changes_go_stale",
                 "test_launch.py::test_a_failing_cell_is_reported_with_its_log_and_the_others_finish",
                 "test_resume.py::test_a_jobs_run_logged_to_a_file_shows_cell_counts_and_each_worker_logs_its_progress")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        return next((i for i, name in enumerate(LONGEST_FIRST) if name in item.nodeid), len(LONGEST_FIRST))

    items.sort(key=rank)  # stable: every other test keeps its place


@pytest.fixture
def shared_data() -> Path:
    path = shared_data_dir()
    if path is None:
        pytest.skip("shared real data not found (set FEWSHOT_BENCH_DATA or place it in ../shared/data)")
    return path


TINY_FER = {"total": 500, "identities": 20}


def tiny_run_flags(tmp_path: Path, **overrides) -> dict:
    """Config values for a seconds-long run on a tiny synthetic-fer."""
    flags = {
        "dataset_options": dict(TINY_FER),
        "image_size": 24,
        "shots": [1, 2],
        "query": 3,
        "train_episodes": 4,
        "test_episodes": 6,
        "output_dir": str(tmp_path / "runs"),
        "run_id": "tiny",
        "log_interval": 2,
        "device": "cpu",
        # The context rows have tests of their own (test_context.py); these runs are about the methods' cells.
        "context": [],
    }
    flags.update(overrides)
    return flags


@pytest.fixture
def labels_two_per_class() -> np.ndarray:
    return np.repeat(np.arange(5), 10)
