"""Paper-ready accuracy tables: methods × settings, ``mean ± ci95``, best in bold, ties marked.

From a run, "tied with the best" is decided by paired tests on the identical test episodes (paired t-test
or Wilcoxon, Holm-corrected within each column, α = 0.05). From a leaderboard CSV, which has no
per-episode data, two entries are tied when their 95% CIs overlap (stated in the caption).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from fewshot_bench.report import BEST, BEST_NOTE, TIED, Column, Report, Value
from fewshot_bench.stats import CI_FORMULA, SEED_CI_FORMULA, adjust_pvalues, paired_test

ALPHA = 0.05


@dataclass
class AccuracyTable:
    """A rendered-format-independent accuracy table."""

    labels: list[str]
    columns: list[tuple]
    headers: list[str]
    cells: dict[tuple[str, tuple], dict[str, Any]]
    best: dict[tuple, str] = field(default_factory=dict)
    tied: set[tuple[str, tuple]] = field(default_factory=set)
    caption: str = ""


def protocol_of(row: dict[str, Any]) -> tuple:
    """The column a row (or cell record) belongs in: its dataset, way and shot, and everything else that must be
    equal for two entries to be ranked against each other — split, queries per class, test episodes per seed
    and their recorded sha (``None`` where older records lack one)."""
    episodes = row.get("episodes")
    if episodes is None and "accuracies" in row:
        episodes = len(row["accuracies"])
    per_seed = None if episodes is None else int(episodes) // max(1, int(row.get("seeds") or 1))
    sha = row.get("test_episodes_sha") or None
    return (row["dataset"], row["way"], row["shot"], row.get("split") or "", row.get("query"), per_seed, sha)


def _layout(rows: Sequence[dict[str, Any]]) -> tuple[list[str], list[tuple], list[str], dict]:
    """Labels, columns (one per protocol, so only comparable entries share one), their headers and the cells.
    A header names what sets its column apart from another of the same dataset, way and shot."""
    labels = list(dict.fromkeys(r["label"] for r in rows))
    columns = sorted({protocol_of(r) for r in rows}, key=lambda c: tuple(str(part) for part in c))
    single = len({(c[0], c[1]) for c in columns}) == 1
    headers = []
    for column in columns:
        dataset, way, shot, split, query, per_seed, sha = column
        header = f"{shot}-shot" if single else f"{dataset} {way}-way {shot}-shot"
        rivals = [c for c in columns if c[:3] == column[:3] and c != column]
        details = []
        if any(c[3] != split for c in rivals):
            details.append(f"split {split}")
        if any(c[4] != query for c in rivals):
            details.append(f"{query} q")
        if any(c[5] != per_seed for c in rivals):
            details.append(f"{per_seed} ep")
        if any(c[3:6] == column[3:6] for c in rivals):  # told apart by the episodes' sha alone
            details.append(f"episodes {sha[:8]}" if sha else "episodes unrecorded")
        headers.append(header + (f" ({', '.join(details)})" if details else ""))
    cells = {(r["label"], protocol_of(r)): r for r in rows}
    return labels, columns, headers, cells


def _caption(rows: Sequence[dict[str, Any]], tie_rule: str) -> str:
    episodes = sorted({r["episodes"] // max(1, r["seeds"]) for r in rows})
    seeds = sorted({r["seeds"] for r in rows})
    queries = sorted({r["query"] for r in rows})
    ways = sorted({r["way"] for r in rows})
    seed_rule = f"; {SEED_CI_FORMULA}" if any(r["seeds"] > 1 for r in rows) else ""
    columns = {protocol_of(r) for r in rows}
    if all(column[6] for column in columns):
        identical = ("identical for every method in a column (checked by their sha)" if len(columns) > 1
                     else "identical for every method (checked by their sha)")
    else:
        identical = "the same for every method only where their sha was recorded (older rows lack it: not checked)"
    grouped = ("; only entries of one column (same split, queries, test episodes) are ranked against each other"
               if len(columns) > len({c[:3] for c in columns}) else "")
    # What was tested, in every format (a pasted table must say it): dataset and split of each column.
    tested = "; ".join(dict.fromkeys(f"{c[0]}, split {c[3]}" if c[3] else c[0] for c in sorted(
        columns, key=lambda c: tuple(str(part) for part in c))))
    return (f"{tested}. Accuracy (%) on {'/'.join(map(str, ways))}-way episodes with {'/'.join(map(str, queries))} queries per "
            f"class, {'/'.join(map(str, episodes))} test episodes × {'/'.join(map(str, seeds))} seed(s), "
            f"{identical}{grouped}; {CI_FORMULA}{seed_rule}. {BEST_NOTE}; †: {tie_rule}.")


def _best(table: AccuracyTable, column: tuple) -> list[str]:
    """The labels present in ``column``, with the best one recorded in ``table.best``."""
    present = [label for label in table.labels if (label, column) in table.cells]
    if present:
        table.best[column] = max(present, key=lambda label: table.cells[(label, column)]["mean"])
    return present


def same_episodes(a: dict[int, str | None], b: dict[int, str | None]) -> bool:
    """Whether two cells' seeds were scored on the same test episodes (by the recorded episode sha; cells
    recorded before shas existed count as the same)."""
    return all(a.get(seed) is None or b.get(seed) is None or a[seed] == b[seed] for seed in set(a) & set(b))


def _numerics(row: dict[str, Any]) -> str:
    """A row's device kind and precision as a label suffix (empty for rows that lack them)."""
    return "/".join(str(row[k]) for k in ("device_kind", "precision") if row.get(k))


def _suffixes(rows: Sequence[dict[str, Any]], hashes: bool) -> dict[tuple, dict[tuple, str]]:
    """Per (variant, dataset, way, shot) with several rows, the label suffix of each row's (settings hash,
    numerics): the short hash when those differ (``hashes``), the device kind and precision when those do,
    so rows never pooled (``numerics``) are never merged into one table entry either."""
    seen: dict[tuple, set[tuple[str, str]]] = {}
    for r in rows:
        seen.setdefault((r["label"], r["dataset"], r["way"], r["shot"]), set()).add(
            (str(r.get("settings_hash", "")) if hashes else "", _numerics(r)))
    suffixes: dict[tuple, dict[tuple, str]] = {}
    for key, variants in seen.items():
        if len(variants) > 1:
            several_hashes = len({h for h, _ in variants}) > 1
            several_numerics = len({n for _, n in variants}) > 1
            suffixes[key] = {(h, n): " ".join([*([f"@{h[:8]}"] if several_hashes else []),
                                               *([n] if several_numerics else [])]) for h, n in variants}
    return suffixes


def _split_labels(rows: Sequence[dict[str, Any]], hashes: bool) -> tuple[list[dict[str, Any]], Any]:
    """``rows`` with the labels of a variant's several rows per setting told apart (``_suffixes``), and a
    function giving any row or cell record its label in the table."""
    suffixes = _suffixes(rows, hashes)

    def label(r: dict[str, Any], numerics: str | None = None) -> str:
        variants = suffixes.get((r["label"], r["dataset"], r["way"], r["shot"]))
        if not variants:
            return r["label"]
        key = (str(r.get("settings_hash", "")) if hashes else "", _numerics(r) if numerics is None else numerics)
        return f"{r['label']} {variants[key]}" if key in variants else r["label"]

    return [{**r, "label": label(r)} if suffixes else r for r in rows], label


def _cell_column(cell: dict[str, Any], columns: list[tuple]) -> tuple:
    """The column of a cell record among ``columns`` (built from rows that pool seeds: a cell's sha is one of its
    row's; its episodes are per seed)."""
    own = protocol_of(cell)
    for column in columns:
        if column[:6] == own[:6] and (column[6] is None or own[6] is None or own[6] in str(column[6]).split(";")):
            return column
    return own


def table_from_cells(cells: Sequence[dict[str, Any]], rows: Sequence[dict[str, Any]], test: str = "t",
                     correction: str = "holm") -> AccuracyTable:
    """A table whose ties come from paired tests on the per-episode accuracies of ``cells``. A variant whose
    seeds ran on several kinds of device or in several precisions gets one line for each."""
    from fewshot_bench.results.numerics import record_numerics

    # A run's summary rows do not carry the episodes' sha; its cells do (the caption says what was checked).
    shas: dict[tuple, list[str]] = {}
    for cell in cells:
        key = (cell["label"], cell["dataset"], cell["way"], cell["shot"], cell.get("query"))
        if cell.get("test_episodes_sha"):
            shas.setdefault(key, []).append(cell["test_episodes_sha"])
    rows = [r if r.get("test_episodes_sha") else
            {**r, "test_episodes_sha": ";".join(dict.fromkeys(shas.get((r["label"], r["dataset"], r["way"], r["shot"],
                                                                         r.get("query")), []))) or None}
            for r in rows]
    rows, label_of = _split_labels(rows, hashes=False)
    labels, columns, headers, by_key = _layout(rows)
    table = AccuracyTable(labels, columns, headers, by_key,
                          caption=_caption(rows, f"not significantly different from the best (paired "
                                                 f"{'t-test' if test == 't' else 'Wilcoxon test'} on the same "
                                                 f"episodes, {correction}-corrected, α = {ALPHA})"))
    table.caption += group_leak_warning(cells)
    per_episode: dict[tuple[str, tuple], dict[int, list[float]]] = {}
    episode_sets: dict[tuple[str, tuple], dict[int, str | None]] = {}
    for cell in cells:
        key = (label_of(cell, _numerics(record_numerics(cell))), _cell_column(cell, columns))
        per_episode.setdefault(key, {})[cell["seed"]] = cell["accuracies"]
        episode_sets.setdefault(key, {})[cell["seed"]] = cell.get("test_episodes_sha")
    for column in columns:
        present = _best(table, column)
        if not present:
            continue
        best = table.best[column]
        others, pvalues = [], []
        for label in present:
            if label == best:
                continue
            a, b = per_episode.get((best, column), {}), per_episode.get((label, column), {})
            if sorted(a) != sorted(b) or not same_episodes(episode_sets[(best, column)], episode_sets[(label, column)]):
                continue  # different seeds or different test episodes: nothing to pair
            va = np.concatenate([a[s] for s in sorted(a)])
            vb = np.concatenate([b[s] for s in sorted(b)])
            if len(va) != len(vb) or len(va) < 2:
                continue
            others.append(label)
            pvalues.append(paired_test(va, vb, test).p_value)
        for label, p in zip(others, adjust_pvalues(pvalues, correction)):
            if p >= ALPHA:
                table.tied.add((label, column))
    return table


def group_leak_warning(cells: Sequence[dict[str, Any]]) -> str:
    """A caption sentence when test episodes put one group (subject) or sub-group (sequence) in a query and its
    episode's support (``episodic.groups``; cells record it as ``group_leak``): empty when none did, or when the
    dataset declares no groups. Counted once per test-episode set (cells of one set share it)."""
    sets: dict[str, dict[str, Any]] = {}
    for cell in cells:
        leak = cell.get("group_leak")
        if leak:
            sets.setdefault(cell.get("test_episodes_sha") or cell["cell"], leak)
    parts = []
    fixes = []
    for level, what, fix in (("subgroup", "share a sequence (sub-group) with", "--group-separation subgroup"),
                             ("group", "share a subject (group) with", "--group-separation group"),
                             ("near_duplicate", "are near-duplicates (16×16 thumbnails within RMS {threshold:g}) of",
                              "--near-dedup true")):
        counts = [leak[level] for leak in sets.values() if leak.get(level)]
        queries = sum(c["queries"] for c in counts)
        if queries:
            total = sum(c["query_total"] for c in counts)
            verb = what.format(threshold=counts[0].get("threshold", 10.0))
            parts.append(f"{queries} of {total} test queries ({100 * queries / total:.1f} %) {verb} a support image "
                         "of their episode")
            fixes.append(fix)
    if not parts:
        return ""
    return (" Warning: " + "; ".join(parts) + ": such a query can be recognised by who or which recording it is, "
            f"not by its class; {' or '.join(fixes)} removes it.")


def table_from_rows(rows: Sequence[dict[str, Any]]) -> AccuracyTable:
    """A table from aggregated rows only (e.g. the leaderboard): ties are overlapping 95% CIs. A variant with
    rows under several settings (another training budget, say) gets one line per setting, its label
    suffixed with the settings hash; likewise, suffixed with the device kind and precision, for rows that
    ran on several kinds of device or in several precisions."""
    rows, _ = _split_labels(rows, hashes=True)
    labels, columns, headers, by_key = _layout(rows)
    table = AccuracyTable(labels, columns, headers, by_key,
                          caption=_caption(rows, "95% CI overlaps the best entry's (no per-episode data)"))
    for column in columns:
        present = _best(table, column)
        if not present:
            continue
        best = table.best[column]
        top = by_key[(best, column)]
        for label in present:
            row = by_key[(label, column)]
            if label != best and row["mean"] + row["ci95"] >= top["mean"] - top["ci95"]:
                table.tied.add((label, column))
    return table


def accuracy_report(table: AccuracyTable, context: Sequence[dict[str, Any]] = ()) -> Report:
    """The table as a report: one row per variant, one column per setting; each entry holds the mean, both
    intervals, the seeds and episodes, and whether it is the column's best or tied with it. ``context`` rows
    (``reporting.context.context_rows``) follow the methods in a block of their own, unmarked."""
    columns = [Column("method"), *(Column(header, "right") for header in table.headers), Column("params", "right")]
    rows = []
    for label in table.labels:
        row: list[Any] = [label]
        params = next((table.cells[(label, c)].get("params") for c in table.columns if (label, c) in table.cells), None)
        for column in table.columns:
            cell = table.cells.get((label, column))
            if cell is None:
                row.append(None)
                continue
            text = f"{cell['mean']:.2f} ± {cell['ci95']:.2f}"
            seed_ci = cell.get("seed_ci95", float("nan"))
            if cell.get("seeds", 1) > 1 and np.isfinite(seed_ci):
                text += f" (± {seed_ci:.2f})"
            mark = BEST if table.best.get(column) == label else TIED if (label, column) in table.tied else ""
            data = {key: cell.get(key) for key in ("mean", "ci95", "seed_ci95", "seeds", "episodes")}
            row.append(Value(data, text, mark))
        # The model's size beside its accuracy: a comparison of methods is also one of capacities.
        row.append(Value(params, f"{params:,}") if isinstance(params, int) else None)
        rows.append(row)
    extra: dict[str, Any] = {}
    context_labels = list(dict.fromkeys(r["label"] for r in context))
    if context_labels:
        extra["context_rows"] = {len(rows) + i: next(r["context"] for r in context if r["label"] == label)
                                 for i, label in enumerate(context_labels)}
    for label in context_labels:
        entries = {_context_column(r, table.columns): r for r in context if r["label"] == label}
        row = [label]
        for column in table.columns:
            entry = entries.get(column)
            if entry is None:
                row.append(None)
                continue
            text = f"{entry['mean']:.2f} ± {entry['ci95']:.2f}"
            data = {key: entry.get(key) for key in ("mean", "ci95", "seed_ci95", "seeds", "episodes")}
            if entry.get("balanced_accuracy") is not None:
                text += f" (balanced {entry['balanced_accuracy']:.1f})"
                data["balanced_accuracy"] = entry["balanced_accuracy"]
            row.append(Value(data, text))
        params = next((r.get("params") for r in context if r["label"] == label), None)
        row.append(Value(params, f"{params:,}") if isinstance(params, int) else None)
        rows.append(row)
    from fewshot_bench.reporting.context import context_caption

    # Every row's dataset and split, for formats without a caption (CSV writes them as leading columns).
    extra["identity"] = {"dataset": "; ".join(dict.fromkeys(c[0] for c in table.columns)),
                         "split": "; ".join(dict.fromkeys(c[3] for c in table.columns if c[3]))}
    return Report("", columns, rows, caption=table.caption + context_caption(context), kind="accuracy-table",
                  extra=extra)


def _context_column(row: dict[str, Any], columns: list[tuple]) -> tuple | None:
    """The column of a context row: the first of its dataset, way, shot and queries (context rows carry no
    ranking, so the episodes' sha does not decide where they are shown)."""
    return next((c for c in columns if (c[0], c[1], c[2], c[4]) == (row["dataset"], row["way"], row["shot"],
                                                                     row.get("query"))), None)


def run_accuracy_report(cells: Sequence[dict[str, Any]], rows: Sequence[dict[str, Any]], folder: Path,
                        test: str = "t", correction: str = "holm") -> Report:
    """A run's accuracy table as ``bench table RUN`` shows it (and the site's run pages): ties from paired tests
    on its cells, its context rows (``fewshot_bench.context``) below the methods."""
    from fewshot_bench.reporting.context import context_rows
    from fewshot_bench.results.store import RunStore

    context = context_rows(cells, RunStore(folder).load_context())
    return accuracy_report(table_from_cells(cells, rows, test=test, correction=correction), context)
