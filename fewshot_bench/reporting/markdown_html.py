"""The Markdown the harness writes (the reproduction card), as HTML for the results site.

Only the subset ``reporting.reproduction`` and ``formats.markdown`` produce: headings, paragraphs, pipe tables,
bullet lists whose items continue on indented lines (and may hold an indented fenced block), fenced code blocks,
and inline code, bold and links. Everything is escaped first, so the text of a record can never become markup.
"""

from __future__ import annotations

import re
from typing import Callable

from markupsafe import Markup, escape

# A code span's text -> the site page it names (a record folder, say), or None: code spans that name a page link it.
Linker = Callable[[str], "str | None"]

_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")
_NUMBER = re.compile(r"^[+\-−]?\d+(?:\.\d+)?")


def inline(text: str, link: Linker | None = None) -> Markup:
    """One line's inline Markdown (code spans, bold, links) as escaped HTML."""
    parts = []
    for i, piece in enumerate(_CODE.split(text)):
        if i % 2:  # inside backticks: literal text, linked when it names a page of the site
            target = link(piece) if link else None
            code = Markup("<code>{}</code>").format(piece)
            parts.append(Markup('<a href="{}">{}</a>').format(target, code) if target else code)
            continue
        html = str(escape(piece))
        html = _BOLD.sub(r"<strong>\1</strong>", html)
        html = _LINK.sub(r'<a href="\2">\1</a>', html)
        parts.append(Markup(html))
    return Markup("").join(parts)


def _cells(line: str) -> list[str]:
    """The cells of a pipe-table line (``\\|`` is a literal bar)."""
    inner = line.strip()
    inner = inner[1:] if inner.startswith("|") else inner
    inner = inner[:-1] if inner.endswith("|") and not inner.endswith("\\|") else inner
    return [cell.strip().replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", inner)]


def _sort_value(text: str) -> str:
    """What a table cell sorts by in the site's sorter: its leading number where it starts with one."""
    match = _NUMBER.match(text.replace("**", "").strip())
    return match.group(0).replace("−", "-") if match else ""


def _table(lines: list[str], link: Linker | None) -> Markup:
    header, rows = _cells(lines[0]), [_cells(line) for line in lines[2:]]
    # A column sorts as numbers when most of its filled entries start with one ("not run" and the like sort last).
    filled = [[row[i] for row in rows if i < len(row) and row[i] not in ("", "—")] for i in range(len(header))]
    numeric = [bool(column) and 2 * sum(bool(_sort_value(c)) for c in column) >= len(column) for column in filled]
    html = [Markup('<div class="scroll"><table class="sortable compact"><thead><tr>')]
    html += [Markup('<th data-type="{}">{}</th>').format("num" if numeric[i] else "text", inline(name, link))
             for i, name in enumerate(header)]
    html.append(Markup("</tr></thead><tbody>"))
    for row in rows:
        html.append(Markup("<tr>"))
        for i, cell in enumerate(row):
            value = _sort_value(cell) if i < len(numeric) and numeric[i] else cell
            html.append(Markup('<td data-value="{}"{}>{}</td>').format(
                value, Markup(' class="num"') if i < len(numeric) and numeric[i] else "", inline(cell, link)))
        html.append(Markup("</tr>"))
    html.append(Markup("</tbody></table></div>"))
    return Markup("").join(html)


def _fence(lines: list[str], start: int) -> tuple[Markup, int]:
    """The fenced block opening at ``lines[start]`` (indented or not) and the index after its closing fence."""
    indent = len(lines[start]) - len(lines[start].lstrip())
    language = lines[start].strip()[3:].strip()
    end = start + 1
    while end < len(lines) and lines[end].strip() != "```":
        end += 1
    body = "\n".join(line[indent:] if line[:indent].strip() == "" else line for line in lines[start + 1:end])
    css = Markup(' class="language-{}"').format(language) if language else ""
    return Markup("<pre><code{}>{}</code></pre>").format(css, body), end + 1


def markdown_to_html(text: str, link: Linker | None = None) -> Markup:
    """``text`` (the harness's Markdown subset) as HTML; ``link`` turns code spans naming a page into links."""
    lines = text.splitlines()
    out: list[Markup] = []
    paragraph: list[str] = []
    items: list[list[Markup]] = []  # the open bullet list: each item's parts

    def flush_paragraph() -> None:
        if paragraph:
            target = items[-1] if items else out
            tag = "<p>{}</p>" if not items else "<span>{}</span>"
            target.append(Markup(tag).format(inline(" ".join(paragraph), link)))
            paragraph.clear()

    def close_list() -> None:
        flush_paragraph()
        if items:
            out.append(Markup("<ul>") + Markup("").join(Markup("<li>") + Markup(" ").join(item) + Markup("</li>")
                                                         for item in items) + Markup("</ul>"))
            items.clear()

    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        indented = line.startswith("  ") and bool(stripped)
        if not stripped:
            flush_paragraph()
            # A blank line ends the list unless an indented line (the item's own block) follows.
            following = next((l for l in lines[i + 1:] if l.strip()), "")
            if not following.startswith("  "):
                close_list()
            i += 1
        elif stripped.startswith("```"):
            flush_paragraph()
            block, i = _fence(lines, i)
            if items and indented:
                items[-1].append(block)
            else:
                close_list()
                out.append(block)
        elif stripped.startswith("|") and not indented:
            close_list()
            end = i
            while end < len(lines) and lines[end].strip().startswith("|"):
                end += 1
            out.append(_table(lines[i:end], link) if end - i >= 2 else Markup("<p>{}</p>").format(inline(line, link)))
            i = end
        elif re.match(r"#{1,6} ", stripped) and not indented:
            close_list()
            level = len(stripped) - len(stripped.lstrip("#"))
            out.append(Markup("<h{0}>{1}</h{0}>").format(level, inline(stripped[level:].strip(), link)))
            i += 1
        elif line.startswith("- "):
            flush_paragraph()
            items.append([])
            paragraph.append(line[2:].strip())
            i += 1
        else:
            if indented and items:  # an item's continuation line
                paragraph.append(stripped)
            else:
                if items:
                    close_list()
                paragraph.append(stripped)
            i += 1
    close_list()
    return Markup("\n").join(out)
