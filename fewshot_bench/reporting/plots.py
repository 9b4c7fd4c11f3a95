"""Figures of a run (matplotlib, PNG and PDF): accuracy vs shots, training curves, per-class accuracy.

Colours are the Okabe–Ito palette (colour-blind safe), every line also has its own marker, axes carry
units, and each figure states the episodes and CI it shows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
from matplotlib.ticker import MaxNLocator

from fewshot_bench.console import logger
from fewshot_bench.stats import ci95

# A legend entry wider than this many characters is broken into lines: a variant label can carry a checkpoint's
# path, and one unbroken line would be wider than the figure (matplotlib then gives up on its layout).
LEGEND_WIDTH = 40


def legend_label(label: str) -> str:
    """A variant label for a legend, broken after its commas and slashes into lines of at most ``LEGEND_WIDTH``."""
    import textwrap

    if len(label) <= LEGEND_WIDTH:
        return label
    spaced = label.replace(",", ", ").replace("/", "/ ")
    lines = textwrap.wrap(spaced, LEGEND_WIDTH, break_long_words=True, break_on_hyphens=False)
    return "\n".join(line.replace(", ", ",").replace("/ ", "/") for line in lines)

OKABE_ITO = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]


def pyplot():
    """matplotlib's pyplot on the Agg backend (no display needed) with the harness's figure style."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 10, "axes.spines.top": False, "axes.spines.right": False})
    return plt


def save_figure(fig, out: Path, name: str) -> list[Path]:
    """Write ``fig`` as ``name``.png and .pdf into ``out``, then close it (figures hold memory until closed)."""
    paths = []
    for suffix in (".png", ".pdf"):
        path = out / f"{name}{suffix}"
        fig.savefig(path, dpi=150, bbox_inches="tight")
        paths.append(path)
    pyplot().close(fig)
    return paths


def _over_seeds(row: dict[str, Any]) -> bool:
    """Whether a row's interval is the one over seeds: with several seeds, the seeds vary more than one seed's
    episodes do, and the episodes' interval would understate the uncertainty."""
    return row.get("seeds", 1) > 1 and np.isfinite(row.get("seed_ci95", float("nan")))


def _interval(row: dict[str, Any]) -> float:
    return row["seed_ci95"] if _over_seeds(row) else row["ci95"]


def accuracy_vs_shots(rows: Sequence[dict[str, Any]], out: Path) -> list[Path]:
    plt = pyplot()
    labels = list(dict.fromkeys(r["label"] for r in rows))
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for i, label in enumerate(labels):
        mine = sorted((r for r in rows if r["label"] == label), key=lambda r: r["shot"])
        ax.errorbar([r["shot"] for r in mine], [r["mean"] for r in mine], yerr=[_interval(r) for r in mine],
                    label=legend_label(label), color=OKABE_ITO[i % len(OKABE_ITO)], marker=MARKERS[i % len(MARKERS)],
                    capsize=3, linewidth=1.5)
    way = rows[0]["way"]
    ax.axhline(100 / way, color="grey", linestyle=":", linewidth=1, label=f"chance ({100 / way:.1f} %)")
    ax.set_xlabel("shots per class (K)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_xticks(sorted({r["shot"] for r in rows}))
    over = {"seeds" if _over_seeds(r) else "test episodes" for r in rows}
    ax.set_title(f"{rows[0]['dataset']}: {way}-way accuracy, mean ± 95% CI over {' or '.join(sorted(over))}",
                 fontsize=10)
    ax.legend(fontsize=8, frameon=False, loc="best")
    return save_figure(fig, out, "accuracy_vs_shots")


def training_curves(cells: Sequence[dict[str, Any]], out: Path) -> list[Path]:
    plt = pyplot()
    shots = sorted({c["shot"] for c in cells})
    has_val = any(c["val_curve"]["episode"] for c in cells)
    fig, axes = plt.subplots(1 + has_val, len(shots), figsize=(4.2 * len(shots), 3.4 * (1 + has_val)), squeeze=False)
    labels = list(dict.fromkeys(c["label"] for c in cells))
    for col, shot in enumerate(shots):
        for i, label in enumerate(labels):
            mine = [c for c in cells if c["label"] == label and c["shot"] == shot]
            if not mine:
                continue
            episodes = mine[0]["loss_curve"]["episode"]
            losses = np.mean([c["loss_curve"]["loss"] for c in mine if len(c["loss_curve"]["loss"]) == len(episodes)], 0)
            # A marker on every point of a short curve: one logged loss (training episodes ≤ the log interval)
            # is a point, which a line alone does not draw.
            style = dict(color=OKABE_ITO[i % len(OKABE_ITO)], marker=MARKERS[i % len(MARKERS)],
                         markevery=0.2 if len(episodes) >= 5 else None)
            axes[0][col].plot(episodes, losses, label=legend_label(label), **style)
            if has_val and mine[0]["val_curve"]["episode"]:
                axes[1][col].plot(mine[0]["val_curve"]["episode"], np.array(mine[0]["val_curve"]["accuracy"]) * 100,
                                  label=legend_label(label), **style)
        axes[0][col].set_yscale("log")
        for row in axes[:, col]:  # episodes are whole numbers, also when one logged loss is all there is
            row.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        axes[0][col].set_title(f"{shot}-shot", fontsize=10)
        axes[0][col].set_xlabel("training episodes")
        axes[0][col].set_ylabel("training loss (log scale, mean over seeds)")
        if has_val:
            axes[1][col].set_xlabel("training episodes")
            axes[1][col].set_ylabel("validation accuracy (%)")
    axes[0][-1].legend(fontsize=8, frameon=False)
    fig.suptitle("Training curves (each method's own loss: CE, NLL or MSE + terms)", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, out, "training_curves")


def _class_bars(cells: Sequence[dict[str, Any]], classes: Sequence[str]) -> tuple[list[float], list[float], str]:
    """Per class: mean accuracy (%) over ``cells`` (one variant and shot), its 95% CI and over what. Several seeds:
    1.96 · std / √seeds of the seeds' class accuracies; one seed: the class's interval over test episodes
    (``class_ci95``), or none for a record older than it."""
    values = np.array([[c["class_accuracy"].get(name, np.nan) for name in classes] for c in cells]) * 100
    if len(cells) > 1:
        return list(values.mean(0)), list(1.96 * values.std(0) / np.sqrt(len(cells))), "seeds"
    interval = cells[0].get("class_ci95")
    if not interval:
        return list(values[0]), [np.nan] * len(classes), "none"
    return list(values[0]), [interval.get(name, np.nan) * 100 for name in classes], "test episodes"


# More test classes than this (Omniglot's 1692) make a bar chart nobody can read, drawn in minutes: not drawn.
MAX_CLASSES_PER_FIGURE = 60


def per_class_accuracy(cells: Sequence[dict[str, Any]], out: Path) -> list[Path]:
    """Accuracy on each test class's queries, per shot; none when there are more than ``MAX_CLASSES_PER_FIGURE``
    classes (the per-class accuracies stay in the cell records)."""
    classes = sorted({name for c in cells for name in c["class_accuracy"]})
    if len(classes) > MAX_CLASSES_PER_FIGURE:
        logger.info(f"per-class figure not drawn: {len(classes)} test classes (more than {MAX_CLASSES_PER_FIGURE}); "
                    "each class's accuracy and interval are in the cell records (class_accuracy, class_ci95)")
        return []
    plt = pyplot()
    shots = sorted({c["shot"] for c in cells})
    labels = list(dict.fromkeys(c["label"] for c in cells))
    fig, axes = plt.subplots(1, len(shots), figsize=(max(4.5, 1.2 * len(classes) * len(labels) / 2) * len(shots) / 1.5,
                                                     3.6), squeeze=False)
    width = 0.8 / len(labels)
    over: set[str] = set()
    for col, shot in enumerate(shots):
        ax = axes[0][col]
        for i, label in enumerate(labels):
            mine = [c for c in cells if c["label"] == label and c["shot"] == shot]
            if not mine:
                continue
            values, errors, kind = _class_bars(mine, classes)
            over.add(kind)
            ax.bar(np.arange(len(classes)) + (i - (len(labels) - 1) / 2) * width, values, width, label=legend_label(label),
                   yerr=None if kind == "none" else errors, capsize=2, error_kw={"linewidth": 0.8},
                   color=OKABE_ITO[i % len(OKABE_ITO)], hatch=["", "//", "..", "xx", "\\\\", "--", "++", "oo"][i % 8],
                   edgecolor="white", linewidth=0.5)
        ax.set_xticks(np.arange(len(classes)), classes)
        ax.set_ylabel("accuracy on the class's queries (%)")
        ax.set_title(f"per test class, {shot}-shot", fontsize=10)
        ax.set_ylim(0, 100)
    axes[0][-1].legend(fontsize=8, frameon=False, loc="upper right")
    shown = sorted(over - {"none"})
    note = f"mean ± 95% CI over {' or '.join(shown)}" if shown else "no interval: records older than class_ci95"
    if "none" in over and shown:
        note += "; bars without one: records older than class_ci95"
    fig.suptitle(f"Per-class accuracy ({note})", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, out, "per_class_accuracy")


def accuracy_vs_budget(cells: Sequence[dict[str, Any]], out: Path) -> list[Path]:
    """Test accuracy against training episodes for the cells with a ``budget_curve`` (its points, then the cell's
    own result at its full budget). One seed: the episodes' 95% CI; several: the seeds' (1.96 · std / √seeds)."""
    curved = [c for c in cells if c.get("budget_curve")]
    if not curved:
        return []
    plt = pyplot()
    shots = sorted({c["shot"] for c in curved})
    labels = list(dict.fromkeys(c["label"] for c in curved))
    fig, axes = plt.subplots(1, len(shots), figsize=(4.6 * len(shots), 3.6), squeeze=False)
    seeds = 1
    for col, shot in enumerate(shots):
        ax = axes[0][col]
        for i, label in enumerate(labels):
            mine = [c for c in curved if c["label"] == label and c["shot"] == shot]
            if not mine:
                continue
            budgets = [*mine[0]["budget_curve"]["episode"], mine[0]["train_episodes"]]
            mine = [c for c in mine if [*c["budget_curve"]["episode"], c["train_episodes"]] == budgets]
            means = np.array([[*c["budget_curve"]["mean"], c["mean"]] for c in mine])
            seeds = max(seeds, len(mine))
            if len(mine) > 1:
                error = 1.96 * means.std(axis=0) / np.sqrt(len(mine))
            else:
                error = np.array([*mine[0]["budget_curve"]["ci95"], 100 * ci95(mine[0]["accuracies"])])
            ax.errorbar(budgets, means.mean(axis=0), yerr=error, label=legend_label(label), color=OKABE_ITO[i % len(OKABE_ITO)],
                        marker=MARKERS[i % len(MARKERS)], capsize=3, linewidth=1.5)
        way = curved[0]["way"]
        ax.axhline(100 / way, color="grey", linestyle=":", linewidth=1, label=f"chance ({100 / way:.1f} %)")
        ax.set_xscale("log")
        ticks = sorted({b for c in curved if c["shot"] == shot for b in [*c["budget_curve"]["episode"], c["train_episodes"]]})
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.minorticks_off()
        ax.set_xlabel("training episodes (log scale)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"{shot}-shot", fontsize=10)
    axes[0][-1].legend(fontsize=8, frameon=False, loc="best")
    interval = "95% CI over test episodes" if seeds == 1 else "95% CI over seeds"
    fig.suptitle(f"{curved[0]['dataset']}: accuracy versus training budget (same test episodes at every point; "
                 f"mean ± {interval})", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, out, "accuracy_vs_budget")


def plot_run(cells: Sequence[dict[str, Any]], rows: Sequence[dict[str, Any]], out: Path) -> list[Path]:
    """Write every figure of a run into ``out``; returns the written files."""
    out.mkdir(parents=True, exist_ok=True)
    return [*accuracy_vs_shots(rows, out), *training_curves(cells, out), *per_class_accuracy(cells, out),
            *accuracy_vs_budget(cells, out)]
