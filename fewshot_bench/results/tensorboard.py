"""TensorBoard logs of a run (``--tensorboard DIR``, the ``tensorboard`` extra): one event folder per cell with
its training loss, its validation accuracy, its accuracy-versus-budget points and its test accuracy, written from
the cell's record when the cell ends, so a resumed or a worker's cell logs exactly what it stored.

    bench run --methods protonet,crn --tensorboard runs-tb && tensorboard --logdir runs-tb
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fewshot_bench.errors import ConfigError
from fewshot_bench.stats import ci95

INSTALL = "pip install 'fewshot-bench[tensorboard]' (or pip install tensorboard)"


def check_available() -> None:
    """Refuse ``--tensorboard`` before anything runs when the writer cannot be imported."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        raise ConfigError(f"--tensorboard needs the tensorboard package: {INSTALL}") from None


def write_cell(folder: Path, run_id: str, record: dict[str, Any]) -> Path:
    """Write ``record``'s curves and result under ``folder/<run id>/<cell>``; the event folder."""
    from torch.utils.tensorboard import SummaryWriter

    target = Path(folder) / run_id / record["cell"]
    writer = SummaryWriter(log_dir=str(target))
    try:
        curve = record.get("loss_curve") or {}
        for episode, loss in zip(curve.get("episode", []), curve.get("loss", [])):
            writer.add_scalar("train/loss", float(loss), int(episode))
        validation = record.get("val_curve") or {}
        for episode, accuracy in zip(validation.get("episode", []), validation.get("accuracy", [])):
            writer.add_scalar("validation/accuracy", float(accuracy), int(episode))
        budget = record.get("budget_curve") or {}
        for episode, mean in zip(budget.get("episode", []), budget.get("mean", [])):
            writer.add_scalar("test/accuracy_at_budget", float(mean), int(episode))
        trained = int(record.get("train_episodes") or 0)
        writer.add_scalar("test/accuracy", float(record["mean"]), trained)
        accuracies = [100.0 * a for a in record.get("accuracies", [])]
        if accuracies:
            writer.add_scalar("test/ci95", float(ci95(np.asarray(accuracies))), trained)
        writer.add_text("cell", f"{record['label']} {record['shot']}-shot seed {record['seed']}, "
                                f"{record.get('dataset')} split {record.get('split')}, code {record.get('code_version')}")
    finally:
        writer.close()
    return target
