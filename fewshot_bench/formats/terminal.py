"""The console format: a rich table with colours and marks, the caption below it."""

from __future__ import annotations

import io

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from fewshot_bench.registry import register_format
from fewshot_bench.report import BEST, BEST_NOTE, EMPTY, PLAIN_BEST_MARK, PLAIN_BEST_NOTE, TIED, Report, ReportFormat


@register_format("console")
class ConsoleFormat(ReportFormat):
    """A table for the terminal: best in bold green, ties marked †, states in colour. Printed where styles do not
    show (a pipe, a log file), the best entry is starred instead and the caption says so."""

    def table(self, report: Report, styled: bool = True) -> Table:
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
                    text = f"[bold green]{text}[/]" if styled else text + PLAIN_BEST_MARK
                elif value.mark == TIED:
                    text += " †"
                if value.style:
                    text = f"[{value.style}]{text}[/]"
                texts.append(text)
            table.add_row(*texts, end_section=index + 1 == min(context, default=-1))
        return table

    def show(self, report: Report, console: Console) -> None:
        styled = console.color_system is not None and not console.no_color
        console.print(self.table(report, styled))
        if report.caption:
            caption = report.caption if styled else report.caption.replace(BEST_NOTE, PLAIN_BEST_NOTE)
            # The console decides: wrapped at words on a terminal, one unbroken line in a log or a pipe.
            console.print(escape(caption))

    def render(self, report: Report) -> str:
        buffer = io.StringIO()
        self.show(report, Console(file=buffer, width=1000, no_color=True, soft_wrap=True))
        return buffer.getvalue()
