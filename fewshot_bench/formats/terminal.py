"""The console format: a rich table with colours and marks, the caption below it."""

from __future__ import annotations

import io

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from fewshot_bench.registry import register_format
from fewshot_bench.report import BEST, EMPTY, TIED, Report, ReportFormat


@register_format("console")
class ConsoleFormat(ReportFormat):
    """A table for the terminal: best in bold green, ties marked †, states in colour."""

    def table(self, report: Report) -> Table:
        table = Table(title=escape(report.title) if report.title else None, title_justify="left")
        for index, column in enumerate(report.columns):
            table.add_column(escape(column.name), justify=column.align, style="bold" if index == 0 else None)
        context = report.extra.get("context_rows") or {}
        for index, row in enumerate(report.rows):
            texts = []
            for value in report.values(row):
                if value is None:
                    texts.append(EMPTY)
                    continue
                # Labels contain brackets (crn[dap=false]) that rich would read as markup.
                text = escape(value.text)
                if value.mark == BEST:
                    text = f"[bold green]{text}[/]"
                elif value.mark == TIED:
                    text += " †"
                if value.style:
                    text = f"[{value.style}]{text}[/]"
                texts.append(text)
            table.add_row(*texts, end_section=index + 1 == min(context, default=-1))
        return table

    def show(self, report: Report, console: Console) -> None:
        console.print(self.table(report))
        if report.caption:
            # The console decides: wrapped at words on a terminal, one unbroken line in a log or a pipe.
            console.print(escape(report.caption))

    def render(self, report: Report) -> str:
        buffer = io.StringIO()
        self.show(report, Console(file=buffer, width=1000, no_color=True, soft_wrap=True))
        return buffer.getvalue()
