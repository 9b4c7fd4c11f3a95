"""The reproduction card: our runs next to the published numbers, regenerated from run folders.

A card file (``configs/reproduce/card.yaml``) names, per dataset, the run configs that reproduce it (each
marked ``gpu`` or ``reduced`` budget) and the published values with their sources. ``bench card`` reads
the run folder of every config (its ``output_dir``/``run_id``), pairs each of our rows with the paper row
of the same method, way and shot, and writes a Markdown card. Every number in the card comes from a run
folder or from the card file; the verdicts (match within the CI, within one point, or a gap) are computed.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, Protocol

from fewshot_bench.config import LOGISTICS, SETTINGS, RunConfig, load_yaml, merge
from fewshot_bench.errors import ConfigError
from fewshot_bench.results.leaderboard import leaderboard_rows, load_cells, render_csv, row_cells
from fewshot_bench.stats import CI_FORMULA, SEED_CI_FORMULA

# "gpu": a budget sized for a GPU session (no paper's: each row states its episodes); "reduced": cut to fit a 2-core CPU;
# "checkpoint": no training here, a released file evaluated under this protocol (``weights=FILE``).
BUDGETS = ("gpu", "reduced", "checkpoint")


@dataclass(frozen=True)
class PaperResult:
    """One published accuracy: method, episode shape, mean (and CI when published), and where it is from.

    ``label`` is the method variant of ours that reproduces it (default: the method with default options,
    so that ablations such as ``crn[dap=false]`` are not compared with the full method's number).
    """

    method: str
    way: int
    shot: int
    mean: float
    ci95: float | None
    source: str
    budget: str = ""
    note: str = ""
    label: str = ""

    @property
    def variant(self) -> str:
        return self.label or self.method


@dataclass(frozen=True)
class CardRun:
    """One run config of a section and the budget it represents (``gpu`` or ``reduced``)."""

    config_path: Path
    budget: str
    records: Path | None = None

    def folder(self) -> Path:
        """Where the run's cells are read from: its committed records when the card names them, else the
        config's run folder."""
        return self.records if self.records is not None else run_folder(merge(self.config_path, {}), self.config_path)


@dataclass
class CardSection:
    """One dataset of the card: its runs, the published results and the human-written discussion."""

    name: str
    runs: list[CardRun]
    paper: list[PaperResult]
    protocol: str = ""
    discussion: str = ""


@dataclass
class Card:
    """A parsed card file."""

    path: Path
    title: str
    intro: str
    sections: list[CardSection] = field(default_factory=list)


def _require(mapping: dict, key: str, where: str, kind: type | tuple) -> Any:
    if key not in mapping:
        raise ConfigError(f"{where} lacks '{key}'")
    value = mapping[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ConfigError(f"{where}: '{key}' has the wrong type ({value!r})")
    return value


def load_card(path: str | Path) -> Card:
    """Parse and check a card file; relative config paths are resolved against the card's folder."""
    path = Path(path)
    data = load_yaml(path)
    where = f"card file '{path}'"
    card = Card(path, str(data.get("title", "Reproduction")), str(data.get("intro", "")))
    for number, raw in enumerate(_require(data, "sections", where, list), 1):
        here = f"{where}, section {number}"
        if not isinstance(raw, dict):
            raise ConfigError(f"{here} must be a mapping")
        runs = []
        for entry in _require(raw, "runs", here, list):
            if not isinstance(entry, dict):
                raise ConfigError(f"{here}: each run must be a mapping with 'config' and 'budget'")
            budget = _require(entry, "budget", here, str)
            if budget not in BUDGETS:
                raise ConfigError(f"{here}: budget must be one of {', '.join(BUDGETS)}, got '{budget}'")
            # Lexically normalised, so the card names `configs/fer2013-grid.yaml`, not `configs/reproduce/../…`
            config = Path(os.path.normpath(path.parent / _require(entry, "config", here, str)))
            if not config.is_file():
                raise ConfigError(f"{here}: config '{config}' does not exist")
            records = entry.get("records")
            if records is not None and not isinstance(records, str):
                raise ConfigError(f"{here}: 'records' must be a folder path (relative to the card file)")
            runs.append(CardRun(config, budget, Path(os.path.normpath(path.parent / records)) if records else None))
        paper = []
        for entry in raw.get("paper", []) or []:
            if not isinstance(entry, dict):
                raise ConfigError(f"{here}: each paper row must be a mapping")
            ci = entry.get("ci95")
            paper.append(PaperResult(
                method=_require(entry, "method", here, str), way=_require(entry, "way", here, int),
                shot=_require(entry, "shot", here, int), mean=float(_require(entry, "mean", here, (int, float))),
                ci95=None if ci is None else float(ci), source=_require(entry, "source", here, str),
                budget=str(entry.get("budget", "")), note=str(entry.get("note", "")), label=str(entry.get("label", ""))))
        card.sections.append(CardSection(_require(raw, "name", here, str), runs, paper,
                                         str(raw.get("protocol", "")).strip(), str(raw.get("discussion", "")).strip()))
    return card


class StateOfCells(Protocol):
    """Tells whether cell records are what today's code computes (``fewshot_bench.fingerprint.status``)."""

    def prepare(self, labels: Iterable[str]) -> None: ...

    def row_state(self, records: list[dict[str, Any]]) -> Any: ...


def card_cells(card: Card) -> list[dict[str, Any]]:
    """Every cell record of the runs the card names."""
    return [cell for folder in card_sources(card) for cell in load_cells([folder])]


def card_labels(card: Card) -> list[str]:
    """Every variant label of the records the card's runs name (what its rows' states depend on)."""
    return list(dict.fromkeys(cell["label"] for cell in card_cells(card)))


def card_sources(card: Card) -> list[Path]:
    """The run folders (or records) behind every section of ``card`` that exist."""
    return [run.folder() for section in card.sections for run in section.runs
            if (run.folder() / "config.yaml").is_file()]


def run_folder(config: RunConfig, config_path: Path) -> Path:
    """Where a config's run lives; reproduction configs must fix ``run_id`` so the card can find them."""
    if not config.run_id:
        raise ConfigError(f"reproduction config '{config_path}' must set run_id so its run folder can be found")
    return Path(config.output_dir) / config.run_id


def _flag_value(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def regeneration_command(config_path: Path, saved: RunConfig) -> str:
    """The ``bench run`` command that reproduces ``saved`` from the config file plus the flags that differ."""
    from_file = merge(config_path, {})
    parts = ["bench run", f"--config {config_path.as_posix()}"]
    for spec in fields(RunConfig):
        key = spec.name
        ours, theirs = getattr(saved, key), getattr(from_file, key)
        if SETTINGS[key].role == LOGISTICS or ours == theirs or ours is None:  # logistics never change a number
            continue
        if key in ("methods", "shots", "seeds") and sorted(map(str, ours)) == sorted(map(str, theirs)):
            continue  # the same cells in another order (a run grown by several invocations)
        if key == "dataset_options":
            parts.extend(f"--dataset-option {k}={_flag_value(v)}" for k, v in ours.items())
        elif key == "plugins":
            parts.extend(f"--plugin {p}" for p in ours)
        elif key == "methods":
            parts.append(f"--methods '{_flag_value(ours)}'")
        else:
            parts.append(f"--{key.replace('_', '-')} {_flag_value(ours)}")
    return " ".join(parts)


@dataclass
class CardRow:
    """One line of a section table: our result (if run) beside the paper's (if published)."""

    label: str
    method: str
    way: int
    shot: int
    paper: PaperResult | None
    ours: dict[str, Any] | None
    budget: str
    config_path: Path | None
    code_state: str = ""
    code_detail: str = ""

    @property
    def delta(self) -> float | None:
        if self.paper is None or self.ours is None:
            return None
        return self.ours["mean"] - self.paper.mean

    @property
    def tolerance(self) -> float | None:
        """Half-width of the CI of the difference (the paper's CI counts as 0 when it published none)."""
        if self.ours is None:
            return None
        paper_ci = self.paper.ci95 if self.paper and self.paper.ci95 is not None else 0.0
        return math.sqrt(self.ours["ci95"] ** 2 + paper_ci ** 2)

    @property
    def verdict(self) -> str:
        if self.ours is None:
            return "not run"
        if self.paper is None:
            return "no published value"
        delta, tolerance = self.delta, self.tolerance
        if abs(delta) <= tolerance:
            return "matches (within CI)"
        if abs(delta) <= 1.0:
            return "within 1 point (outside CI)"
        return f"{'below' if delta < 0 else 'above'} by {abs(delta):.1f} (outside CI)"


@dataclass
class SectionResult:
    """A section filled from the run folders."""

    section: CardSection
    rows: list[CardRow]
    commands: list[tuple[CardRun, str | None, Path]]
    leaderboard: dict[Path, list[dict[str, Any]]]
    environments: dict[Path, dict[str, Any]]


def fill_section(section: CardSection, states: StateOfCells) -> SectionResult:
    """Read every run of a section and pair its rows with the published ones; ``states`` says whether each row's
    cells are what today's code computes."""
    rows: list[CardRow] = []
    commands: list[tuple[CardRun, str | None, Path]] = []
    boards: dict[Path, list[dict[str, Any]]] = {}
    environments: dict[Path, dict[str, Any]] = {}
    matched: set[int] = set()
    for run in section.runs:
        folder = run.folder()
        if not (folder / "config.yaml").is_file():
            commands.append((run, None, folder))
            continue
        saved = merge(folder / "config.yaml", {})
        commands.append((run, regeneration_command(run.config_path, saved), folder))
        cells = load_cells([folder])
        if cells:
            environments[folder] = {**cells[0]["environment"], "threads": cells[0].get("threads")}
        board = leaderboard_rows(cells)
        boards[folder] = board
        for row in board:
            method = row["method"]
            paper_index = next((i for i, p in enumerate(section.paper)
                                if p.variant == row["label"] and p.way == row["way"] and p.shot == row["shot"]), None)
            if paper_index is not None:
                matched.add(paper_index)
            paper = section.paper[paper_index] if paper_index is not None else None
            state = states.row_state(row_cells(cells, row))
            rows.append(CardRow(row["label"], method, row["way"], row["shot"], paper, row, run.budget,
                                run.config_path, state.state, state.detail))
    for index, paper in enumerate(section.paper):
        if index not in matched:
            rows.append(CardRow(paper.variant, paper.method, paper.way, paper.shot, paper, None, "", None))
    # Per setting: budget, then the papers' method order (methods without a paper value last).
    method_rank = {p.method: i for i, p in reversed(list(enumerate(section.paper)))}
    rows.sort(key=lambda r: (r.way, r.shot, BUDGETS.index(r.budget) if r.budget else len(BUDGETS),
                             method_rank.get(r.method, len(section.paper)), r.label))
    return SectionResult(section, rows, commands, boards, environments)


def _fmt(mean: float | None, ci: float | None) -> str:
    if mean is None:
        return "—"
    return f"{mean:.2f}" if ci is None else f"{mean:.2f} ± {ci:.2f}"


def _ours_text(ours: dict[str, Any] | None) -> str:
    """Our mean ± episode CI, and (± seed CI) when the row has several seeds."""
    if ours is None:
        return "not run"
    text = _fmt(ours["mean"], ours["ci95"])
    seed_ci = ours.get("seed_ci95", float("nan"))
    if ours.get("seeds", 1) > 1 and math.isfinite(seed_ci):
        text += f" (± {seed_ci:.2f})"
    return text


def _device(row: CardRow, environments: dict[Path, dict[str, Any]]) -> str:
    if row.ours is None:
        return ""
    for folder, env in environments.items():
        if folder.name in row.ours["run_ids"].split(";"):
            name = env.get("device_name", row.ours["device"])
            threads = env.get("threads") or env.get("cpu_threads")
            return f"{name} ({threads} thread{'s' if threads != 1 else ''})" if name == "cpu" and threads else str(name)
    return str(row.ours["device"])


def _provenance(ours: dict[str, Any] | None) -> str:
    """The row's code version(s) and settings hash, which name exactly what computed it."""
    if ours is None:
        return ""
    return f"{ours.get('method_version') or '?'} / {ours.get('settings_hash') or '?'}"


def _budget_text(row: CardRow) -> str:
    if row.ours is None:
        return ""
    if row.budget == "checkpoint":
        return "none: a released checkpoint"
    pretrain = row.ours.get("pretrain_epochs") or 0
    stage = f"{pretrain} pre-training epochs + " if pretrain else ""
    return f"{stage}{row.ours['train_episodes']} episodes ({row.budget})"


def render_section(result: SectionResult) -> str:
    """Markdown for one dataset: protocol, table, verdict counts, gaps, commands and leaderboard rows."""
    section = result.section
    lines = [f"## {section.name}", ""]
    if section.protocol:
        lines += [section.protocol, ""]
    lines += ["| method | way | shot | paper | source | ours | Δ | verdict | test episodes × seeds | "
              "training | device | code | code version / settings hash |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in result.rows:
        paper = row.paper
        ours = row.ours
        delta = "" if row.delta is None else f"{row.delta:+.2f}"
        episodes = "" if ours is None else f"{ours['episodes'] // max(ours['seeds'], 1)} × {ours['seeds']}"
        lines.append(" | ".join([
            f"| {row.label}", str(row.way), str(row.shot),
            _fmt(paper.mean, paper.ci95) if paper else "—", paper.source if paper else "",
            _ours_text(ours), delta, row.verdict, episodes,
            _budget_text(row), _device(row, result.environments),
            f"**{row.code_state}**" if row.code_state in ("stale", "unverified") else row.code_state,
            _provenance(ours)]) + " |")
    compared = [r for r in result.rows if r.ours is not None and r.paper is not None]
    within_ci = [r for r in compared if r.verdict.startswith("matches")]
    within_point = [r for r in compared if r.verdict.startswith("within 1 point")]
    gaps = [r for r in compared if "outside CI" in r.verdict and not r.verdict.startswith("within")]
    lines += ["", f"Rows with a published value: {len(compared)}; within the CI: {len(within_ci)}; within one "
                  f"point but outside the CI: {len(within_point)}; more than one point away: {len(gaps)}."]
    if within_point or gaps:
        lines += ["", "Rows outside the CI:", ""]
        for row in within_point + gaps:
            paper = row.paper
            text = (f"- **{row.label}, {row.way}-way {row.shot}-shot**: ours {row.ours['mean']:.2f} vs "
                    f"{paper.mean:.2f} ({paper.source}), Δ {row.delta:+.2f} with a CI of the difference of "
                    f"±{row.tolerance:.2f}. " + ("Our training: none (the released checkpoint, evaluated here)"
                                                  if row.budget == "checkpoint" else
                                                  f"Our training: {row.ours['train_episodes']} episodes "
                                                  f"({row.budget} budget)"))
            text += f"; the paper's: {paper.budget}." if paper.budget else "."
            if paper.note:
                text += f" {paper.note}"
            lines.append(text)
    for state, what in (("stale", "behave differently under today's code than under the code that computed them "
                                   "(their variant's fingerprint changed), or ran on a GPU whose code path changed; "
                                   "rerun them with the commands below"),
                         ("unverified", "have no committed fingerprint of the code that computed them, so the card "
                                        "cannot tell whether today's code would give them")):
        flagged = [r for r in result.rows if r.code_state == state]
        if flagged:
            lines += ["", f"**{state.capitalize()} rows: {len(flagged)}** — {what}:", ""]
            lines += [f"- {r.label} {r.way}-way {r.shot}-shot: {r.code_detail}" for r in flagged]
    missing = [r for r in result.rows if r.ours is None]
    if missing:
        lines += ["", "Not run yet: " + ", ".join(f"{r.label} {r.way}-way {r.shot}-shot" for r in missing) + "."]
    if section.discussion:
        lines += ["", section.discussion]
    lines += ["", "Regenerate these rows:", ""]
    for run, command, folder in result.commands:
        kind = "records" if run.records is not None else "run folder"
        state = "" if command else " (not run yet)"
        command = command or f"bench run --config {run.config_path.as_posix()} --data-root <your copy>"
        lines += [f"- {run.budget} budget, {kind} `{folder.as_posix()}`{state}:", "", "  ```", f"  {command}"]
        if run.records is not None:
            run_id = merge(run.config_path, {}).run_id or "<run id>"
            lines.append(f"  bench publish {run_id} --out {folder.as_posix()}")
        lines.append("  ```")
    for folder, board in result.leaderboard.items():
        if board:
            lines += ["", f"Leaderboard rows of `{folder.as_posix()}`:", "", "```csv", render_csv(board).rstrip(),
                      "```"]
    return "\n".join(lines)


def render_card(card: Card, card_command: str, states: StateOfCells) -> str:
    """The whole card as Markdown; ``states`` decides each row's code column."""
    parts = [f"# {card.title}", "",
             f"Generated by `{card_command}` from the run records named below and the published values in "
             f"`{card.path.as_posix()}`; do not edit by hand. {CI_FORMULA}; {SEED_CI_FORMULA}. A row matches when |Δ| is within "
             f"the 95% CI of the difference (ours and the paper's combined; 0 for papers without a CI).", ""]
    if card.intro:
        parts += [card.intro.strip(), ""]
    parts += [render_section(fill_section(section, states)) + "\n" for section in card.sections]
    return "\n".join(parts)
