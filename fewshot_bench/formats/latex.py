"""LaTeX: a booktabs table environment (best in bold, ties with a dagger) with the caption."""

from __future__ import annotations

from fewshot_bench.registry import register_format
from fewshot_bench.report import BEST, EMPTY, TIED, Report, ReportFormat


def latex_escape(text: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("&", r"\&"), ("%", r"\%"), ("#", r"\#"),
                 ("[", "{[}"), ("]", "{]}")):
        text = text.replace(a, b)
    # A flag (--group-separation) stays two hyphens: LaTeX would set "--" as an en dash.
    return text.replace("--", "-{}-")


def _math(text: str) -> str:
    """Escaped text with the symbols our captions and entries use in math mode."""
    return (latex_escape(text).replace("±", r"$\pm$").replace("·", r"$\cdot$").replace("√n", r"$\sqrt{n}$")
            .replace("×", r"$\times$").replace("α", r"$\alpha$").replace("†", r"$^\dagger$")
            .replace("Δ", r"$\Delta$").replace("−", "-").replace("—", "---"))


@register_format("latex")
class LatexFormat(ReportFormat):
    """A LaTeX table (booktabs), ready for \\input in a paper."""

    def render(self, report: Report) -> str:
        spec = "".join("r" if c.align == "right" else "l" for c in report.columns)
        headers = [_math(c.name[:1].upper() + c.name[1:]) for c in report.columns]
        lines = [r"\begin{table}[t]", r"\centering", rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
                 " & ".join(headers) + r" \\", r"\midrule"]
        for row in report.rows:
            texts = []
            for value in report.values(row):
                text = EMPTY if value is None else _math(value.text)
                if value is not None and value.mark == BEST:
                    text = rf"\textbf{{{text}}}"
                elif value is not None and value.mark == TIED:
                    text += r"$^\dagger$"
                texts.append(text)
            lines.append(" & ".join(texts) + r" \\")
        lines += [r"\bottomrule", r"\end{tabular}"]
        caption = " ".join(part for part in (report.title and report.title + ".", report.caption) if part)
        if caption:
            lines.append(rf"\caption{{{_math(caption)}}}")
        lines.append(r"\end{table}")
        return "\n".join(lines) + "\n"
