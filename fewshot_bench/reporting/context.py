"""A run's context rows as table rows: floor and ceiling rows from ``context/``, seen-class rows from each cell's
``seen`` block, their seeds pooled by the one aggregator (``results.frames.aggregate``)."""

from __future__ import annotations

from typing import Any, Sequence

from fewshot_bench.context import CONTEXT_KINDS, KIND_NOTES
from fewshot_bench.results.frames import aggregate, cells_frame
from fewshot_bench.results.store import SUMMARY_KEYS, seen_records, with_context_fields


def context_rows(cells: Sequence[dict[str, Any]], records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Aggregated context rows (floor, then seen, then ceiling; within a kind, first-seen order), each with its
    ``context`` kind and, for ceilings, the seeds' mean ``balanced_accuracy``."""
    everything = [*records, *seen_records(cells)]
    if not everything:
        return []
    rows = with_context_fields(aggregate(cells_frame(everything), SUMMARY_KEYS), everything)
    # Pixels first among the floors: the rawest reference leads.
    return sorted(rows, key=lambda row: (CONTEXT_KINDS.index(row["context"]), row["backbone"] != "pixels"))


def context_caption(rows: Sequence[dict[str, Any]]) -> str:
    """What the context rows under a table are, for its caption."""
    kinds = [kind for kind in CONTEXT_KINDS if any(row["context"] == kind for row in rows)]
    if not kinds:
        return ""
    return (" Context rows (below the methods; references, never ranked or marked): "
            + "; ".join(f"{kind} — {KIND_NOTES[kind]}" for kind in kinds) + ".")
