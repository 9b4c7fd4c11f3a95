"""What every command prints, independent of the output format: a titled table of values with a caption.

Commands build a :class:`Report` (an accuracy table, a comparison, a run's status, the registry); a
:class:`ReportFormat` renders it. The formats are plugins (``fewshot_bench/formats/``, a plugin file, or the
``fewshot_bench.formats`` entry point), so a new one (HTML, say) is one file and every command gets it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from rich.console import Console

from fewshot_bench.errors import ConfigError

# Marks a value can carry; machine formats keep them as data, human formats show them.
BEST, TIED = "best", "tied"
# How the caption names the best-in-column mark: bold where the format can show it, a star where it cannot
# (a console printed to a pipe or a log file has no bold).
BEST_NOTE, PLAIN_BEST_NOTE, PLAIN_BEST_MARK = "Bold: best in column", "*: best in column", " *"


@dataclass(frozen=True)
class Value:
    """One table entry: ``data`` for machine formats (a number, text, or a mapping of named numbers, which
    CSV spreads over one column each), ``text`` for people, a ``mark`` that is part of the result (best in
    its column, tied with the best) and a cosmetic ``style`` (a rich colour for the console)."""

    data: Any
    text: str
    mark: str = ""
    style: str = ""


@dataclass(frozen=True)
class Column:
    """A column of a report: its header and how human formats align it."""

    name: str
    align: str = "left"


@dataclass
class Report:
    """A titled table with a caption. ``rows`` hold :class:`Value` entries, or plain numbers and text
    (shown as they are); ``None`` is an empty entry ("—")."""

    title: str
    columns: list[Column]
    rows: list[list[Any]]
    caption: str = ""
    kind: str = "table"  # what the report is, named in JSON output (accuracy-table, comparison, status, ...)
    extra: dict[str, Any] = field(default_factory=dict)  # more structured data for machine formats

    def values(self, row: list[Any]) -> list[Value | None]:
        """The row's entries as Values (None stays None, for an entry with no result)."""
        return [entry if isinstance(entry, Value) or entry is None else Value(entry, _text(entry)) for entry in row]


def _text(entry: Any) -> str:
    return f"{entry:.4g}" if isinstance(entry, float) else str(entry)


EMPTY = "—"


class ReportFormat:
    """An output format of every command's report (``--format NAME``).

    Subclass it, set ``name`` and a docstring (its first line is what ``bench list formats`` shows), and
    implement ``render``; register it with ``@register_format("name")``. ``show`` writes to a terminal
    console; by default it prints ``render``'s text as it is.
    """

    name: ClassVar[str] = ""

    def render(self, report: Report) -> str:
        raise NotImplementedError

    def show(self, report: Report, console: Console) -> None:
        console.out(self.render(report), end="", highlight=False)


def report_format(name: str) -> ReportFormat:
    """The registered format ``name``, ready to use; unknown names are a one-line error listing the others."""
    from fewshot_bench.registry import FORMATS

    if name not in FORMATS:
        raise ConfigError(f"unknown output format '{name}'; available: {', '.join(FORMATS.names())}")
    return FORMATS.get(name)()


def render(report: Report, name: str) -> str:
    """``report`` as text in format ``name`` (e.g. ``render(accuracy_report(table), "markdown")``)."""
    return report_format(name).render(report)


def format_names() -> list[str]:
    from fewshot_bench.registry import FORMATS

    return FORMATS.names()
