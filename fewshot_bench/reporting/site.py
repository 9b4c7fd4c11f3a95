"""``bench site``: a static, offline HTML site of results, from run folders, committed records and the card.

``index.html`` is the leaderboard of every run and record (the one aggregator, ``leaderboard_rows``) with both
intervals, sortable columns and filters; ``runs/<run>.html`` is one page per run folder or record (its accuracy
table as ``bench table`` gives it, its figures, config, provenance and context rows); ``card/<section>.html`` one
page per section of the reproduction card. Pages are Jinja2 templates (autoescaped) shipped with the package;
the site loads nothing from the network (its CSS and script are files beside the pages, figures are copied in),
so it opens from ``file://`` and can be archived with the records.
"""

from __future__ import annotations

import math
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

from fewshot_bench.errors import ConfigError
from fewshot_bench.report import Report
from fewshot_bench.results.leaderboard import leaderboard_rows, load_cells, load_context, row_cells, run_folders
from fewshot_bench.reporting.reproduction import StateOfCells

# Written into every site: a folder holding it may be replaced by the next build, any other folder is refused.
MARKER = ".bench-site"
ASSETS = ("site.css", "site.js")


@dataclass
class RunPage:
    """One run folder or committed record and its page."""

    folder: Path
    kind: str                     # "run" (a run folder) or "record" (a committed copy, results/records)
    slug: str
    cells: list[dict[str, Any]]
    figures: list[dict[str, str]] = field(default_factory=list)

    @property
    def href(self) -> str:
        return f"runs/{self.slug}.html"

    @property
    def name(self) -> str:
        return self.folder.name


@dataclass
class Site:
    """What a build wrote, for the command to report."""

    out: Path
    pages: list[Path]
    figures: list[Path]
    runs: int
    card_sections: int


def _slug(text: str, taken: set[str]) -> str:
    """A file-name-safe, unique name for ``text``."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "page"
    slug, n = base, 2
    while slug in taken:
        slug, n = f"{base}-{n}", n + 1
    taken.add(slug)
    return slug


def _environment() -> Any:
    import jinja2

    return jinja2.Environment(loader=jinja2.PackageLoader("fewshot_bench.reporting", "templates"), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def collect_pages(runs: Sequence[Path], records: Sequence[Path]) -> list[RunPage]:
    """A page for every run folder under ``runs`` and record under ``records`` that has finished cells."""
    pages: list[RunPage] = []
    seen: set[Path] = set()
    taken: set[str] = set()
    for kind, sources in (("run", runs), ("record", records)):
        for folder in run_folders(sources):
            if folder.resolve() in seen:
                continue
            seen.add(folder.resolve())
            cells = load_cells([folder])
            if cells:
                pages.append(RunPage(folder, kind, _slug(folder.name, taken), cells))
    return pages


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def board_entries(pages: Sequence[RunPage], states: StateOfCells | None = None) -> list[dict[str, Any]]:
    """The leaderboard rows of every page's cells and context rows, each with the pages of its runs and, given
    ``states``, whether its cells are what today's code computes (``code``, ``code_detail``; context rows, which no
    method variant computed, have none)."""
    cells = [cell for page in pages for cell in page.cells]
    rows = leaderboard_rows(cells, context=load_context([page.folder for page in pages], cells))
    by_name: dict[str, list[RunPage]] = {}
    for page in pages:
        by_name.setdefault(page.name, []).append(page)
    if states is not None:  # every variant's fingerprint at once (those without a committed one are probed)
        states.prepare([row["label"] for row in rows if not row.get("context")])
    entries = []
    for row in rows:
        code = None
        if states is not None and not row.get("context"):
            code = states.row_state(row_cells(cells, row))
        entries.append({**row, "mean": _number(row["mean"]), "ci95": _number(row["ci95"]),
                        "seed_ci95": _number(row["seed_ci95"]) if row.get("seeds", 1) > 1 else None,
                        "code": code.state if code else "", "code_detail": code.detail if code else "",
                        "pages": [p for run in str(row["run_ids"]).split(";") for p in by_name.get(run, [])]})
    return entries


def _report_view(report: Report) -> dict[str, Any]:
    """An accuracy report (``reporting.tables``) as the template shows it: entries' text, marks and sort values,
    context rows flagged with their kind."""
    context = report.extra.get("context_rows", {})
    rows = []
    for index, row in enumerate(report.rows):
        entries = []
        for value in report.values(row):
            if value is None:
                entries.append({"text": "—", "mark": "", "sort": ""})
                continue
            data = value.data.get("mean") if isinstance(value.data, dict) else value.data
            sort = data if isinstance(data, (int, float)) and not isinstance(data, bool) else value.text
            entries.append({"text": value.text, "mark": value.mark, "sort": sort})
        rows.append({"entries": entries, "context": context.get(index, "")})
    return {"columns": report.columns, "rows": rows, "caption": report.caption}


def _provenance(cells: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per variant: the code versions, settings hashes, commits, devices and numerics its cells were computed with."""
    from fewshot_bench.results.numerics import record_numerics

    groups: dict[tuple, dict[str, Any]] = {}
    for cell in cells:
        numerics = record_numerics(cell)
        commit = cell.get("git_commit") or cell.get("environment", {}).get("git_commit") or ""
        key = (cell["label"], cell.get("code_version") or cell.get("method_version") or "",
               cell.get("settings_hash") or "", commit[:12] + ("+dirty" if cell.get("git_dirty") else ""),
               cell.get("device") or "", numerics["device_kind"], numerics["precision"])
        group = groups.setdefault(key, {"fields": key, "cells": 0})
        group["cells"] += 1
    return list(groups.values())


def _figures(page: RunPage, into: Path) -> list[Path]:
    """The run's figures in ``into``: its own (``bench plot`` wrote them to ``figures/``), else drawn now."""
    from fewshot_bench.reporting.plots import plot_run
    from fewshot_bench.results.store import summary_rows

    own = sorted((page.folder / "figures").glob("*.png"))
    into.mkdir(parents=True, exist_ok=True)
    if own:
        written = []
        for png in own:
            for path in (png, png.with_suffix(".pdf")):
                if path.is_file():
                    written.append(Path(shutil.copy2(path, into / path.name)))
        return written
    return plot_run(page.cells, summary_rows(page.cells), into)


def _config_text(folder: Path) -> str:
    path = folder / "config.yaml"
    return path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""


def _card_sections(card: Path) -> tuple[str, str, list[tuple[str, str]]]:
    """The card's title, its text before the first section, and each ``## `` section (title, Markdown)."""
    text = card.read_text(encoding="utf-8")
    parts = re.split(r"^## ", text, flags=re.M)
    head = parts[0].splitlines()
    title = next((line[2:].strip() for line in head if line.startswith("# ")), card.stem)
    intro = "\n".join(line for line in head if not line.startswith("# "))
    return title, intro, [(part.splitlines()[0].strip(), "\n".join(part.splitlines()[1:])) for part in parts[1:]]


def _page_linker(pages: Sequence[RunPage], root: str) -> Any:
    """Code spans of the card naming a run folder or record of the site (``results/records/<name>``: a path of
    two or more parts that the folder's absolute path ends with, wherever the card was written from) link to its
    page."""
    ends = [(page.folder.resolve().parts, page) for page in pages]

    def link(text: str) -> str | None:
        parts = Path(text.strip()).parts
        if len(parts) < 2 or ".." in parts:
            return None
        page = next((page for absolute, page in ends if absolute[-len(parts):] == parts), None)
        return f"{root}{page.href}" if page else None

    return link


def _prepare_out(out: Path) -> Path:
    """A new staging folder beside ``out``; ``out`` itself must be new, empty, or a site an earlier build wrote."""
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MARKER).is_file())):
        raise ConfigError(f"'{out}' exists and is not a site written by `bench site`; choose a new or empty folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    staging.chmod(0o755)  # mkdtemp's folder is private; a site is for reading (and serving)
    return staging


def build_site(out: Path, runs: Sequence[Path], records: Sequence[Path], card: Path | None = None,
               states: StateOfCells | None = None) -> Site:
    """Write the site of every run under ``runs`` and record under ``records`` (and of ``card``, the Markdown
    reproduction card, when given) to ``out``, replacing an earlier build there as a whole. With ``states`` the
    leaderboard says of each row whether its cells are what today's code computes."""
    from fewshot_bench.reporting.markdown_html import markdown_to_html
    from fewshot_bench.reporting.tables import run_accuracy_report
    from fewshot_bench.results.store import summary_rows

    pages = collect_pages(runs, records)
    if not pages:
        looked = ", ".join(str(p) for p in [*runs, *records]) or "nowhere"
        raise ConfigError(f"no run folder or record with finished cells under {looked}; run `bench run` first or "
                          "name folders with --runs / --records")
    staging = _prepare_out(out)
    try:
        env = _environment()
        written: list[Path] = []
        figures: list[Path] = []
        sections = _card_sections(card) if card is not None else None
        navigation = {"card": sections is not None}

        def write(name: str, template: str, **context: Any) -> None:
            path = staging / name
            path.parent.mkdir(parents=True, exist_ok=True)
            root = "../" * name.count("/")
            path.write_text(env.get_template(template).render(root=root, nav=navigation, **context),
                            encoding="utf-8")
            written.append(out / name)

        for asset in ASSETS:
            (staging / asset).write_bytes(resources.files("fewshot_bench.reporting").joinpath(
                "templates", asset).read_bytes())
        (staging / MARKER).write_text("written by `bench site`; the next build replaces this folder\n")
        entries = board_entries(pages, states)
        for page in pages:
            drawn = _figures(page, staging / "runs" / page.slug)
            figures += [out / p.relative_to(staging) for p in drawn]
            pngs = [p for p in drawn if p.suffix == ".png"]
            page.figures = [{"src": f"{page.slug}/{p.name}", "pdf": f"{page.slug}/{p.stem}.pdf"
                             if p.with_suffix(".pdf").is_file() else "", "name": p.stem.replace("_", " ")}
                            for p in pngs]
            environment = page.cells[0].get("environment") or {}
            write(page.href, "run.html.j2", page=page, title=page.name,
                  table=_report_view(run_accuracy_report(page.cells, summary_rows(page.cells), page.folder)),
                  provenance=_provenance(page.cells), environment=environment, config=_config_text(page.folder),
                  cells=sorted(page.cells, key=lambda c: (c["label"], c["shot"], c["seed"])))
        card_pages = []
        if sections is not None:
            title, intro, parts = sections
            taken: set[str] = set()
            card_pages = [{"title": name, "href": f"card/{i:02d}-{_slug(name, taken)}.html", "text": body}
                          for i, (name, body) in enumerate(parts, 1)]
            for section in card_pages:
                write(section["href"], "section.html.j2", title=section["title"], card_title=title,
                      body=markdown_to_html(section["text"], _page_linker(pages, "../")), sections=card_pages)
            write("card.html", "card.html.j2", title=title, intro=markdown_to_html(intro, _page_linker(pages, "")),
                  sections=card_pages, source=card.as_posix())
        filters = {key: sorted({str(e[key]) for e in entries}, key=lambda v: (len(v), v) if key in ("way", "shot")
                               else (0, v)) for key in ("dataset", "way", "shot", "method")}
        write("index.html", "index.html.j2", title="Leaderboard", entries=entries, pages=pages, filters=filters)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)
    return Site(out, written, figures, len(pages), len(card_pages))
