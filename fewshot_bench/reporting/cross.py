"""The cross-dataset matrix: for every method variant and shot, rows = the dataset trained on, columns =
the dataset tested on (its unseen emotions), entries = mean ± CI over test episodes (± CI over seeds); the
diagonal is the in-domain, class-disjoint result; a pair that failed is marked in its entry and listed."""

from __future__ import annotations

from typing import Any, Sequence

from fewshot_bench.report import Column, Report, Value
from fewshot_bench.stats import CI_FORMULA, SEED_CI_FORMULA

FAILED = "failed"


def cross_report(pairs: Sequence[tuple[str, str, Sequence[dict[str, Any]]]],
                 failed: Sequence[tuple[str, str, str]] = (), datasets: Sequence[str] = ()) -> Report:
    """``pairs``: (train dataset, test dataset, summary rows of that pair's run); ``failed``: (train, test,
    one-line reason) of the pairs that stopped; ``datasets``: the suite's datasets in order (default: as met)."""
    datasets = list(datasets) or list(dict.fromkeys(
        [name for train, test, *_ in [*pairs, *failed] for name in (train, test)]))
    entries: dict[tuple[str, int, str, str], dict[str, Any]] = {}
    for train, test, rows in pairs:
        for row in rows:
            entries[(row["label"], int(row["shot"]), train, test)] = row
    broken = {(train, test): reason for train, test, reason in failed}
    variants = list(dict.fromkeys((label, shot) for label, shot, _, _ in entries))
    if not variants and broken:
        variants = [("(no result)", 0)]
    columns = [Column("method"), Column("shot", "right"), Column("train on", "left"),
               *(Column(f"test on {name}", "right") for name in datasets)]
    table = []
    for label, shot in variants:
        for train in datasets:
            line: list[Any] = [label, shot, train]
            for test in datasets:
                row = entries.get((label, shot, train, test))
                if (train, test) in broken:
                    line.append(Value({"error": broken[(train, test)]}, FAILED, style="red"))
                    continue
                if row is None:
                    line.append(None)
                    continue
                text = f"{row['mean']:.2f} ± {row['ci95']:.2f}"
                if row.get("seeds", 1) > 1 and row.get("seed_ci95") == row.get("seed_ci95"):  # not NaN
                    text += f" (± {row['seed_ci95']:.2f})"
                data = {k: row.get(k) for k in ("mean", "ci95", "seed_ci95", "seeds", "episodes", "way")}
                line.append(Value(data, text))
            table.append(line)
    rows_seen = [row for _, _, rows in pairs for row in rows]
    way = next((row.get("way") for row in rows_seen), None)
    query = next((row.get("query") for row in rows_seen), None)
    episodes = sorted({int(row["episodes"]) // max(1, int(row.get("seeds") or 1)) for row in rows_seen})
    seeds = sorted({int(row.get("seeds") or 1) for row in rows_seen})
    failures = "".join(f" Failed: {train} → {test}: {reason}." for (train, test), reason in broken.items())
    caption = (f"Cross-dataset accuracy (%), {way}-way episodes with {query} queries per class, "
               f"{'/'.join(map(str, episodes))} test episodes × {'/'.join(map(str, seeds))} seed(s): trained on the "
               "row's dataset (its training emotions), tested on the column's unseen test emotions; the diagonal "
               "trains and tests within one dataset (class-disjoint). Identical in every entry: methods, training "
               "budget, seeds, image size and channels, episode sizes; each dataset is read and de-duplicated by "
               "its own default the same way in every pair. Identical within a column: the test episodes (seeded "
               "by the column dataset's test images alone), so entries of a column differ only in the data "
               f"meta-trained on. {CI_FORMULA}; {SEED_CI_FORMULA}.{failures}")
    return Report("cross-dataset suite", columns, table, caption=caption, kind="cross-dataset-matrix",
                  extra={"failed": [{"train": t, "test": s, "error": r} for (t, s), r in broken.items()]})
