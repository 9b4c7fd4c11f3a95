"""The ``bench`` command line."""

from __future__ import annotations

import argparse
import re
import signal
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from fewshot_bench import __version__
from fewshot_bench.config import GRID, LOGISTICS, NUMERICS, RESULT, SETTINGS, SLURM_SETTINGS, RunConfig, merge
from fewshot_bench.console import make_console, setup_logging
from fewshot_bench.errors import BenchError, ConfigError, ExitCode, did_you_mean

# ``bench run --help`` in groups by what a setting does (``role`` of config.py), each flag with its default.
FLAG_GROUPS = {RESULT: "what is measured (these change the numbers)", GRID: "the grid (one cell per value)",
               NUMERICS: "numerics (device and kernels: the last bits of the numbers)",
               LOGISTICS: "where and how it runs (never the numbers)"}


def _metavar(spec: Any) -> str | None:
    if spec.types == (bool,):
        return "true|false"
    if list in spec.types:
        return "A,B"
    return {(int,): "N", (float,): "X"}.get(tuple(t for t in spec.types if t in (int, float)) or (), None)


def _with_default(spec: Any) -> str:
    default = spec.default
    if default is None:  # the help says what happens then (auto, none, the method's own)
        return spec.help
    shown = "none" if default == [] else ",".join(map(str, default)) if isinstance(default, list) else str(
        default).lower() if isinstance(default, bool) else default
    if spec.help.endswith(")"):  # one parenthesis, not two side by side
        return f"{spec.help[:-1]}; default: {shown})"
    return f"{spec.help} (default: {shown})"


def _add_run_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML file with any of the keys below (flags override it)")
    parser.add_argument("--plugin", action="append", default=[], metavar="FILE",
                        help="load a plugin file (method, dataset or backbone); repeatable")
    groups = {role: parser.add_argument_group(title) for role, title in FLAG_GROUPS.items()}
    for spec in SETTINGS.values():
        if spec.flag:
            groups[spec.role].add_argument(spec.flag_name, dest=spec.name, type=spec.flag_type, default=None,
                                           metavar=_metavar(spec), help=_with_default(spec))
    groups[RESULT].add_argument("--dataset-option", action="append", default=[], metavar="KEY=VALUE",
                                help="an option of the dataset plugin; repeatable")
    for key, (_, help_text) in SLURM_SETTINGS.items():
        groups[LOGISTICS].add_argument(f"--slurm-{key.replace('_', '-')}", dest=f"slurm_{key}", default=None,
                                       help=help_text)
    groups[LOGISTICS].add_argument("--wait", action="store_true",
                                   help="with --launcher slurm: wait, showing the cells' states")


def _add_output_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", default="console", metavar="FORMAT",
                        help="output format: console, markdown, latex, csv (numbers in numeric columns), json, or a "
                             "plugin's (`bench list formats`)")
    parser.add_argument("--plugin", action="append", default=[], metavar="FILE",
                        help="load a plugin file (e.g. an output format); repeatable")


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line naming the problem and where to look, not a usage dump; a flag is
    never abbreviated (``--method`` is not ``--methods``), and a mistyped one gets the closest real flag."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        self.command_line: list[str] = []

    def parse_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> Any:  # type: ignore[override]
        self.command_line = list(sys.argv[1:] if args is None else args)
        return super().parse_args(args, namespace)

    def error(self, message: str) -> None:  # type: ignore[override]
        hint = ""
        choice = re.match(r"argument [^:]+: invalid choice: '([^']*)' \(choose from (.*)\)$", message)
        if message.startswith("unrecognized arguments:"):
            typed = next((word for word in message.split(":", 1)[1].split() if word.startswith("--")), None)
            if typed is not None:
                hint = did_you_mean(typed.split("=")[0], self._flags_of_command())
        elif choice:
            hint = did_you_mean(choice.group(1), re.findall(r"'([^']*)'", choice.group(2)))
        self.exit(2, f"error: {message}{'; ' + hint.strip() if hint else ''} "
                     f"(see `{self._command_parser().prog} --help`)\n")

    def _command_parser(self) -> argparse.ArgumentParser:
        """The parser of the command being parsed (an unknown flag is reported by the top parser, which does not
        know which command it was for: the first word of the command line that names one of its commands)."""
        commands: dict[str, argparse.ArgumentParser] = {}
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                commands.update(action.choices)
        return next((commands[word] for word in self.command_line if word in commands), self)

    def _flags_of_command(self) -> list[str]:
        return [option for option in self._command_parser()._option_string_actions if option.startswith("--")]


def _verbosity_flags() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: a flag given before the command is not reset by the command's own (absent) copy of it.
    common.add_argument("-q", "--quiet", action="count", default=argparse.SUPPRESS,
                        help="warnings and errors only (no progress, no per-cell lines)")
    common.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS, help="also debugging detail")
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _verbosity_flags()
    parser = OneLineErrorParser(
        prog="bench", parents=[common],
        description="Few-shot classification benchmark harness: every method under one episodic protocol.",
        epilog="exit status: 0 done; 1 some cells failed (listed; --resume retries them); 2 wrong command line; "
               "3 wrong config, data, plugin or run folder (the message names it); 130 interrupted (Ctrl-C or "
               "SIGTERM; --resume continues)",
    )
    parser.add_argument("--version", action="version", version=f"fewshot-bench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", parents=[common], help="train and evaluate methods on identical test episodes")
    run.add_argument("--resume", metavar="RUN_ID", help="continue a run: its saved config, finished cells kept, "
                     "interrupted cells resumed from their last checkpoint")
    run.add_argument("--trust", action="store_true", help="with --resume: load the plugin files and pickle-reading "
                     "datasets the run's config names without asking")
    _add_run_flags(run)

    cross = sub.add_parser("cross", parents=[common], help="cross-dataset suite: train on each dataset's training "
                           "emotions, test on every dataset's unseen ones (the diagonal in-domain); prints the train × "
                           "test matrix, a failed pair marked")
    cross.add_argument("datasets", nargs="+", metavar="NAME=PLUGIN:PATH",
                       help="two or more datasets, each with your name for it: fer2013=fer2013:~/data/fer2013.npz, "
                            "rafdb=rafdb:~/data/RAF-DB, ckplus=image-folder:~/data/ck (NAME=PATH when NAME is the "
                            "plugin)")
    _add_run_flags(cross)
    cross.add_argument("--format", default="console", metavar="FORMAT",
                       help="format of the matrix: console, markdown, latex, csv, json, or a plugin's")

    lister = sub.add_parser("list", parents=[common], help="list registered methods, datasets, backbones, output formats, or the "
                                         "config keys")
    lister.add_argument("kind", nargs="?", choices=["methods", "datasets", "backbones", "formats", "settings"],
                        default=None)
    lister.add_argument("--options", action="store_true", help="show every option with its default")
    _add_output_flags(lister)

    board = sub.add_parser("leaderboard", parents=[common], help="aggregate every run into results/leaderboard.csv")
    board.add_argument("sources", nargs="*", help="run folders or folders of runs (default: results/runs)")
    board.add_argument("--out", default="results/leaderboard.csv", help="CSV to (re)write")
    board.add_argument("--dataset")
    board.add_argument("--way", type=int)
    board.add_argument("--shot", type=int)
    board.add_argument("--method", help="method name or variant label")

    table = sub.add_parser("table", parents=[common], help="accuracy table of a run or of the leaderboard")
    table.add_argument("source", help="a run id, a run folder, 'leaderboard', or a leaderboard CSV")
    table.add_argument("--test", choices=["t", "wilcoxon"], default="t", help="paired test for ties with the best")
    table.add_argument("--correction", choices=["holm", "bonferroni", "none"], default="holm")
    table.add_argument("--output-dir", default=RunConfig().output_dir, help="where run folders live")
    _add_output_flags(table)

    compare = sub.add_parser("compare", parents=[common], help="paired comparison of every method with a baseline on the same episodes")
    compare.add_argument("run", help="a run id or run folder")
    compare.add_argument("--baseline", required=True, help="variant label of the baseline, e.g. protonet, or a floor "
                                                           "row of the run, e.g. 'floor: pixels'")
    compare.add_argument("--test", choices=["t", "wilcoxon"], default="t")
    compare.add_argument("--correction", choices=["holm", "bonferroni", "none"], default="holm")
    compare.add_argument("--output-dir", default=RunConfig().output_dir)
    _add_output_flags(compare)

    audit = sub.add_parser("audit", parents=[common], help="what common reporting protocols (best of M test "
                                                            "evaluations, 1 query per class) would print for a run")
    audit.add_argument("run", help="a run id or run folder")
    audit.add_argument("--episodes", type=int, default=25, help="episodes of the small evaluations (default 25)")
    audit.add_argument("--batch-stats", action="store_true",
                       help="also evaluate each cell's saved weights again with test-time batch statistics (reads "
                            "the run's data; minutes for a large run)")
    audit.add_argument("--trust", action="store_true", help="with --batch-stats: read the run's data even when "
                                                            "its dataset reads pickle files")
    audit.add_argument("--output-dir", default=RunConfig().output_dir)
    _add_output_flags(audit)

    plot = sub.add_parser("plot", parents=[common], help="figures of a run (PNG and PDF)")
    plot.add_argument("run", help="a run id or run folder")
    plot.add_argument("--out", help="folder for the figures (default: <run>/figures)")
    plot.add_argument("--feature-maps", action="store_true",
                      help="draw the class maps of a test episode for every CRN / RN variant (needs their saved "
                           "weights and the run's data) instead of the accuracy figures")
    plot.add_argument("--shot", type=int, help="with --feature-maps: the shot (default: the largest run)")
    plot.add_argument("--seed", type=int, help="with --feature-maps: the seed (default: the first run)")
    plot.add_argument("--trust", action="store_true", help="with --feature-maps: read the run's data even when "
                      "its dataset unpickles files (else shown and confirmed first)")
    plot.add_argument("--output-dir", default=RunConfig().output_dir)

    status = sub.add_parser("status", parents=[common], help="cells of a run: pending, running, done, failed, interrupted")
    status.add_argument("run", help="a run id or run folder")
    status.add_argument("--output-dir", default=RunConfig().output_dir)
    _add_output_flags(status)

    new = sub.add_parser("new", parents=[common], help="write a ready-to-edit method, dataset, backbone or output-format "
                                                       "plugin with its conformance test")
    new.add_argument("kind", choices=["method", "dataset", "backbone", "format"])
    new.add_argument("name", help="registry name, e.g. cosine-proto")
    new.add_argument("--out", default=".", help="folder to write into (default: here)")
    new.add_argument("--package", action="store_true", help="an installable package with an entry point")

    card = sub.add_parser("card", parents=[common], help="write the reproduction card (ours next to the papers) from run folders")
    card.add_argument("card", nargs="?", default="configs/reproduce/card.yaml",
                      help="card file naming the runs and the published values")
    card.add_argument("--out", default="results/REPRODUCTION.md", help="Markdown file to (re)write")
    card.add_argument("--leaderboard", metavar="CSV",
                      help="also (re)write this leaderboard of every run the card names, e.g. results/leaderboard.csv")
    card.add_argument("--fingerprints", default="results/fingerprints", metavar="DIR",
                      help="committed behavioural fingerprints that decide whether a row is current (default: "
                           "%(default)s)")

    fingerprint = sub.add_parser("fingerprint", parents=[common],
                                 help="behavioural fingerprints: does today's code compute what the published records' "
                                      "code computed?")
    fingerprint.add_argument("card", nargs="?", default="configs/reproduce/card.yaml",
                             help="card whose records' variants are fingerprinted (with every built-in method)")
    fingerprint.add_argument("--fingerprints", default="results/fingerprints", metavar="DIR",
                             help="folder of the committed fingerprints (default: %(default)s)")
    fingerprint.add_argument("--variants", help="fingerprint these variants instead (separated by ';')")
    fingerprint.add_argument("--write", action="store_true",
                             help="record today's fingerprints under today's code versions (commit the file)")
    fingerprint.add_argument("--check", action="store_true",
                             help="exit 1 unless every variant's fingerprint under today's code version is committed "
                                  "and matches the code (what CI runs)")

    publish = sub.add_parser("publish", parents=[common], help="copy a run's records (config, environment, cells, test "
                                                               "episodes; no checkpoints) to a folder to commit")
    publish.add_argument("run", help="a run id or run folder")
    publish.add_argument("--out", required=True, help="record folder to (re)write, e.g. results/records/<run id>")
    publish.add_argument("--output-dir", default=RunConfig().output_dir)
    publish.add_argument("--weights", nargs="?", const="*", default=None, metavar="CELLS",
                         help="also keep the trained weights of the cells matching this pattern (all without one), for "
                              "bench predict and load_cell")

    predict = sub.add_parser("predict", parents=[common], help="classify new images with a trained cell against a "
                                                               "support set of labelled images")
    predict.add_argument("run", help="a run id, run folder or record (published with --weights)")
    predict.add_argument("cell", help="the cell id, or a pattern matching one (bench status RUN lists them)")
    predict.add_argument("--support", required=True, metavar="DIR", help="one folder of images per class")
    predict.add_argument("--query", required=True, metavar="DIR",
                         help="images to classify (with class folders named as the support's: accuracy too)")
    predict.add_argument("--device", default="cpu", help="cpu, cuda, mps")
    predict.add_argument("--trust", action="store_true", help="load the plugin files the run's config names")
    predict.add_argument("--output-dir", default=RunConfig().output_dir)
    _add_output_flags(predict)

    site = sub.add_parser("site", parents=[common], help="a static, offline HTML site of results: the leaderboard, one "
                                                         "page per run and record, the reproduction card")
    site.add_argument("out", metavar="OUT", help="folder to (re)write (new, empty, or an earlier site); open "
                                                 "OUT/index.html")
    site.add_argument("--runs", action="append", metavar="DIR",
                      help=f"run folders or folders of runs; repeatable (default: {RunConfig().output_dir}, if it "
                           "exists)")
    site.add_argument("--records", action="append", metavar="DIR",
                      help="committed records or folders of them; repeatable (default: results/records, if it exists)")
    site.add_argument("--card", metavar="FILE", help="the Markdown reproduction card `bench card` writes, one page per "
                                                     "section (default: results/REPRODUCTION.md, if it exists)")
    site.add_argument("--fingerprints", default="results/fingerprints", metavar="DIR",
                      help="committed behavioural fingerprints that decide whether a leaderboard row is what today's "
                           "code computes (default: %(default)s); variants without one are probed now, seconds each")

    datasets = sub.add_parser("datasets", parents=[common], help="inspect datasets")
    dsub = datasets.add_subparsers(dest="datasets_command", metavar="ACTION")
    show = dsub.add_parser("show", parents=[common], help="print class counts and split presets; write a contact sheet")
    show.add_argument("name", help="dataset name")
    show.add_argument("--out", help="write a contact sheet PNG (one row per class) here")
    show.add_argument("--per-class", type=int, default=12, help="images per class on the contact sheet")
    show.add_argument("--data-root", default=None, help="folder of the dataset, if not built in")
    show.add_argument("--dataset-option", action="append", default=[], metavar="KEY=VALUE")
    show.add_argument("--image-size", type=int, help="image side (default: the dataset's own)")
    show.add_argument("--channels", type=int, help="image channels, 1 or 3 (default: the dataset's own)")
    show.add_argument("--plugin", action="append", default=[], metavar="FILE")
    check = dsub.add_parser("check", parents=[common], help="report exact and near-duplicate images (frames of one "
                                                            "video), per class and across the split's parts")
    check.add_argument("name", help="dataset name")
    check.add_argument("--data-root", default=None, help="folder of the dataset, if not built in")
    check.add_argument("--split", default=None, help="split preset to check across (default: the dataset's)")
    check.add_argument("--dataset-option", action="append", default=[], metavar="KEY=VALUE")
    check.add_argument("--image-size", type=int, help="image side (default: the dataset's own)")
    check.add_argument("--channels", type=int, help="image channels, 1 or 3 (default: the dataset's own)")
    check.add_argument("--plugin", action="append", default=[], metavar="FILE")
    # 10.0 is near_duplicates.DEFAULT_NEAR_THRESHOLD (tested equal), not imported here: that module imports
    # torch, which would slow every command's start.
    check.add_argument("--near-threshold", type=float, default=10.0, metavar="FLOAT",
                       help="two images are near-duplicates when the RMS difference of their 16×16 grayscale "
                            "thumbnails is at most this many grey levels of 255 (default: %(default)g)")
    check.add_argument("--no-near", action="store_true", help="report exact duplicates only (skip near-duplicates)")
    return parser


def _key_values(items: Sequence[str], flag: str) -> dict[str, Any]:
    result = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"{flag} expects KEY=VALUE, got '{item}'")
        key, value = item.split("=", 1)
        result[key.strip()] = value.strip()
    return result


def _load_plugins(paths: Sequence[str]) -> None:
    from fewshot_bench.registry import load_plugin_file

    for path in paths:
        load_plugin_file(path)


def _run_config(args: argparse.Namespace) -> RunConfig:
    """The config a ``bench run`` invocation asks for: a new run (defaults < --config < flags), or a found
    run folder's saved config (< flags) with --resume, which then writes where the run was found."""
    from fewshot_bench.engine.runner import default_run_id

    flags = {spec.name: getattr(args, spec.name) for spec in SETTINGS.values() if spec.flag}
    if args.dataset_option:
        flags["dataset_options"] = _key_values(args.dataset_option, "--dataset-option")
    if args.resume:
        if args.config:
            raise ConfigError("--resume continues a run with its own saved config; drop --config")
        folder = resolve_run(args.resume, flags["output_dir"] or RunConfig().output_dir)
        config = merge(folder / "config.yaml", {**flags, "output_dir": str(folder.parent), "run_id": folder.name})
        _confirm_run_code(folder, config, given=args.plugin, trusted=args.trust)
    else:
        config = merge(args.config, flags)
    if args.plugin:
        absolute = [str(Path(p).expanduser().resolve()) for p in args.plugin]
        config = replace(config, plugins=list(dict.fromkeys([*config.plugins, *absolute])))
    slurm = {key: getattr(args, f"slurm_{key}") for key in SLURM_SETTINGS if getattr(args, f"slurm_{key}") is not None}
    if slurm:
        config = replace(config, slurm={**config.slurm, **merge(None, {"slurm": slurm}).slurm})
    _load_plugins(config.plugins)
    return config if config.run_id else replace(config, run_id=default_run_id(config))


def _confirm_run_code(folder: Path, config: RunConfig, given: Sequence[str], trusted: bool) -> None:
    """A run folder may come from someone else: the code its config would run (plugin files, datasets that
    unpickle files) is shown and must be confirmed (or --trust given) before anything is loaded."""
    from fewshot_bench.errors import BenchError
    from fewshot_bench.registry import DATASETS

    named = {str(Path(p).expanduser().resolve()) for p in given}
    code = [f"plugin file {p}" for p in config.plugins if p not in named]
    try:
        if getattr(DATASETS.get(config.dataset), "unpickles", False):
            code.append(f"dataset '{config.dataset}', which unpickles files under {config.data_root}")
    except BenchError:
        pass  # a dataset from one of those plugins: the plugin files are listed already
    code += _unpickling_parts(config)
    if not code or trusted:
        return
    listing = "; ".join(code)
    if sys.stdin.isatty() and sys.stderr.isatty():
        answer = input(f"run '{folder}' would run code from: {listing}. Continue? [y/N] ").strip().lower()
        if answer in ("y", "yes"):
            return
    raise ConfigError(f"run '{folder}' would run code from: {listing}; if you trust it, add --trust (or name the "
                      "plugin files with --plugin)")


def _unpickling_parts(config: RunConfig) -> list[str]:
    """The parts of a ``combined`` dataset that unpickle files: each part is read by its own plugin, so each
    goes through the trust check as a top-level dataset would."""
    from fewshot_bench.errors import BenchError
    from fewshot_bench.registry import DATASETS

    if config.dataset != "combined":
        return []
    from fewshot_bench.datasets.combined import parse_parts

    def unpickles(name: str) -> bool:
        try:
            return bool(getattr(DATASETS.get(name), "unpickles", False))
        except BenchError:
            return False  # a dataset from a plugin file: the plugin files are listed already

    text = str((config.dataset_options or {}).get("parts", ""))
    try:
        parts = [(p.name, p.plugin, p.path) for p in parse_parts(text)]
    except BenchError:
        # Not parsable before the run's plugin files are loaded (a part read by a plugin's dataset): every
        # reading of an entry is checked, so no pickle reader is missed.
        parts = []
        for item in filter(None, (i.strip() for i in text.split(";"))):
            name, _, value = (x.strip() for x in item.partition("="))
            plugin, _, path = value.partition(":")
            parts += [(name, plugin, path or None), (name, name, value or None)]
    found = [f"dataset 'combined' part '{name}' ('{plugin}'), which unpickles files under {path}"
             for name, plugin, path in parts if unpickles(plugin)]
    return list(dict.fromkeys(found))


def command_run(args: argparse.Namespace) -> int:
    from fewshot_bench.cli.progress import run_observer
    from fewshot_bench.engine.launch import stop_local_workers, submit_run, wait_run
    from fewshot_bench.engine.runner import resolve_variants, run

    config = _run_config(args)
    out, err = make_console(), make_console(stderr=True)
    submission = None
    try:
        if config.launcher == "slurm" or config.jobs > 1:
            submission = submit_run(config)
            out.print(f"run {config.run_id}: {len(submission.pending)} of {submission.total} cells submitted to "
                      f"{submission.where}" + (f"; job ids {', '.join(str(j.job_id) for j in submission.jobs)}"
                                               if submission.jobs else ""))
            if config.launcher == "slurm" and not args.wait:
                out.print(f"follow it with `bench status {config.run_id}`; collect with `bench table {config.run_id}`")
                return 0
            if err.is_terminal:
                with Live(_status_table(submission.store), console=err, refresh_per_second=2) as view:
                    result = wait_run(submission, lambda: view.update(_status_table(submission.store)))
                err.print()
            else:  # a log file: one line whenever the cells' counts change (each worker logs its progress)
                result = wait_run(submission, _status_lines(submission.store))
        else:
            total = len(resolve_variants(config)) * len(config.shots) * len(config.seeds)
            with run_observer(err, total, config.log_interval) as observer:
                result = run(config, observer)
    except KeyboardInterrupt:
        if submission is not None:  # interrupted outside wait_run (which stops them itself): no worker is left
            stop_local_workers(submission.jobs)
        err.print(f"interrupted: finished cells and checkpoints are saved in {config.output_dir}/{config.run_id}; "
                  f"continue with `bench run --resume {config.run_id}`")
        return ExitCode.INTERRUPTED
    if result.summary:
        out.print(f"[bold]{escape(config.dataset_name or config.dataset)}[/], split '{escape(str(result.summary[0]['split']))}'")
        _show(_accuracy_report(result.store.load_cells(), result.summary, result.store.root), "console", out)
    out.print(f"results: {result.store.root}")
    return _report_failures(result.failures, config.run_id, err)


def command_cross(args: argparse.Namespace) -> int:
    from fewshot_bench.engine.cross import cross_runs
    from fewshot_bench.reporting.cross import cross_report

    args.resume, args.trust = None, False
    prefix = args.run_id or time.strftime("cross-%Y%m%d-%H%M%S")
    base = _run_config(args)
    runs = cross_runs(base, args.datasets, prefix)
    out, err = make_console(), make_console(stderr=True)
    parallel = base.launcher == "slurm" or base.jobs > 1
    try:
        pairs, failed, failures = (_cross_parallel if parallel else _cross_in_turn)(runs, base, err)
    except KeyboardInterrupt:
        err.print(f"interrupted: finished pairs and cells are kept; rerun the same command with --run-id {prefix} "
                  "to continue")
        return ExitCode.INTERRUPTED
    datasets = list(dict.fromkeys(pair.train for pair in runs))
    _show(cross_report(pairs, failed, datasets), args.format, out)
    err.print(f"runs: {base.output_dir}/{prefix}-*")  # stderr: stdout holds only the matrix (json, csv, ...)
    for train, test, reason in failed:
        err.print(f"[red]pair {escape(train)} → {escape(test)} failed: {escape(reason)}[/]")
    if failed and not failures:
        err.print(f"{len(failed)} pair(s) failed (above); fix the cause and rerun the same command with --run-id "
                  f"{prefix}: finished pairs are kept")
        return 1
    return _report_failures(failures, prefix, err)


def _cross_in_turn(runs, base: RunConfig, err: Console):
    """The pairs one after another in this process, with the run's progress display."""
    from fewshot_bench.cli.progress import run_observer
    from fewshot_bench.engine.launch import execute
    from fewshot_bench.engine.runner import resolve_variants

    pairs, failed, failures = [], [], []
    for number, pair in enumerate(runs, 1):
        kind = "in-domain" if pair.diagonal else "cross"
        err.print(f"pair {number}/{len(runs)} ({kind}): train on {escape(pair.train)}, test on {escape(pair.test)} "
                  f"(run {pair.config.run_id})")
        try:
            config = pair.config
            total = len(resolve_variants(config)) * len(config.shots) * len(config.seeds)
            with run_observer(err, total, config.log_interval) as observer:
                result = execute(config, observer)
        except BenchError as exc:  # this pair's data or split: the others still run
            failed.append((pair.train, pair.test, str(exc)))
            continue
        pairs.append((pair.train, pair.test, result.summary))
        failures += result.failures
    return pairs, failed, failures


def _cross_parallel(runs, base: RunConfig, err: Console):
    """``--jobs N``: up to N pairs at once, each one worker process with its share of the cores; on Slurm,
    every pair's cells submitted at once. A pair whose data or split is refused is reported, the others run."""
    import os

    from fewshot_bench.engine.launch import submit_run, wait_run

    limit = len(runs) if base.launcher == "slurm" else base.jobs
    threads = base.threads or max(1, (os.cpu_count() or 1) // max(1, base.jobs))
    pending, running = list(runs), []
    pairs, failed, failures = [], [], []
    while pending or running:
        while pending and len(running) < limit:
            pair = pending.pop(0)
            config = pair.config if base.launcher == "slurm" else replace(pair.config, jobs=1, threads=threads)
            try:
                running.append((pair, submit_run(config)))
                err.print(f"pair {escape(pair.train)} → {escape(pair.test)} started (run {config.run_id})")
            except BenchError as exc:
                failed.append((pair.train, pair.test, str(exc)))
        done = [item for item in running if all(job.done() for job in item[1].jobs)]
        if not done:
            time.sleep(0.5)
            continue
        for item in done:
            running.remove(item)
            pair, submission = item
            result = wait_run(submission)
            pairs.append((pair.train, pair.test, result.summary))
            failures += result.failures
            err.print(f"pair {escape(pair.train)} → {escape(pair.test)} finished")
    order = {(p.train, p.test): i for i, p in enumerate(runs)}
    pairs.sort(key=lambda item: order[(item[0], item[1])])
    return pairs, failed, failures


def _report_failures(failures: Sequence[str], run_id: str, err: Console) -> int:
    """One line per failed cell or job, and the way on; the exit status of a run."""
    for line in failures:
        err.print(f"[red]{escape(line)}[/]")
    if not failures:
        return 0
    err.print(f"{len(failures)} failed (each cell's traceback is in its state/<cell>.json; `bench status {run_id}` "
              f"lists them); fix the cause and continue with `bench run --resume {run_id}`")
    return 1


def _accuracy_report(cells, rows, folder: Path, test: str = "t", correction: str = "holm"):
    """The run's accuracy table, its context rows (``fewshot_bench.context``) below the methods."""
    from fewshot_bench.reporting.tables import run_accuracy_report

    return run_accuracy_report(cells, rows, folder, test=test, correction=correction)


def _show(report, format_name: str, console: Console | None = None) -> None:
    """Print ``report`` in the named format (any registered one, plugins included)."""
    from fewshot_bench.report import report_format

    report_format(format_name).show(report, console or make_console())


def _status_table(store):
    """The run's status report as a rich table, for the live view while jobs run."""
    from fewshot_bench.engine.launch import status_report
    from fewshot_bench.formats.terminal import ConsoleFormat

    return ConsoleFormat().table(status_report(store))


def _status_lines(store) -> Any:
    """A poll callback logging the run's cell counts when they change."""
    from fewshot_bench.console import logger
    from fewshot_bench.engine.launch import status_report

    last: list[str] = []

    def poll() -> None:
        title = status_report(store).title
        if title != (last[-1] if last else None):
            last.append(title)
            logger.info(title)
    return poll


def command_status(args: argparse.Namespace) -> int:
    from fewshot_bench.engine.launch import status_report
    from fewshot_bench.results.store import RunStore

    _load_plugins(args.plugin)
    _show(status_report(RunStore(resolve_run(args.run, args.output_dir))), args.format)
    return 0


def command_list(args: argparse.Namespace) -> int:
    from fewshot_bench.method import FewShotMethod
    from fewshot_bench.registry import BACKBONES, DATASETS, FORMATS, METHODS
    from fewshot_bench.report import Column, Report, Value

    _load_plugins(args.plugin)
    kinds = [args.kind] if args.kind else ["methods", "datasets", "backbones", "formats"]
    registries = {"methods": METHODS, "datasets": DATASETS, "backbones": BACKBONES, "formats": FORMATS}
    for kind in kinds:
        if kind == "settings":
            _show(_settings_report(), args.format)
            continue
        with_options = args.options and kind in ("methods", "datasets")
        columns = [Column(name) for name in ("name", "description", "source", "version")]
        if kind == "datasets":
            columns.append(Column("images"))  # the geometry --image-size / --channels replace
        rows = []
        for entry in registries[kind].entries():
            row = [entry.name, entry.description, entry.source, entry.version]
            if kind == "datasets":
                size, channels = getattr(entry.obj, "image_size", None), getattr(entry.obj, "image_channels", None)
                row.append(f"{f'{size}×{size}' if size else 'own size'}, "
                           f"{ {1: 'gray', 3: 'RGB'}.get(channels, 'own channels') }")
            if with_options:
                obj = entry.obj
                options = obj.all_options() if isinstance(obj, type) and issubclass(obj, FewShotMethod) else \
                    getattr(obj, "options", ())
                row.append(Value({o.name: o.default for o in options},
                                 "\n".join(f"{o.name}={o.default!r}: {o.help}" for o in options)))
            rows.append(row)
        if with_options:
            columns.append(Column("options (default)"))
        _show(Report(kind, columns, rows, kind=kind), args.format)
    return 0


def _settings_report():
    from fewshot_bench.config import SETTINGS
    from fewshot_bench.report import Column, Report, Value

    rows = [[spec.name, spec.flag_name if spec.flag else "", spec.type_name, Value(spec.default, repr(spec.default)),
             spec.role, spec.help] for spec in SETTINGS.values()]
    columns = [Column(name) for name in ("key", "flag", "type", "default", "role", "what it does")]
    return Report("settings (docs/config.md)", columns, rows, kind="settings")


def command_datasets(args: argparse.Namespace) -> int:
    from fewshot_bench.reporting.contact_sheet import save_contact_sheet
    from fewshot_bench.episodic.protocol import dataset_plugin, load_dataset, resolve_split

    if args.datasets_command not in ("show", "check"):
        raise ConfigError("use `bench datasets show NAME [--out sheet.png]` or `bench datasets check NAME`")
    _load_plugins(args.plugin)
    config = merge(None, {"dataset": args.name, "data_root": args.data_root, "dedup": False,
                          "image_size": args.image_size, "channels": args.channels,
                          "dataset_options": _key_values(args.dataset_option, "--dataset-option") or None})
    dataset = load_dataset(config)
    console = make_console()
    if args.datasets_command == "check":
        try:
            # A preset name, or a mapping in YAML ('{train: [...], test: [...]}'), read as `bench run --split` reads it.
            split = resolve_split(merge(None, {**config.to_dict(), "split": args.split}), dataset)
        except ConfigError:
            if args.split:
                raise
            split = None  # a dataset without presets (an image folder, an array file): no split to cross
        return _print_duplicates(dataset, split, console, None if args.no_near else args.near_threshold)
    table = Table(title=f"{dataset.name}: {len(dataset.labels)} images, {dataset.image_shape} (C, H, W)",
                  title_justify="left")
    table.add_column("class")
    table.add_column("images", justify="right")
    for name, count in dataset.class_counts().items():
        table.add_row(name, str(count))
    console.print(table)
    default, presets = dataset_plugin(args.name).split_presets(dataset)
    for name, split in presets.items():
        marker = " (default)" if name == default else ""
        parts = [f"{part} {_class_list(names)}" for part, names in
                 (("train", split.train), ("val", split.val), ("test", split.test)) if names]
        console.print(f"split '{name}'{marker}: " + "; ".join(parts))
    if args.out:
        path = save_contact_sheet(dataset, Path(args.out), per_class=args.per_class)
        console.print(f"contact sheet: {path}")
    return 0


def _per_class_table(title: str, header: str, class_names: Sequence[str], counts: dict[str, int]) -> Table:
    """A count per class (0 where none), for the duplicate reports."""
    table = Table(title=title, title_justify="left")
    table.add_column("class")
    table.add_column(header, justify="right")
    for name in class_names:
        table.add_row(escape(name), str(counts.get(name, 0)))
    return table


def _print_duplicates(dataset, split, console: Console, near_threshold: float | None = None) -> int:
    """The exact-duplicate report, then (unless ``near_threshold`` is None) the near-duplicate one."""
    from fewshot_bench.episodic.duplicates import check

    report = check(dataset, split)
    console.print(f"{dataset.name}: {report.images} images; {report.groups} groups of identical images holding "
                  f"{report.duplicated_images} images ({report.duplicated_images - report.groups} extra copies)")
    console.print(_per_class_table("extra copies within a class (removed by dedup, one image of each group kept)",
                                   "copies", dataset.class_names, report.same_class_copies))
    console.print(f"groups filed under two or more classes: {report.cross_class_groups} (every image of them is "
                  "removed by dedup: its label is ambiguous)")
    if split is None:
        console.print("no split preset to check across (give one with --split)")
    else:
        crossing = ", ".join(f"{pair}: {groups} groups, {report.cross_split_images[pair]} images"
                             for pair, groups in report.cross_split_groups.items()) or "none"
        console.print(f"split '{split.name}', groups spanning two of its parts (an image seen in meta-training "
                      f"and again at test): {crossing}")
    if near_threshold is None:
        return 0
    from fewshot_bench.episodic.near_duplicates import check_near, near_rule

    near = check_near(dataset, split, near_threshold)
    console.print(f"near-duplicates ({near_rule(near.threshold)}; --near-threshold to change): {near.pairs} "
                  f"pairs ({near.exact_pairs} of them byte-identical) in {near.groups} groups holding "
                  f"{near.grouped_images} images")
    console.print(_per_class_table("near-duplicate pairs within a class (a query can be a frame of its own support "
                                   "image)", "pairs", dataset.class_names, near.same_class_pairs))
    console.print(f"near-duplicate groups filed under two or more classes: {near.cross_class_groups} (their "
                  "label is ambiguous)")
    if split is not None:
        crossing = ", ".join(f"{pair}: {groups} groups, {near.cross_split_images[pair]} images"
                             for pair, groups in near.cross_split_groups.items()) or "none"
        console.print(f"split '{split.name}', near-duplicate groups spanning two of its parts (a face seen in "
                      f"meta-training and again at test): {crossing}")
    if dataset.metadata.get("parts"):
        crossing = ", ".join(f"{pair}: {groups} groups" for pair, groups in near.cross_part_groups.items()) or "none"
        console.print(f"near-duplicate groups spanning two parts of the combined dataset: {crossing}")
    files = dataset.metadata.get("files")
    named = files is not None and len(files) == near.images

    def described(index: int, name: str) -> str:
        where = f"'{files[index]}'" if named else f"image {index}"
        return escape(f"{where} ({name})")

    for i, j, class_i, class_j, distance in near.examples:
        console.print(f"example: {described(i, class_i)} ~ {described(j, class_j)}, RMS difference {distance:.1f}")
    return 0


def resolve_run(reference: str, output_dir: str) -> Path:
    """The run folder ``reference`` names: a path to a run folder, or a run id under ``output_dir``. Every
    command that takes a run finds it here."""
    if any(ord(c) < 32 for c in reference):
        raise ConfigError(f"run {reference!r} contains a control character (a NUL byte or a line break); give the "
                          "run id or folder as it is spelled")
    for candidate in (Path(reference), Path(output_dir) / reference):
        if (candidate / "config.yaml").is_file() or (candidate / "cells").is_dir():
            return candidate
    raise ConfigError(f"no run '{reference}' (looked for {Path(output_dir) / reference}/config.yaml); list runs "
                      f"with `ls {output_dir}`, or pass --output-dir")


def _run_cells(folder: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    from fewshot_bench.results.leaderboard import load_cells
    from fewshot_bench.results.store import summary_rows

    cells = load_cells([folder])
    if not cells:
        raise ConfigError(f"run '{folder}' has no finished cells yet")
    return cells, summary_rows(cells)


def command_leaderboard(args: argparse.Namespace) -> int:
    from fewshot_bench.results.leaderboard import write_leaderboard

    sources = [Path(p) for p in args.sources] or [Path(RunConfig().output_dir)]
    rows = write_leaderboard(sources, Path(args.out), dataset=args.dataset, way=args.way, shot=args.shot,
                             method=args.method)
    make_console().print(f"{args.out}: {len(rows)} rows from {len({r for row in rows for r in row['run_ids'].split(';')})} run(s)")
    return 0


def command_table(args: argparse.Namespace) -> int:
    from fewshot_bench.results.leaderboard import read_leaderboard
    from fewshot_bench.reporting.tables import accuracy_report, table_from_rows

    _load_plugins(args.plugin)
    if args.source == "leaderboard" or args.source.endswith(".csv"):
        path = Path("results/leaderboard.csv") if args.source == "leaderboard" else Path(args.source)
        rows = read_leaderboard(path)
        # Context rows (floor, seen, ceiling) are shown below the methods, never ranked with them.
        report = accuracy_report(table_from_rows([r for r in rows if not r.get("context")]),
                                 [r for r in rows if r.get("context")])
    else:
        folder = resolve_run(args.source, args.output_dir)
        report = _accuracy_report(*_run_cells(folder), folder, test=args.test, correction=args.correction)
    _show(report, args.format)
    return 0


def command_compare(args: argparse.Namespace) -> int:
    from fewshot_bench.reporting.comparison import compare_with_baseline, comparison_report

    from fewshot_bench.results.store import RunStore

    _load_plugins(args.plugin)
    folder = resolve_run(args.run, args.output_dir)
    cells, _ = _run_cells(folder)
    # A floor row (same test episodes, paired) may be the baseline: is each method above the untrained floor?
    floors = [r for r in RunStore(folder).load_context() if r["context"] == "floor"]
    labels = list(dict.fromkeys(c["label"] for c in cells))
    floor_labels = list(dict.fromkeys(r["label"] for r in floors))
    if args.baseline not in labels and args.baseline not in floor_labels:
        raise ConfigError(f"baseline '{args.baseline}' is not in this run; its variants are: {', '.join(labels)}"
                          + (f"; its floor rows: {', '.join(floor_labels)}" if floor_labels else ""))
    if args.baseline in floor_labels:
        cells = [*cells, *(r for r in floors if r["label"] == args.baseline)]
    results = compare_with_baseline(cells, args.baseline, test=args.test, correction=args.correction)
    _show(comparison_report(results, args.baseline, args.test, args.correction), args.format)
    return 0


def command_audit(args: argparse.Namespace) -> int:
    from fewshot_bench.reporting.audit import audit_cells, audit_report

    if args.episodes < 1:
        raise ConfigError(f"--episodes must be at least 1, got {args.episodes}")
    folder = resolve_run(args.run, args.output_dir)
    cells, _ = _run_cells(folder)
    batch = None
    if args.batch_stats:
        from fewshot_bench.reporting.batch_statistics import batch_statistics_accuracies

        saved = merge(folder / "config.yaml", {})
        _confirm_run_code(folder, saved, given=saved.plugins, trusted=args.trust)
        batch = batch_statistics_accuracies(folder, cells)
    _show(audit_report(audit_cells(cells, batch, small_episodes=args.episodes), args.episodes), args.format)
    return 0


def command_plot(args: argparse.Namespace) -> int:
    from fewshot_bench.reporting.plots import plot_run

    folder = resolve_run(args.run, args.output_dir)
    if args.feature_maps:
        # The figure reads the run's data with its saved config (its plugin files are not loaded): a
        # pickle-reading dataset of someone else's run folder is confirmed first, as on --resume.
        saved = merge(folder / "config.yaml", {})
        _confirm_run_code(folder, saved, given=saved.plugins, trusted=args.trust)
    cells, rows = _run_cells(folder)
    out = Path(args.out) if args.out else folder / "figures"
    if args.feature_maps:
        from fewshot_bench.reporting.feature_maps import feature_map_figure

        out.mkdir(parents=True, exist_ok=True)
        paths = feature_map_figure(folder, out, cells, shot=args.shot, seed=args.seed)
    else:
        paths = plot_run(cells, rows, out)
    for path in paths:
        make_console().print(str(path))
    return 0


def command_new(args: argparse.Namespace) -> int:
    from fewshot_bench.cli.scaffold import scaffold

    for path in scaffold(args.kind, args.name, Path(args.out), package=args.package):
        make_console().print(f"wrote {path}")
    return 0


def command_card(args: argparse.Namespace) -> int:
    from fewshot_bench.fingerprint.book import FingerprintBook
    from fewshot_bench.fingerprint.status import CodeStates
    from fewshot_bench.reporting.reproduction import card_labels, card_sources, load_card, render_card
    from fewshot_bench.fileio import atomic_write_text

    card = load_card(args.card)
    states = CodeStates(FingerprintBook.load(args.fingerprints))
    states.prepare(card_labels(card))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    command = f"bench card {args.card} --out {args.out}"
    if args.leaderboard:
        command += f" --leaderboard {args.leaderboard}"
    atomic_write_text(out, render_card(card, command, states))
    make_console().print(f"wrote {out}")
    if args.leaderboard:
        from fewshot_bench.results.leaderboard import write_leaderboard

        rows = write_leaderboard(card_sources(card), Path(args.leaderboard))
        make_console().print(f"wrote {args.leaderboard}: {len(rows)} rows")
    return 0


def command_fingerprint(args: argparse.Namespace) -> int:
    from fewshot_bench.fingerprint.book import FingerprintBook
    from fewshot_bench.fingerprint.compare import compare
    from fewshot_bench.fingerprint.status import probe_now
    from fewshot_bench.options import Spec
    from fewshot_bench.pretraining import resolve
    from fewshot_bench.registry import METHODS
    from fewshot_bench.reporting.reproduction import card_cells, card_labels, load_card
    from fewshot_bench.results.provenance import cell_code_version, git_state, gpu_paths_version

    if args.variants:
        labels = [label.strip() for label in args.variants.split(";") if label.strip()]
    else:
        builtin = [entry.name for entry in METHODS.entries() if entry.source == "built-in"]
        labels = list(dict.fromkeys([*card_labels(load_card(args.card)), *builtin]))
    book = FingerprintBook.load(args.fingerprints)
    versions = {label: cell_code_version(resolve(Spec.parse(label))) for label in labels}
    now = probe_now(labels)
    commit, dirty = git_state()
    gpu_paths = gpu_paths_version()
    problems = 0
    table = Table("variant", "code version now", "committed fingerprint", box=None)
    for label in labels:
        known = book.known(label, versions[label])
        if not known:
            verdict = "none at this code version"
            problems += 1
        else:
            differences = compare(known[0].fingerprint, {k: now[label][k] for k in ("A", "B")})
            verdict = "matches" if not differences else f"DIFFERS: {'; '.join(differences[:2])}"
            problems += bool(differences)
        table.add_row(escape(label), versions[label], escape(verdict))
        if args.write:
            book.write(label, versions[label], now[label], gpu_paths, None if dirty else commit)
    make_console().print(table)
    if args.write:
        # Kept: today's code and the code of every record the card names (a record is checked against it).
        keep = {(label, versions[label]) for label in labels}
        if not args.variants:
            keep |= {(cell["label"], cell.get("code_version")) for cell in card_cells(load_card(args.card))}
        dropped = book.prune(keep)
        make_console().print(f"wrote {book.save()}: {len(labels)} variants under today's code versions"
                             + (f" ({dropped} entries of code no record used dropped)" if dropped else ""))
        return 0
    if args.check and problems:
        print(f"error: {problems} variant(s) have no committed fingerprint at today's code version or one that differs "
              f"from today's behaviour; if the change is intended, run `bench fingerprint --write` and commit "
              f"{args.fingerprints}", file=sys.stderr)
        return 1
    return 0


def command_predict(args: argparse.Namespace) -> int:
    from fewshot_bench.engine.reuse import folder_images, load_cell
    from fewshot_bench.report import Column, Report, Value

    _load_plugins(args.plugin)
    folder = Path(args.run) if (Path(args.run) / "config.yaml").is_file() else resolve_run(args.run, args.output_dir)
    model = load_cell(folder, args.cell, device=args.device, trust=args.trust)
    support, support_labels = folder_images(Path(args.support))
    if support_labels is None:
        raise ConfigError(f"--support '{args.support}' must hold one folder of images per class")
    query, truth = folder_images(Path(args.query))
    result = model.classify(support, support_labels, query)
    columns = [Column("image"), Column("predicted"), *(Column(f"score {c}", "right") for c in result.classes)]
    rows = [[str(path), predicted, *(Value(float(v), f"{v:.3f}") for v in scores.tolist())]
            for path, predicted, scores in zip(query, result.predictions, result.scores)]
    caption = (f"{model.label} ({model.record.get('cell')}, {model.record.get('mean', float('nan')):.2f} % on its "
               f"test episodes), {len(result.classes)}-way {len(support) // len(result.classes)}-shot support from "
               f"{args.support}")
    if truth is not None:
        right = sum(p == t for p, t in zip(result.predictions, truth))
        caption += f"; accuracy on the labelled queries: {100 * right / len(truth):.2f} % ({right}/{len(truth)})"
    _show(Report("predictions", columns, rows, caption=caption, kind="predictions"), args.format)
    return 0


def command_publish(args: argparse.Namespace) -> int:
    from fewshot_bench.results.publish import publish_run

    files = publish_run(resolve_run(args.run, args.output_dir), Path(args.out), weights=args.weights)
    size = sum(p.stat().st_size for p in files)
    make_console().print(f"wrote {args.out}: {len(files)} files, {size / 1e6:.1f} MB")
    return 0


def _given_or_default(given: Sequence[str] | None, default: str, flag: str) -> list[Path]:
    """The paths named with ``flag``, each of which must exist, or the default one where it exists (a site of
    runs alone, or of records alone, is fine)."""
    if given:
        missing = [p for p in given if not Path(p).exists()]
        if missing:
            raise ConfigError(f"{flag} '{missing[0]}' does not exist")
        return [Path(p) for p in given]
    return [Path(default)] if Path(default).exists() else []


def command_site(args: argparse.Namespace) -> int:
    from fewshot_bench.fingerprint.book import FingerprintBook
    from fewshot_bench.fingerprint.status import CodeStates
    from fewshot_bench.reporting.site import build_site

    runs = _given_or_default(args.runs, RunConfig().output_dir, "--runs")
    records = _given_or_default(args.records, "results/records", "--records")
    cards = _given_or_default([args.card] if args.card else None, "results/REPRODUCTION.md", "--card")
    states = CodeStates(FingerprintBook.load(args.fingerprints))
    site = build_site(Path(args.out), runs, records, cards[0] if cards else None, states)
    make_console().print(f"wrote {site.out}: {len(site.pages)} pages ({site.runs} run and record pages"
                         + (f", {site.card_sections} card sections" if site.card_sections else "")
                         + f"), {len(site.figures)} figure files; open {site.out / 'index.html'}")
    return 0


def _class_list(names: Sequence[str], limit: int = 10) -> str:
    if len(names) <= limit:
        return ", ".join(names)
    return f"{len(names)} classes ({', '.join(names[:3])}, ..., {names[-1]})"


COMMANDS = {"run": command_run, "list": command_list, "datasets": command_datasets,
            "leaderboard": command_leaderboard, "table": command_table, "compare": command_compare, "audit": command_audit,
            "plot": command_plot, "new": command_new, "status": command_status, "card": command_card,
            "publish": command_publish, "predict": command_predict, "cross": command_cross, "fingerprint": command_fingerprint,
            "site": command_site}


def _interrupt(signum: int, frame: Any) -> None:
    """SIGTERM (a scheduler's or `kill`'s) ends a command the way Ctrl-C does: one line, nothing lost."""
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return ExitCode.OK
    setup_logging(getattr(args, "verbose", 0) - getattr(args, "quiet", 0))
    previous = signal.signal(signal.SIGTERM, _interrupt) if threading.current_thread() is threading.main_thread() \
        else None
    try:
        return COMMANDS[args.command](args)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExitCode.INPUT
    except OSError as exc:  # a folder that is a file, a read-only or full disk: name the path, no traceback
        where = f" '{exc.filename}'" if exc.filename else ""
        print(f"error: cannot use{where}: {exc.strerror or exc}; check the path (--output-dir, --data-root) and its "
              "permissions", file=sys.stderr)
        return ExitCode.INPUT
    except KeyboardInterrupt:
        make_console(stderr=True).show_cursor(True)
        print("interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
