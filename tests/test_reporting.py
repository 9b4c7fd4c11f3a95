"""Leaderboard, paired statistics, tables and plots, on hand-made run folders."""

import csv
import io
import json
import multiprocessing
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from fewshot_bench.cli.main import main
from fewshot_bench.report import render
from fewshot_bench.reporting.tables import accuracy_report, table_from_cells, table_from_rows
from fewshot_bench.results.leaderboard import COLUMNS, load_cells, write_leaderboard
from fewshot_bench.results.store import summary_rows
from fewshot_bench.stats import adjust_pvalues, ci95, paired_test

A = np.array([0.6, 0.8, 0.4, 0.9, 0.7, 0.5, 0.6, 0.8])
B = np.array([0.5, 0.7, 0.5, 0.6, 0.6, 0.5, 0.4, 0.7])


def make_cell(label, shot, seed, accuracies, finished="2026-01-01T00:00:00", **extra):
    cell = {"label": label, "method": label.split("[")[0], "options": {}, "backbone": "conv4", "dataset": "toy",
            "split": "paper", "way": 3, "shot": shot, "query": 15, "seed": seed, "params": 1000,
            "train_episodes": 10, "train_seconds": 1.0, "eval_seconds": 0.5, "device": "cpu", "finished": finished,
            "accuracies": list(map(float, accuracies)), "loss_curve": {"episode": [5, 10], "loss": [1.0, 0.5]},
            "val_curve": {"episode": [], "accuracy": [], "selected_episode": None},
            "class_accuracy": {"angry": 0.5, "disgust": 0.6, "fear": 0.7}, "method_version": "0.1.0"}
    cell.update(extra)
    return cell


def write_run(root: Path, run_id: str, cells):
    folder = root / run_id / "cells"
    folder.mkdir(parents=True)
    (root / run_id / "environment.json").write_text(json.dumps({"torch": "2.x", "python": "3.11",
                                                                "fewshot_bench": "0.1.0"}))
    for i, cell in enumerate(cells):
        (folder / f"{i}.json").write_text(json.dumps(cell))
    return root / run_id


# ------------------------------------------------------------------------------------------- statistics
def test_paired_t_test_and_ci_match_scipy():
    result = paired_test(A, B, "t")
    diff = (A - B) * 100
    assert result.mean_diff == pytest.approx(diff.mean())
    assert result.p_value == pytest.approx(stats.ttest_rel(A, B).pvalue)
    assert result.ci95 == pytest.approx(stats.t.ppf(0.975, 7) * diff.std(ddof=1) / np.sqrt(8))
    assert paired_test(A, B, "wilcoxon").p_value == pytest.approx(stats.wilcoxon(A, B).pvalue)
    assert paired_test(A, A).p_value == 1.0


def test_holm_and_bonferroni_corrections():
    p = [0.01, 0.04, 0.03, 0.5]
    assert adjust_pvalues(p, "holm") == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert adjust_pvalues(p, "bonferroni") == pytest.approx([0.04, 0.16, 0.12, 1.0])
    assert adjust_pvalues(p, "none") == p


def test_ci95_against_numpy_on_a_fixed_vector():
    assert ci95(A) == pytest.approx(1.96 * np.std(A) / np.sqrt(len(A)))


# ------------------------------------------------------------------------------------------ leaderboard
def test_leaderboard_columns_sorting_dedup_and_idempotence(tmp_path):
    runs = tmp_path / "runs"
    same = {"settings_hash": "0123456789ab"}  # both runs trained under the same settings
    write_run(runs, "r1", [make_cell("protonet", 1, 0, B, **same), make_cell("crn", 1, 0, A, **same)])
    # r2 repeats protonet seed 0 (newer: replaces r1's) and adds seed 1
    write_run(runs, "r2", [make_cell("protonet", 1, 0, A, finished="2026-02-01T00:00:00", **same),
                           make_cell("protonet", 1, 1, B, finished="2026-02-01T00:00:00", **same)])
    out = tmp_path / "leaderboard.csv"
    write_leaderboard([runs], out)
    first = out.read_text()
    write_leaderboard([runs], out)
    assert out.read_text() == first
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == COLUMNS
    assert [r["label"] for r in rows] == ["crn", "protonet"]  # best first within the setting
    proto = rows[1]
    assert proto["seeds"] == "2" and proto["episodes"] == "16" and proto["run_ids"] == "r2"
    assert float(proto["mean"]) == pytest.approx(np.concatenate([A, B]).mean() * 100, abs=1e-3)
    write_leaderboard([runs], out, method="crn")
    assert [r["label"] for r in csv.DictReader(out.open())] == ["crn"]


def _write_board(args):
    runs, out = args
    for _ in range(5):
        write_leaderboard([Path(runs)], Path(out))


def test_concurrent_leaderboard_writers_never_corrupt_the_file(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs, "r1", [make_cell(f"m{i}", 1, 0, A) for i in range(30)])
    out = tmp_path / "leaderboard.csv"
    context = multiprocessing.get_context("fork")
    with context.Pool(3) as pool:
        pool.map(_write_board, [(str(runs), str(out))] * 3)
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 30 and not list(tmp_path.glob(".*.tmp"))


# --------------------------------------------------------------------------------------------- tables
def run_cells():
    cells = [make_cell("protonet", 1, 0, A), make_cell("crn", 1, 0, A - 0.05), make_cell("maml", 1, 0, A - 0.3),
             make_cell("protonet", 5, 0, B), make_cell("crn", 5, 0, B + 0.1), make_cell("maml", 5, 0, B - 0.1)]
    return cells, summary_rows(cells)


def test_markdown_table_snapshot_with_best_bold_and_paired_ties():
    table = table_from_cells(*run_cells())
    assert render(accuracy_report(table), "markdown").splitlines()[:5] == [
        "| method | 1-shot | 5-shot | params |",
        "|---|---:|---:|---:|",
        "| protonet | **66.25 ± 10.92** | 56.25 ± 6.88 | 1,000 |",
        "| crn | 61.25 ± 10.92 | **66.25 ± 6.88** | 1,000 |",
        "| maml | 36.25 ± 10.92 | 46.25 ± 6.88 | 1,000 |",
    ]


def test_console_table_in_a_pipe_stars_the_best_and_says_so_and_a_terminal_shows_bold():
    """A console table printed to a pipe or a log has no bold: the best entry is starred and the caption names
    the star; on a terminal (colours on) the best entry is bold and the caption says bold."""
    import io

    from rich.console import Console

    report = accuracy_report(table_from_cells(*run_cells()))
    plain = render(report, "console")
    lines = plain.splitlines()
    assert any("66.25 ± 10.92 *" in line and line.lstrip("│ ").startswith("protonet") for line in lines)
    assert "*: best in column" in plain and "Bold" not in plain
    assert sum(line.count(" *") for line in lines if "±" in line) == 2  # one per column
    terminal = io.StringIO()
    from fewshot_bench.registry import FORMATS

    FORMATS.get("console")().show(report, Console(file=terminal, force_terminal=True, color_system="standard",
                                               width=200))
    shown = terminal.getvalue()
    assert "\x1b[1" in shown and "Bold: best in column" in shown and "10.92 *" not in shown


def test_latex_table_snapshot():
    cells = [make_cell("protonet", 1, 0, A), make_cell("crn[js_weight=0]", 1, 0, A - np.array([0.1, 0, 0, 0, 0, 0, 0, 0.1]))]
    latex = render(accuracy_report(table_from_cells(cells, summary_rows(cells))), "latex")
    lines = latex.splitlines()
    assert lines[:6] == [r"\begin{table}[t]", r"\centering", r"\begin{tabular}{lrr}", r"\toprule",
                         r"Method & 1-shot & Params \\", r"\midrule"]
    assert lines[6] == r"protonet & \textbf{66.25 $\pm$ 10.92} & 1,000 \\"
    assert lines[7] == r"crn{[}js\_weight=0{]} & 63.75 $\pm$ 10.92$^\dagger$ & 1,000 \\"
    assert lines[-2].startswith(r"\caption{toy, split paper. Accuracy (\%) on 3-way episodes") and r"$\sqrt{n}$" in lines[-2]


def test_leaderboard_table_marks_ci_overlap_ties():
    rows = [{"label": "a", "dataset": "d", "way": 3, "shot": 1, "mean": 60.0, "ci95": 1.0, "episodes": 600,
             "seeds": 1, "query": 15},
            {"label": "b", "dataset": "d", "way": 3, "shot": 1, "mean": 58.5, "ci95": 1.0, "episodes": 600,
             "seeds": 1, "query": 15},
            {"label": "c", "dataset": "d", "way": 3, "shot": 1, "mean": 50.0, "ci95": 1.0, "episodes": 600,
             "seeds": 1, "query": 15}]
    table = table_from_rows(rows)
    column = ("d", 3, 1, "", 15, 600, None)
    assert table.columns == [column] and table.best[column] == "a" and table.tied == {("b", column)}


def test_only_rows_of_one_protocol_are_ranked_together():
    """Rows with other queries, test episodes or episode shas of one dataset, way and shot get columns of their
    own: nothing is ranked (or marked †) against an entry scored on other episodes, and the caption says so."""
    def row(label, mean, query=15, episodes=600, sha="aaaa1111"):
        return {"label": label, "dataset": "d", "split": "paper", "way": 3, "shot": 1, "mean": mean, "ci95": 1.0,
                "episodes": episodes, "seeds": 1, "query": query, "test_episodes_sha": sha}

    rows = [row("a", 60.0), row("b", 59.5), row("c", 70.0, query=5), row("d", 69.0, episodes=40),
            row("e", 80.0, sha="bbbb2222")]
    table = table_from_rows(rows)
    assert len(table.columns) == 4
    assert sorted(table.best.values()) == ["a", "c", "d", "e"]  # each the best of its own column only
    assert {label for label, _ in table.tied} == {"b"}
    assert sorted(table.headers) == ["1-shot (15 q, 40 ep)", "1-shot (15 q, 600 ep, episodes aaaa1111)",
                                     "1-shot (15 q, 600 ep, episodes bbbb2222)", "1-shot (5 q, 600 ep)"]
    assert "only entries of one column" in table.caption and "checked by their sha" in table.caption
    unrecorded = table_from_rows([row("a", 60.0, sha=None), row("b", 50.0, sha=None)])
    assert "not checked" in unrecorded.caption and "identical for every method (checked" not in unrecorded.caption


# --------------------------------------------------------------------------------------- CLI commands
def test_table_compare_plot_and_leaderboard_commands(tmp_path, capsys):
    cells, _ = run_cells()
    folder = write_run(tmp_path / "runs", "demo", cells)
    assert main(["table", "demo", "--output-dir", str(tmp_path / "runs"), "--format", "latex"]) == 0
    assert r"\textbf{66.25" in capsys.readouterr().out
    assert main(["compare", "demo", "--baseline", "protonet", "--output-dir", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    assert "maml" in out and "worse" in out and "holm" in out
    assert main(["compare", "demo", "--baseline", "nope", "--output-dir", str(tmp_path / "runs")]) == 3
    assert "baseline 'nope' is not in this run" in capsys.readouterr().err
    assert main(["plot", "demo", "--output-dir", str(tmp_path / "runs")]) == 0
    for name in ("accuracy_vs_shots", "training_curves", "per_class_accuracy"):
        for suffix in (".png", ".pdf"):
            path = folder / "figures" / f"{name}{suffix}"
            assert path.is_file() and path.stat().st_size > 5000, path
    board = tmp_path / "lb.csv"
    assert main(["leaderboard", str(tmp_path / "runs"), "--out", str(board)]) == 0
    assert main(["table", str(board), "--format", "markdown"]) == 0
    assert "| crn |" in capsys.readouterr().out
    assert main(["table", "missing-run", "--output-dir", str(tmp_path / "runs")]) == 3


# ------------------------------------------------------------------------------------------ output formats
HTML_FORMAT = '''
from fewshot_bench.registry import register_format
from fewshot_bench.report import BEST, Report, ReportFormat


@register_format("html")
class HtmlFormat(ReportFormat):
    """An HTML table (a format plugin in one file)."""

    def render(self, report: Report) -> str:
        head = "".join(f"<th>{c.name}</th>" for c in report.columns)
        body = "".join("<tr>" + "".join(
            "<td>—</td>" if v is None else f"<td><b>{v.text}</b></td>" if v.mark == BEST else f"<td>{v.text}</td>"
            for v in report.values(row)) + "</tr>" for row in report.rows)
        return f"<table><tr>{head}</tr>{body}</table><p>{report.caption}</p>\\n"
'''


def test_every_report_is_data_in_json_and_numeric_csv(tmp_path, capsys):
    cells, _ = run_cells()
    write_run(tmp_path / "runs", "demo", cells)
    where = ["--output-dir", str(tmp_path / "runs")]
    assert main(["table", "demo", *where, "--format", "json"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert table["kind"] == "accuracy-table" and table["columns"] == ["method", "1-shot", "5-shot", "params"]
    assert all(row["params"] == 1000 for row in table["rows"])
    protonet = next(row for row in table["rows"] if row["method"] == "protonet")
    assert protonet["1-shot"]["mean"] == pytest.approx(66.25) and protonet["1-shot"]["mark"] == "best"
    assert protonet["1-shot"]["seed_ci95"] is None  # one seed: no interval over seeds (NaN is not JSON)
    assert main(["table", "demo", *where, "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert float(rows[0]["1-shot mean"]) == pytest.approx(66.25) and rows[0]["1-shot mark"] == "best"
    assert float(rows[0]["1-shot ci95"]) > 0 and "±" not in "".join(rows[0].values())
    # Every format says what was tested: CSV in leading columns, the others in the caption.
    tested = cells[0]["dataset"], cells[0]["split"]
    assert (rows[0]["dataset"], rows[0]["split"]) == tested and list(rows[0])[:2] == ["dataset", "split"]
    for name in ("markdown", "latex", "console", "json"):
        assert main(["table", "demo", *where, "--format", name]) == 0
        assert f"{tested[0]}, split {tested[1]}. Accuracy" in " ".join(capsys.readouterr().out.split())
    assert main(["compare", "demo", "--baseline", "protonet", *where, "--format", "json"]) == 0
    comparison = json.loads(capsys.readouterr().out)
    maml = next(row for row in comparison["rows"] if row["method"] == "maml" and row["setting"]["shot"] == 1)
    assert maml["verdict"] == "worse" and maml["Δ accuracy (points)"] == pytest.approx(-30.0)
    assert main(["list", "formats", "--format", "json"]) == 0
    names = {row["name"] for row in json.loads(capsys.readouterr().out)["rows"]}
    assert {"console", "markdown", "latex", "csv", "json"} <= names
    assert main(["table", "demo", *where, "--format", "yaml"]) == 3
    assert "unknown output format 'yaml'; available: console, csv, json, latex, markdown" in capsys.readouterr().err


def test_a_new_output_format_is_one_plugin_file(tmp_path, capsys):
    cells, _ = run_cells()
    write_run(tmp_path / "runs", "demo", cells)
    plugin = tmp_path / "html_format.py"
    plugin.write_text(HTML_FORMAT)
    assert main(["table", "demo", "--output-dir", str(tmp_path / "runs"), "--format", "html",
                 "--plugin", str(plugin)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("<table><tr><th>method</th><th>1-shot</th>") and "<b>66.25 ± 10.92</b>" in out
    assert main(["compare", "demo", "--baseline", "protonet", "--output-dir", str(tmp_path / "runs"), "--format",
                 "html", "--plugin", str(plugin)]) == 0
    assert "<td>worse</td>" in capsys.readouterr().out


# --------------------------------------------------------------------------------------- results as data
def test_runs_and_episodes_load_as_tidy_dataframes(tmp_path):
    from fewshot_bench.results import load_episodes, load_runs

    cells, _ = run_cells()
    cells = [{**cell, "settings": {"lr": 0.001, "way": 3}, "settings_hash": "abc", "options": {"k": 1}}
             for cell in cells]
    write_run(tmp_path / "runs", "demo", cells)
    frame = load_runs(tmp_path / "runs")
    assert len(frame) == 6 and set(frame["run_id"]) == {"demo"}
    assert {"config.lr", "option.k", "env.torch", "settings_hash", "mean", "episodes"} <= set(frame.columns)
    assert str(frame["shot"].dtype) == "Int64" and frame["mean"].dtype == float
    table = frame.pivot_table(index="label", columns="shot", values="mean")
    assert table.loc["protonet", 1] == pytest.approx(66.25)
    episodes = load_episodes(tmp_path / "runs")
    assert len(episodes) == sum(len(cell["accuracies"]) for cell in cells)
    one = episodes[(episodes["label"] == "crn") & (episodes["shot"] == 5)]
    assert list(one["episode"]) == list(range(len(B))) and one["accuracy"].tolist() == pytest.approx(list(B + 0.1))


def test_the_leaderboard_and_run_summaries_share_one_aggregator(tmp_path):
    from fewshot_bench.results.store import RunStore

    cells = [make_cell("protonet", 1, seed, A + 0.02 * seed, run_id="demo") for seed in (0, 1, 2)]
    folder = write_run(tmp_path / "runs", "demo", cells)
    summary = RunStore(folder).write_tables(RunStore(folder).load_cells())
    board = tmp_path / "lb.csv"
    rows = write_leaderboard([tmp_path / "runs"], board)
    first = board.read_bytes()
    write_leaderboard([tmp_path / "runs"], board)
    assert board.read_bytes() == first  # rebuilt byte for byte
    for key in ("mean", "ci95", "std", "episodes", "seeds", "seed_std", "seed_ci95"):
        assert rows[0][key] == summary[0][key], key
    document = json.loads((folder / "summary.json").read_text())
    setting = document["settings"][0]
    assert setting["seeds"] == 3 and setting["seed_ci95"] == pytest.approx(summary[0]["seed_ci95"])
    assert "t(0.975" in document["intervals"]["seed_ci95"] and "settings_hash" in setting


def test_feature_maps_show_the_class_maps_of_every_relation_style_variant(tmp_path, capsys):
    from conftest import tiny_run_flags
    from fewshot_bench.cli.main import main
    from fewshot_bench.config import merge
    from fewshot_bench.engine.runner import run
    from fewshot_bench.reporting.feature_maps import class_map_rows

    flags = tiny_run_flags(tmp_path, methods=["crn", "crn[js_weight=0]", "protonet"], shots=[2], train_episodes=2)
    run(merge(None, flags))
    folder = tmp_path / "runs" / "tiny"
    names, shot, seed, rows = class_map_rows(folder, load_cells([folder]))
    assert (shot, seed) == (2, 0) and len(names) == 3
    assert [label for label, _, _ in rows] == ["crn", "crn[js_weight=0]"]  # ProtoNet has no class maps
    for _, maps, js in rows:
        assert maps.shape[0] == 3 and maps.dim() == 4 and 0.0 <= js <= 1.0
    assert rows[0][1].abs().sum() != rows[1][1].abs().sum()  # each variant's own trained weights
    assert main(["plot", str(folder), "--feature-maps", "--out", str(tmp_path / "fig")]) == 0
    assert (tmp_path / "fig" / "feature_maps.png").stat().st_size > 1000
    only_protonet = tiny_run_flags(tmp_path, methods=["protonet"], shots=[1], train_episodes=2, run_id="p")
    run(merge(None, only_protonet))
    capsys.readouterr()
    assert main(["plot", str(tmp_path / "runs" / "p"), "--feature-maps"]) == 3
    err = capsys.readouterr().err
    assert "no finished CRN or Relation Network cell" in err and err.count("\n") == 1


def test_a_run_table_says_its_episodes_were_checked(tmp_path):
    """A fresh run's table: its cells carry the episodes' sha, so the caption can say they were checked."""
    from conftest import tiny_run_flags
    from fewshot_bench.config import RunConfig
    from fewshot_bench.engine.runner import run

    result = run(RunConfig(**tiny_run_flags(tmp_path, shots=[1], train_episodes=2, test_episodes=3,
                                            methods=["protonet", "relationnet"])))
    cells = result.store.load_cells()
    table = table_from_cells(cells, summary_rows(cells))
    assert len(table.columns) == 1 and "identical for every method (checked by their sha)" in table.caption


def test_figures_draw_a_one_point_loss_curve_and_the_seed_interval_with_several_seeds(tmp_path, monkeypatch):
    from fewshot_bench.reporting import plots

    figures = {}
    monkeypatch.setattr(plots, "save_figure", lambda fig, out, name: figures.setdefault(name, fig) and [])
    # Training episodes ≤ the log interval: one logged loss. Before, markers every 20 % of a 1-point curve
    # drew nothing: empty axes.
    cells = [{"label": "protonet", "shot": 1, "loss_curve": {"episode": [4], "loss": [1.1]},
              "val_curve": {"episode": [], "accuracy": []}}]
    plots.training_curves(cells, tmp_path)
    (line,) = figures["training_curves"].axes[0].lines
    assert line.get_marker() not in (None, "None", "") and line.get_markevery() is None
    assert list(line.get_xdata()) == [4]
    ticks = figures["training_curves"].axes[0].get_xticks()
    assert all(float(t).is_integer() for t in ticks)  # not 3.85 … 4.15 around the one point
    rows = [{"label": "protonet", "dataset": "toy", "way": 3, "shot": shot, "mean": 60.0, "ci95": 1.5,
             "seed_ci95": 9.0, "seeds": 3} for shot in (1, 5)]
    plots.accuracy_vs_shots(rows, tmp_path)
    ax = figures["accuracy_vs_shots"].axes[0]
    bars = ax.containers[0].lines[2][0].get_segments()
    assert [round(float(b[1][1] - b[0][1]) / 2, 6) for b in bars] == [9.0, 9.0]  # the seeds', not the episodes'
    assert "CI over seeds" in ax.get_title()


def test_per_class_bars_carry_the_episode_interval_or_the_seed_interval(tmp_path, monkeypatch):
    from fewshot_bench.reporting import plots

    figures = {}
    monkeypatch.setattr(plots, "save_figure", lambda fig, out, name: figures.setdefault(name, fig) and [])

    def half_widths(ax):
        (container,) = [c for c in ax.containers if getattr(c, "errorbar", None)]  # one variant's bars
        return [round(float(s[1][1] - s[0][1]) / 2, 6) for s in container.errorbar.lines[2][0].get_segments()]

    one = {"label": "protonet", "shot": 1, "class_accuracy": {"angry": 0.5, "fear": 0.7},
           "class_ci95": {"angry": 0.04, "fear": 0.06}}
    plots.per_class_accuracy([one], tmp_path)
    ax = figures.pop("per_class_accuracy").axes[0]
    assert [round(b.get_height(), 6) for b in ax.patches] == [50.0, 70.0]
    assert half_widths(ax) == [4.0, 6.0]
    seeds = [dict(one, seed=s, class_accuracy={"angry": a, "fear": 0.7}) for s, a in enumerate((0.4, 0.6))]
    plots.per_class_accuracy(seeds, tmp_path)
    fig = figures.pop("per_class_accuracy")
    assert half_widths(fig.axes[0])[0] == round(1.96 * 10 / np.sqrt(2), 6)  # std of 40 and 60 is 10
    assert "over seeds" in fig._suptitle.get_text()


def test_a_long_variant_label_is_broken_into_legend_lines_and_the_layout_fits(tmp_path):
    """A checkpoint's label carries its path: one unbroken legend line is wider than the figure and matplotlib
    gives up on its layout ("Tight layout not applied"). It is broken after commas and slashes instead."""
    import warnings

    from fewshot_bench.reporting import plots

    label = "crn[weights=../CSRN/weights/fer2013/CRN_fer2013_feature_encoder_model_best.pth,weights_layout=csrn]"
    cell = {"label": label, "shot": 1, "class_accuracy": {"angry": 0.35, "disgust": 0.3, "fear": 0.33},
            "class_ci95": {"angry": 0.02, "disgust": 0.03, "fear": 0.02}}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert plots.per_class_accuracy([cell], tmp_path)
    lines = plots.legend_label(label).splitlines()
    assert len(lines) > 1 and all(len(line) <= plots.LEGEND_WIDTH for line in lines)
    assert "".join(lines) == label and plots.legend_label("protonet") == "protonet"


def test_the_evaluate_stage_gives_each_class_its_interval_over_episodes():
    from types import SimpleNamespace

    from fewshot_bench.stages.evaluate import per_class_accuracy

    protocol = SimpleNamespace(test_ids=[4, 5], class_names={4: "angry", 5: "fear"}, query=2)
    class_ids = np.array([[4, 5], [5, 4], [4, 5]])
    correct = np.array([[2, 1], [0, 2], [1, 1]])  # angry: 2/2, 2/2, 1/2; fear: 1/2, 0/2, 1/2
    accuracy, interval = per_class_accuracy(correct, class_ids, protocol)
    assert accuracy == {"angry": 5 / 6, "fear": 2 / 6}
    assert interval["angry"] == round(1.96 * np.std([1, 1, 0.5]) / np.sqrt(3), 6)
    assert interval["fear"] == round(1.96 * np.std([0.5, 0, 0.5]) / np.sqrt(3), 6)


def test_a_per_class_figure_of_more_classes_than_anyone_can_read_is_skipped_with_a_line(tmp_path, caplog):
    from fewshot_bench.reporting import plots

    many = {f"character{i:04d}": 0.5 for i in range(plots.MAX_CLASSES_PER_FIGURE + 1)}
    cells = [{"label": "protonet", "shot": 1, "class_accuracy": many}]
    with caplog.at_level("INFO", logger="fewshot_bench"):
        assert plots.per_class_accuracy(cells, tmp_path) == []
    assert "per-class figure not drawn: 61 test classes" in caplog.text and not list(tmp_path.iterdir())


def test_latex_keeps_a_flags_two_hyphens():
    from fewshot_bench.formats.latex import latex_escape

    # "--group-separation" would otherwise be set with an en dash in the caption.
    assert latex_escape("--group-separation group") == "-{}-group-separation group"
