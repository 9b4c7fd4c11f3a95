"""Console rendering of results: the method × shot accuracy table shown at the end of a run."""

from __future__ import annotations

from typing import Any, Sequence

from rich.console import Console
from rich.table import Table

from fewshot_bench.stats import CI_FORMULA


def format_cell(mean: float, ci95: float) -> str:
    return f"{mean:.2f} ± {ci95:.2f}"


def table_caption(rows: Sequence[dict[str, Any]]) -> str:
    """What a reader needs to interpret the table: ways, queries, episodes, seeds and the CI formula."""
    first = rows[0] if rows else {}
    episodes = sorted({row["episodes"] // max(1, row["seeds"]) for row in rows})
    seeds = sorted({row["seeds"] for row in rows})
    return (f"{first.get('way', '?')}-way, {first.get('query', '?')} queries per class, "
            f"{'/'.join(map(str, episodes))} test episodes × {'/'.join(map(str, seeds))} seed(s), identical "
            f"for every method. Accuracy in %; {CI_FORMULA}.")


def accuracy_table(rows: Sequence[dict[str, Any]], title: str | None = None) -> Table:
    """Rows = method variants (in run order), columns = shots; cells = mean ± 95% CI in percent."""
    shots = sorted({row["shot"] for row in rows})
    labels = list(dict.fromkeys(row["label"] for row in rows))
    by_key = {(row["label"], row["shot"]): row for row in rows}
    table = Table(title=title, title_justify="left")
    table.add_column("method", style="bold")
    for shot in shots:
        table.add_column(f"{shot}-shot", justify="right")
    best = {shot: max((r["mean"] for r in rows if r["shot"] == shot), default=None) for shot in shots}
    for label in labels:
        cells = []
        for shot in shots:
            row = by_key.get((label, shot))
            if row is None:
                cells.append("—")
                continue
            text = format_cell(row["mean"], row["ci95"])
            if row["seeds"] > 1:
                text += f" (seeds ±{row['seed_std']:.2f})"
            cells.append(f"[bold green]{text}[/]" if row["mean"] == best[shot] and len(labels) > 1 else text)
        table.add_row(label, *cells)
    return table


def print_table(rows: Sequence[dict[str, Any]], console: Console, title: str | None = None) -> None:
    console.print(accuracy_table(rows, title))
    console.print(table_caption(rows), soft_wrap=True)
