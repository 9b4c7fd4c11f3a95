"""The cross-dataset matrix: for every method variant and shot, rows = the dataset trained on, columns =
the dataset tested on (its unseen emotions), entries = mean ± CI over test episodes (± CI over seeds)."""

from __future__ import annotations

from typing import Any, Sequence

from fewshot_bench.report import Column, Report, Value
from fewshot_bench.stats import CI_FORMULA, SEED_CI_FORMULA


def cross_report(pairs: Sequence[tuple[str, str, Sequence[dict[str, Any]]]]) -> Report:
    """``pairs``: (train dataset, test dataset, summary rows of that pair's run)."""
    datasets = list(dict.fromkeys([name for train, test, _ in pairs for name in (train, test)]))
    entries: dict[tuple[str, int, str, str], dict[str, Any]] = {}
    for train, test, rows in pairs:
        for row in rows:
            entries[(row["label"], int(row["shot"]), train, test)] = row
    variants = list(dict.fromkeys((label, shot) for label, shot, _, _ in entries))
    columns = [Column("method"), Column("shot", "right"), Column("train on", "left"),
               *(Column(f"test on {name}", "right") for name in datasets)]
    table = []
    for label, shot in variants:
        for train in datasets:
            line: list[Any] = [label, shot, train]
            for test in datasets:
                row = entries.get((label, shot, train, test))
                if row is None:
                    line.append(None)
                    continue
                text = f"{row['mean']:.2f} ± {row['ci95']:.2f}"
                if row.get("seeds", 1) > 1 and row.get("seed_ci95") == row.get("seed_ci95"):  # not NaN
                    text += f" (± {row['seed_ci95']:.2f})"
                data = {k: row.get(k) for k in ("mean", "ci95", "seed_ci95", "seeds", "episodes", "way")}
                line.append(Value(data, text))
            table.append(line)
    way = next((row.get("way") for _, _, rows in pairs for row in rows), None)
    caption = (f"Cross-dataset accuracy (%), {way}-way: trained on the row's dataset (its training emotions), "
               f"tested on the column's unseen test emotions; the diagonal is not run. {CI_FORMULA}; "
               f"{SEED_CI_FORMULA}.")
    return Report("cross-dataset suite", columns, table, caption=caption, kind="cross-dataset-matrix")
