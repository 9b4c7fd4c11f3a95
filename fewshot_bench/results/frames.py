"""Results as data: every finished cell (or test episode) of every run as a pandas DataFrame, and the one
aggregator behind each run's summary and the leaderboard.

    from fewshot_bench.results import load_runs
    cells = load_runs("results/runs")                     # one row per cell
    cells.pivot_table(index="label", columns="shot", values="mean")

A cell row has its identification (run, cell, label, method, dataset, split, way, shot, query, seed,
backbone), its numerics (``device_kind`` and ``precision``, see ``numerics``), its accuracy (``mean`` in percent over its ``episodes``), its cost, its provenance (settings
hash, code version, git commit, test episodes' sha), every result-affecting config value as
``config.<key>``, every method option as ``option.<name>`` and the run's environment as ``env.<key>``. The
per-episode accuracies (fractions) stay in ``accuracies``, a list per row; ``load_episodes`` gives them one
row each.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np

from fewshot_bench.results.numerics import record_numerics
from fewshot_bench.stats import summarize

if TYPE_CHECKING:
    import pandas as pd

    from fewshot_bench.results.store import CellRecord

IDENTITY = ("run_id", "cell", "label", "method", "dataset", "split", "way", "shot", "query", "seed", "backbone",
            "train_way", "train_query")
COST = ("params", "train_episodes", "train_seconds", "eval_seconds", "device", "threads", "train_steps",
        "eval_steps")
# What the cell's arithmetic ran on and in (``numerics.record_numerics``): part of a result's identity, so
# every grouping that pools seeds keys on it.
NUMERICS = ("device_kind", "precision")
PROVENANCE = ("settings_hash", "code_version", "method_version", "method_source", "git_commit", "git_dirty",
              "test_episodes_sha", "dedup", "finished")
# Whole numbers that older records may lack: nullable integers, so a missing value does not turn the
# column into floats.
_INTEGERS = ("way", "shot", "query", "seed", "train_way", "train_query", "params", "train_episodes", "threads",
             "episodes")
DEFAULT_SOURCE = "results/runs"


def cells_frame(cells: Iterable[CellRecord]) -> pd.DataFrame:
    """One row per cell record (the columns are in the module docstring)."""
    import pandas as pd

    rows = []
    for cell in cells:
        row: dict[str, Any] = {key: cell.get(key) for key in (*IDENTITY, *COST, *PROVENANCE)}
        row.update(record_numerics(cell))
        accuracies = [float(a) for a in cell["accuracies"]]
        row.update(mean=float(np.mean(accuracies) * 100), episodes=len(accuracies), accuracies=accuracies)
        row.update({f"config.{k}": _scalar(v) for k, v in (cell.get("settings") or {}).items()})
        row.update({f"option.{k}": _scalar(v) for k, v in (cell.get("options") or {}).items()})
        row.update({f"env.{k}": _scalar(v) for k, v in (cell.get("environment") or {}).items()})
        rows.append(row)
    frame = pd.DataFrame(rows, columns=list(dict.fromkeys([*IDENTITY, *COST, *NUMERICS, *PROVENANCE, "mean",
                                                           "episodes", "accuracies",
                                                           *(k for r in rows for k in r)])))
    return frame.astype({column: "Int64" for column in _INTEGERS})


def _scalar(value: Any) -> Any:
    """A DataFrame entry: mappings and lists (a split's class lists, dataset options) as their JSON text."""
    return json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else value


def load_runs(*sources: str | Path) -> pd.DataFrame:
    """Every finished cell of the runs at or directly below ``sources`` (default ``results/runs``), one row
    each; damaged records are left out with a warning naming them."""
    from fewshot_bench.results.leaderboard import load_cells

    return cells_frame(load_cells([Path(s) for s in sources] or [Path(DEFAULT_SOURCE)]))


def load_episodes(*sources: str | Path) -> pd.DataFrame:
    """Every test episode of every finished cell: the cell's identification, numerics and settings hash, ``episode``
    (its index in the run's saved test episodes) and ``accuracy`` (a fraction)."""
    cells = load_runs(*sources)
    keep = [*IDENTITY, *NUMERICS, "settings_hash", "test_episodes_sha", "accuracies"]
    episodes = cells[keep].explode("accuracies", ignore_index=False).rename(columns={"accuracies": "accuracy"})
    episodes.insert(len(keep) - 1, "episode", episodes.groupby(level=0).cumcount())
    return episodes.reset_index(drop=True).astype({"accuracy": float, "episode": int})


def _plain(value: Any, default: Any = "") -> Any:
    """A python value for rows and CSVs: missing (None, NaN, pandas' NA) becomes ``default``, numpy scalars
    python ones."""
    import pandas as pd

    if value is None or (not isinstance(value, (list, dict, str)) and pd.isna(value)):
        return default
    return value.item() if isinstance(value, np.generic) else value


def _distinct(values: Iterable[Any]) -> str:
    return ";".join(dict.fromkeys(str(v) for v in values if v))


def aggregate(frame: pd.DataFrame, keys: Sequence[str]) -> list[dict[str, Any]]:
    """Pool the seeds of each group of cells with equal ``keys`` (first-seen order): accuracy (mean, CI over
    episodes, std, seed std and CI over seeds, via ``stats.summarize``), cost, environment and provenance
    (every distinct code version, commit and episode sha of the group's seeds). The one aggregator behind a
    run's summary.csv and the leaderboard."""
    rows = []
    for key, group in frame.groupby(list(keys), sort=False, dropna=False):
        group = group.sort_values("seed", kind="stable")
        summary = summarize({int(seed): np.asarray(acc) for seed, acc in zip(group["seed"], group["accuracies"])})
        first, last = group.iloc[0], group.iloc[-1]

        def env(name: str) -> Any:
            return _plain(last.get(f"env.{name}"))

        rows.append({
            **{k: _plain(v) for k, v in zip(keys, key if isinstance(key, tuple) else (key,))},
            "method": first["method"], "backbone": _plain(first["backbone"]), "mean": summary.mean,
            "ci95": summary.ci95, "std": summary.std, "episodes": summary.n_episodes, "seeds": summary.n_seeds,
            "seed_std": summary.seed_std, "seed_ci95": summary.seed_ci95, "params": _plain(first["params"]),
            "train_episodes": _plain(first["train_episodes"]),
            # epochs of the supervised pre-training stage (an option of variants that pre-train), else 0
            "pretrain_epochs": int(_plain(first.get("option.pretrain_epochs"), None) or 0),
            "train_seconds": float(np.mean(group["train_seconds"].astype(float))),
            "eval_seconds": float(np.mean(group["eval_seconds"].astype(float))),
            "device": _plain(last["device"]), "torch": env("torch"), "python": env("python"),
            "fewshot_bench": env("fewshot_bench"),
            # Every code version and commit behind the row's seeds: more than one means mixed code, shown.
            "method_version": _distinct(_plain(c) or _plain(m) for c, m in zip(group["code_version"],
                                                                                  group["method_version"])),
            "git_commit": _distinct((_plain(c) or _plain(e)) + ("+dirty" if _plain(d, False) else "")
                                    for c, e, d in zip(group["git_commit"], _column(group, "env.git_commit"),
                                                       group["git_dirty"])),
            "train_way": _plain(first["train_way"]), "train_query": _plain(first["train_query"]),
            # the variant's learning rate (an option since methods have their own recipes), else the run's
            "lr": _plain(first.get("option.lr"), None) or _plain(first.get("config.lr")),
            "test_episodes_sha": _distinct(_plain(s) for s in group["test_episodes_sha"]),
            "run_ids": ";".join(sorted({str(r) for r in group["run_id"] if _plain(r)})),
            **({} if "settings_hash" in keys else {"settings_hash": _distinct(_plain(h) for h in group["settings_hash"])}),
            "timestamp": max(_plain(f) for f in group["finished"]),
        })
    return rows


def _column(frame: pd.DataFrame, name: str) -> Sequence[Any]:
    return frame[name] if name in frame else [None] * len(frame)
