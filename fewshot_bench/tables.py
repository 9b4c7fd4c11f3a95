"""Paper-ready accuracy tables: methods × settings, ``mean ± ci95``, best in bold, ties marked.

From a run, "tied with the best" is decided by paired tests on the identical test episodes (paired t-test
or Wilcoxon, Holm-corrected within each column, α = 0.05). From a leaderboard CSV, which has no
per-episode data, two entries are tied when their 95% CIs overlap (stated in the caption).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

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


def _layout(rows: Sequence[dict[str, Any]]) -> tuple[list[str], list[tuple], list[str], dict]:
    labels = list(dict.fromkeys(r["label"] for r in rows))
    columns = sorted({(r["dataset"], r["way"], r["shot"]) for r in rows}, key=lambda c: (c[0], c[1], c[2]))
    single = len({(c[0], c[1]) for c in columns}) == 1
    headers = [f"{shot}-shot" if single else f"{dataset} {way}-way {shot}-shot" for dataset, way, shot in columns]
    cells = {(r["label"], (r["dataset"], r["way"], r["shot"])): r for r in rows}
    return labels, columns, headers, cells


def _caption(rows: Sequence[dict[str, Any]], tie_rule: str) -> str:
    episodes = sorted({r["episodes"] // max(1, r["seeds"]) for r in rows})
    seeds = sorted({r["seeds"] for r in rows})
    queries = sorted({r["query"] for r in rows})
    ways = sorted({r["way"] for r in rows})
    seed_rule = f"; {SEED_CI_FORMULA}" if any(r["seeds"] > 1 for r in rows) else ""
    return (f"Accuracy (%) on {'/'.join(map(str, ways))}-way episodes with {'/'.join(map(str, queries))} queries per "
            f"class, {'/'.join(map(str, episodes))} test episodes × {'/'.join(map(str, seeds))} seed(s), identical for "
            f"every method; {CI_FORMULA}{seed_rule}. Bold: best in column; †: {tie_rule}.")


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


def table_from_cells(cells: Sequence[dict[str, Any]], rows: Sequence[dict[str, Any]], test: str = "t",
                     correction: str = "holm") -> AccuracyTable:
    """A table whose ties come from paired tests on the per-episode accuracies of ``cells``."""
    labels, columns, headers, by_key = _layout(rows)
    table = AccuracyTable(labels, columns, headers, by_key,
                          caption=_caption(rows, f"not significantly different from the best (paired "
                                                 f"{'t-test' if test == 't' else 'Wilcoxon test'} on the same "
                                                 f"episodes, {correction}-corrected, α = {ALPHA})"))
    per_episode: dict[tuple[str, tuple], dict[int, list[float]]] = {}
    episode_sets: dict[tuple[str, tuple], dict[int, str | None]] = {}
    for cell in cells:
        key = (cell["label"], (cell["dataset"], cell["way"], cell["shot"]))
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


def table_from_rows(rows: Sequence[dict[str, Any]]) -> AccuracyTable:
    """A table from aggregated rows only (e.g. the leaderboard): ties are overlapping 95% CIs. A variant with
    rows under several settings (another training budget, say) gets one line per setting, its label
    suffixed with the settings hash."""
    seen: dict[tuple, set] = {}
    for r in rows:
        seen.setdefault((r["label"], r["dataset"], r["way"], r["shot"]), set()).add(r.get("settings_hash", ""))
    rows = [{**r, "label": f"{r['label']} @{str(r.get('settings_hash', ''))[:8]}"}
            if len(seen[(r["label"], r["dataset"], r["way"], r["shot"])]) > 1 else r for r in rows]
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


def _cell_text(table: AccuracyTable, label: str, column: tuple, bold: tuple[str, str], dagger: str,
               pm: str) -> str:
    row = table.cells.get((label, column))
    if row is None:
        return "—"
    text = f"{row['mean']:.2f} {pm} {row['ci95']:.2f}"
    seed_ci = row.get("seed_ci95", float("nan"))
    if row.get("seeds", 1) > 1 and np.isfinite(seed_ci):
        text += f" ({pm} {seed_ci:.2f})"
    if table.best.get(column) == label:
        return f"{bold[0]}{text}{bold[1]}"
    if (label, column) in table.tied:
        return f"{text}{dagger}"
    return text


def render_markdown(table: AccuracyTable) -> str:
    lines = ["| method | " + " | ".join(table.headers) + " |", "|---|" + "---:|" * len(table.headers)]
    for label in table.labels:
        cells = [_cell_text(table, label, c, ("**", "**"), " †", "±") for c in table.columns]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + f"\n\n{table.caption}\n"


def _latex_escape(text: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("&", r"\&"), ("%", r"\%"), ("#", r"\#"),
                 ("[", "{[}"), ("]", "{]}")):
        text = text.replace(a, b)
    return text


def render_latex(table: AccuracyTable) -> str:
    caption = (_latex_escape(table.caption).replace("±", r"$\pm$").replace("·", r"$\cdot$")
               .replace("√n", r"$\sqrt{n}$").replace("×", r"$\times$").replace("α", r"$\alpha$")
               .replace("†", r"$^\dagger$"))
    lines = [r"\begin{table}[t]", r"\centering", r"\begin{tabular}{l" + "r" * len(table.headers) + "}",
             r"\toprule", "Method & " + " & ".join(_latex_escape(h) for h in table.headers) + r" \\", r"\midrule"]
    for label in table.labels:
        cells = [_cell_text(table, label, c, (r"\textbf{", "}"), r"$^\dagger$", r"$\pm$") for c in table.columns]
        lines.append(_latex_escape(label) + " & " + " & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", rf"\caption{{{caption}}}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def render_csv(table: AccuracyTable) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["method", *table.headers])
    for label in table.labels:
        writer.writerow([label, *(_cell_text(table, label, c, ("", ""), " †", "±") for c in table.columns)])
    return out.getvalue()


def render_console(table: AccuracyTable, console) -> None:
    from rich.markup import escape
    from rich.table import Table

    rich_table = Table(title_justify="left")
    rich_table.add_column("method", style="bold")
    for header in table.headers:
        rich_table.add_column(header, justify="right")
    for label in table.labels:
        # Variant labels contain brackets (crn[dap=false]) that rich would read as markup.
        rich_table.add_row(escape(label), *(_cell_text(table, label, c, ("[bold green]", "[/]"), " †", "±")
                                            for c in table.columns))
    console.print(rich_table)
    console.print(table.caption, soft_wrap=True)
