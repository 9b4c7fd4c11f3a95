"""The GPU check (benchmarks/gpu_check.sh) dry-run on the CPU with tiny budgets and tiny data, so the one
prepared GPU call never rots: every stage that a GPU call runs (GPU tests, the FER2013 grid, the modern
baselines, the context runs, the budget curve, throughput against the peers) runs here, end to end, through
the same script, and each stage's exit is checked."""

import os
import subprocess
import sys

import numpy as np

from conftest import REPO


def _tiny_data(folder, tmp_path):
    from fewshot_bench.datasets.fer2013 import CLASS_NAMES as FER
    from fewshot_bench.datasets.omniglot import _read_folders
    from fewshot_bench.datasets.synthetic_fer import CLASS_NAMES as SYNTHETIC, generate
    from test_datasets import write_omniglot

    (folder / "data").mkdir(parents=True)
    images, labels, _ = generate(total=400, size=48, identities=20, seed=2)
    np.savez(folder / "data" / "fer2013-gpu.npz", images=images,
             labels=np.array([FER.index(SYNTHETIC[label]) for label in labels]))
    write_omniglot(tmp_path / "omniglot")
    arrays = _read_folders(tmp_path / "omniglot", 28)
    # The fixture draws one shape per character number in every alphabet: distinct strokes, or the run refuses
    # identical images under a training and a test class (as it should).
    arrays["images"] = np.random.default_rng(0).integers(0, 256, arrays["images"].shape, dtype=np.uint8)
    np.savez(folder / "data" / "omniglot28.npz", **arrays)


TINY = "--shots 1 --query 2 --train-query 2 --train-episodes 2 --test-episodes 3 --image-size 16 --seeds 0"


def test_the_gpu_script_dry_runs_on_the_cpu(tmp_path):
    gpu = tmp_path / "gpu"
    _tiny_data(gpu, tmp_path)
    out = tmp_path / "out"
    env = {**os.environ, "DEVICE": "cpu", "INSTALL": "0", "PY": sys.executable, "GPU": str(gpu),
           "PROJ": str(tmp_path / "proj"), "RUNS": str(tmp_path / "runs"), "OUT": str(out),
           "STAGES": "tests grid modern context throughput", "JOBS": "1", "MODERN_JOBS": "1", "GRID_ARGS": "--tiny",
           "MODERN_ARGS": f"--methods simpleshot --pretrain-epochs 1 --context none {TINY}",
           "CONTEXT_ARGS": f"--methods protonet --ceiling-epochs 1 {TINY}", "CONTEXT_S": "300",
           "CURVE_ARGS": "--split lake --way 3 --train-way 3 --query 1 --train-query 1 --shots 1 --train-episodes 4 "
                         "--budget-curve 2 --test-episodes 3 --context none",
           "THROUGHPUT_ARGS": "--methods protonet --train 2 --test 2", "MAML_BATCH_ARGS": "--train 8 --test 2",
           "OMP_NUM_THREADS": "1"}
    result = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh")], env=env, capture_output=True,
                            text=True, timeout=900)
    logs = "".join(f"\n--- {p.name}\n{p.read_text()[-2000:]}" for p in sorted(out.glob("*.log")))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:] + logs
    summary = (out / "summary.txt").read_text()
    for stage in ("grid", "modern", "context table", "budget curve"):
        assert f"{stage} exit 0" in summary, summary + logs
    assert "checkpoint skipped" in (out / "context.log").read_text()  # no CSRN checkpoint in the tiny data
    assert (out / "runs.tgz").stat().st_size > 0
    for run in ("fer2013-grid-gpu", "fer2013-modern-gpu", "fer2013-context-gpu", "omniglot-curve-gpu"):
        assert list((tmp_path / "runs" / run / "cells").glob("*.json")), run
    throughput = (out / "throughput.log").read_text()
    assert "protonet" in throughput and "meta-batch 4" in throughput
    assert any(line.split()[1:3] == ["maml", "ours"] for line in throughput.splitlines() if line.strip()), throughput
