"""Markdown: a pipe table (best in bold, ties marked †) and the caption as a paragraph."""

from __future__ import annotations

from fewshot_bench.registry import register_format
from fewshot_bench.report import BEST, EMPTY, TIED, Report, ReportFormat


@register_format("markdown")
class MarkdownFormat(ReportFormat):
    """A Markdown table, as pasted into a README or a paper's supplement."""

    def render(self, report: Report) -> str:
        lines = [f"**{report.title}**", ""] if report.title else []
        lines += ["| " + " | ".join(c.name for c in report.columns) + " |",
                  "|" + "".join("---:|" if c.align == "right" else "---|" for c in report.columns)]
        for row in report.rows:
            texts = []
            for value in report.values(row):
                text = EMPTY if value is None else value.text.replace("|", "\\|")
                if value is not None and value.mark == BEST:
                    text = f"**{text}**"
                elif value is not None and value.mark == TIED:
                    text += " †"
                texts.append(text)
            lines.append("| " + " | ".join(texts) + " |")
        text = "\n".join(lines) + "\n"
        return text + (f"\n{report.caption}\n" if report.caption else "")
