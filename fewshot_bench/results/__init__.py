"""Run folders and the results in them: the run store, the leaderboard, and results as DataFrames."""

from fewshot_bench.results.frames import aggregate, cells_frame, load_episodes, load_runs

__all__ = ["aggregate", "cells_frame", "load_episodes", "load_runs"]
