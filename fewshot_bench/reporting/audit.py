"""``bench audit``: what common reporting protocols would have printed for a run's models, beside the honest number.

For every method row of a finished run (its seeds pooled), from the per-episode accuracies the run saved, with a
seeded generator so an audit is reproducible:

* **one evaluation, 1 query per class** — what an evaluation of ``E`` episodes with one query per class prints:
  unbiased, but its 95 % range says how far one such number strays;
* **best of M evaluations** — the maximum of ``M`` such evaluations of the same model, as a protocol that keeps
  the best test accuracy seen over training reports it (CSRN's released CRN checkpoint stores one);
* **best of M at the run's size** — the same selection over evaluations as large as the run's (as many episodes,
  all their queries), to show how much a large evaluation set shrinks the inflation (drawn from the normal law of
  such a mean: the same bootstrap-and-Bernoulli variance).

* **best checkpoint on the test episodes** — for runs with a ``budget_curve``: the highest of each cell's test
  accuracies along its training (the curve's points and the final one), seeds averaged. This one is measured, not
  simulated: the selection during training that a "best test accuracy" protocol performs, at the run's size.

* **test-time batch statistics** (``bench audit --batch-stats``) — the cells' saved weights evaluated again on
  their test episodes with batch norm normalising by each episode's own images (``reporting.batch_statistics``).
* **per class, best of the seeds** — for rows with several seeds: each test class's accuracy taken from the seed
  where it is highest, then averaged over the classes (as a table of per-class accuracies that keeps each class's
  best repeat prints it). Measured from the cells' per-class accuracies.

Each is a number with its inflation over the honest mean. An evaluation is simulated by drawing ``E`` of the saved
episodes with replacement and, within each, every query's outcome as a Bernoulli draw of that episode's accuracy
(queries of one episode are exchangeable given the episode). The model is fixed across the ``M`` evaluations, so
these are lower bounds for selection during training, where the model also changes between evaluations (measured
by the best-checkpoint column when the run saved a ``budget_curve``). Nothing here enters a table, leaderboard or comparison.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Sequence

import numpy as np

from fewshot_bench.report import Column, Report, Value
from fewshot_bench.stats import ci95

# Common evaluation sizes (episodes × queries per class) and numbers of evaluations a selection may take the best of.
SMALL_EPISODES = 25
SELECTIONS = (10, 100, 1000)
REPEATS = 200  # simulated reporting processes per number (the audit prints their mean)


@dataclass(frozen=True)
class AuditRow:
    """One method row's honest accuracy and what each audited protocol would print (percent)."""

    label: str
    shot: int
    way: int
    honest: float
    honest_ci95: float
    one_small: tuple[float, float]          # 95 % range of one E-episode, 1-query-per-class evaluation
    best_small: dict[int, float]           # M -> expected best of M such evaluations
    best_full: dict[int, float]            # M -> expected best of M evaluations of the run's size
    best_checkpoint: float | None = None   # best test accuracy along training (budget curve), seeds averaged
    checkpoints: int = 0                   # evaluations per cell that selection picks from (curve points + final)
    best_seed_per_class: float | None = None  # mean over classes of each class's best seed (several seeds only)
    batch_statistics: float | None = None  # the saved weights with test-time batch statistics (``--batch-stats``)


def simulated_evaluations(accuracies: np.ndarray, episodes: int, queries: int, way: int, n: int,
                          rng: np.random.Generator) -> np.ndarray:
    """(n,) accuracies (fractions) of ``n`` simulated evaluations of ``episodes`` episodes drawn from the saved ones
    with ``queries`` queries per class, each query right with its episode's accuracy."""
    picks = rng.integers(0, len(accuracies), size=(n, episodes))
    correct = rng.binomial(way * queries, accuracies[picks])
    return correct.sum(axis=1) / (episodes * way * queries)


def audit_row(label: str, way: int, shot: int, query: int, accuracies: Sequence[float], seed: int = 0,
              small_episodes: int = SMALL_EPISODES, selections: Sequence[int] = SELECTIONS,
              repeats: int = REPEATS) -> AuditRow:
    """The audit of one method row (its saved per-episode accuracies, seeds pooled)."""
    accuracies = np.asarray(accuracies, dtype=float)
    rng = np.random.default_rng([seed, shot, way, query, len(accuracies)])
    single = simulated_evaluations(accuracies, small_episodes, 1, way, 20_000, rng)
    full_sd = float(np.sqrt((accuracies.var() + np.mean(accuracies * (1 - accuracies)) / (way * query))
                            / len(accuracies)))
    best_small, best_full = {}, {}
    for m in selections:
        small = simulated_evaluations(accuracies, small_episodes, 1, way, repeats * m, rng).reshape(repeats, m)
        best_small[m] = float(small.max(axis=1).mean() * 100)
        # As large as the run's: a mean of thousands of outcomes, normal to within far less than its spread (the
        # same bootstrap-and-Bernoulli variance, drawn at once).
        full = rng.normal(accuracies.mean(), full_sd, size=(repeats, m))
        best_full[m] = float(full.max(axis=1).mean() * 100)
    low, high = np.percentile(single, [2.5, 97.5]) * 100
    return AuditRow(label, shot, way, float(accuracies.mean() * 100), ci95(accuracies) * 100, (float(low), float(high)),
                    best_small, best_full)


def audit_cells(cells: Sequence[dict[str, Any]], batch_statistics: dict[tuple, float] | None = None,
                **options: Any) -> list[AuditRow]:
    """The audit of every (variant, way, shot, query) of ``cells``, seeds pooled in seed order; with
    ``batch_statistics`` (``reporting.batch_statistics``), those re-evaluations beside them."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for cell in cells:
        groups.setdefault((cell["label"], cell["way"], cell["shot"], cell["query"]), []).append(cell)
    rows = []
    for (label, way, shot, query), group in groups.items():
        accuracies = np.concatenate([c["accuracies"] for c in sorted(group, key=lambda c: c["seed"])])
        row = audit_row(label, way, shot, query, accuracies, **options)
        classes = sorted({name for c in group for name in c.get("class_accuracy") or {}})
        if len(group) > 1 and classes and all(set(c.get("class_accuracy") or {}) == set(classes) for c in group):
            best = [max(c["class_accuracy"][name] for c in group) for name in classes]
            row = replace(row, best_seed_per_class=float(np.mean(best) * 100))
        if batch_statistics and (label, way, shot, query) in batch_statistics:
            row = replace(row, batch_statistics=batch_statistics[(label, way, shot, query)])
        if all(c.get("budget_curve") for c in group):
            along = [[*c["budget_curve"]["mean"], c["mean"]] for c in group]
            row = replace(row, best_checkpoint=float(np.mean([max(points) for points in along])),
                          checkpoints=min(len(points) for points in along))
        rows.append(row)
    return rows


def audit_report(rows: Sequence[AuditRow], small_episodes: int = SMALL_EPISODES) -> Report:
    """The audit as a report: the honest accuracy, then each protocol's number with its inflation."""
    selections = sorted(rows[0].best_small) if rows else []
    columns = [Column("method"), Column("setting"), Column("honest", "right"),
               Column(f"one eval ({small_episodes} ep, 1 q)", "right"),
               *(Column(f"best of {m} ({small_episodes} ep, 1 q)", "right") for m in selections),
               *(Column(f"best of {m} (run's size)", "right") for m in selections)]
    along = any(row.best_checkpoint is not None for row in rows)
    if along:
        columns.append(Column("best checkpoint (test episodes)", "right"))
    per_class = any(row.best_seed_per_class is not None for row in rows)
    if per_class:
        columns.append(Column("per class, best of the seeds", "right"))
    batch = any(row.batch_statistics is not None for row in rows)
    if batch:
        columns.append(Column("test-time batch statistics", "right"))
    table = []
    for row in rows:
        def inflated(value: float) -> Value:
            inflation = round(value - row.honest, 6) + 0.0  # + 0.0: no "-0.00" where the best is the honest number
            return Value({"value": value, "inflation": inflation}, f"{value:.2f} ({inflation:+.2f})")

        table.append([row.label, f"{row.way}-way {row.shot}-shot",
                      Value({"mean": row.honest, "ci95": row.honest_ci95}, f"{row.honest:.2f} ± {row.honest_ci95:.2f}"),
                      Value({"low": row.one_small[0], "high": row.one_small[1]},
                            f"{row.one_small[0]:.1f} – {row.one_small[1]:.1f}"),
                      *(inflated(row.best_small[m]) for m in selections),
                      *(inflated(row.best_full[m]) for m in selections),
                      *([inflated(row.best_checkpoint) if row.best_checkpoint is not None else Value(None, "—")]
                        if along else []),
                      *([inflated(row.best_seed_per_class) if row.best_seed_per_class is not None
                         else Value(None, "—")] if per_class else []),
                      *([inflated(row.batch_statistics) if row.batch_statistics is not None
                         else Value(None, "—")] if batch else [])])
    caption = (f"Accuracy (%) of each row's fixed model as common reporting protocols would print it, simulated "
               f"from the run's saved per-episode accuracies ({REPEATS} simulated reports per number, seeded): "
               f"'one eval' is the 95 % range of one evaluation of {small_episodes} episodes with 1 query per class; "
               "'best of M' the expected maximum of M such evaluations (selection on the test classes, as a 'best "
               "test accuracy' checkpoint stores it), then of M evaluations as large as the run's; in parentheses "
               "the inflation over the honest mean. The model is fixed: selection during training, where it also "
               "changes, inflates more" + ("; 'best checkpoint' is measured: the best of each cell's test accuracies along its "
                                        "training (its budget curve and the end), seeds averaged" if along else "")
               + ("; 'per class, best of the seeds' is measured: each test class's accuracy from its best seed, "
                  "averaged over the classes" if per_class else "")
               + ("; 'test-time batch statistics' is measured: the saved weights evaluated again on the same "
                  "episodes with batch norm normalising by each episode's own images (transductive)" if batch else "")
               + ". Never part of a table, leaderboard or comparison.")
    return Report("", columns, table, caption=caption, kind="audit")
