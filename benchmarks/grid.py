"""Wall time of the FER2013 paper grid: 5 methods + the 2 CRN ablations × shots × seeds, one `bench run`.

The GPU target (one H100/H200): the full grid (configs/fer2013-grid.yaml: shots 1, 3 and 5, 3 seeds, 3000
training and 600 test episodes per cell, 63 cells) in under 8 minutes. The same script runs on a CPU at a
reduced size.

    .venv/bin/python benchmarks/grid.py --data ../shared/data/fer2013.npz --jobs 4          # full grid
    .venv/bin/python benchmarks/grid.py --data ../shared/data/fer2013.npz --reduced --jobs 2
    .venv/bin/python benchmarks/grid.py --make-subset .gpu/data/fer2013-gpu.npz --data ../shared/data/fer2013.npz \
        --cap 3000 --uncapped angry,disgust,fear

``--make-subset`` writes FER2013 with at most ``--cap`` images per class except the ``--uncapped`` ones (a
seeded random choice), small enough for the 64 MiB a device machine accepts with the code: the paper
split's three test classes complete and 3000 of each training class make 49 MiB. Prints the per-cell
training and evaluation speed and the total wall time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
TARGET_SECONDS = 8 * 60


def make_subset(source: Path, out: Path, cap: int, uncapped: list[str], seed: int = 0) -> None:
    """FER2013 with at most ``cap`` images per class (chosen at random, seeded) except the ``uncapped``
    classes, which keep every image, as an array file."""
    with np.load(source, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    names = [str(n) for n in arrays["class_names"]]
    unknown = sorted(set(uncapped) - set(names))
    if unknown:
        raise SystemExit(f"--uncapped names unknown classes {unknown}; classes: {', '.join(names)}")
    rng = np.random.default_rng(seed)
    keep = np.sort(np.concatenate([
        rng.permutation(np.flatnonzero(arrays["labels"] == c))[:None if names[c] in uncapped else cap]
        for c in np.unique(arrays["labels"])]))
    subset = {k: (v[keep] if v.ndim and len(v) == len(arrays["labels"]) else v) for k, v in arrays.items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **subset)
    print(f"wrote {out}: {len(keep)} images, {out.stat().st_size / 2**20:.1f} MiB")


def report(folder: Path) -> list[dict]:
    """Print each finished cell's training and evaluation speed (and how its steps ran); return the cells."""
    cells = [json.loads(p.read_text()) for p in sorted((folder / "cells").glob("*.json"))]
    print(f"\n{'cell':<40} {'device':<8} {'train ep/s':>10} {'eval ep/s':>10}  steps (train / eval)")
    for cell in cells:
        print(f"{cell['label'] + ' ' + str(cell['shot']) + '-shot seed ' + str(cell['seed']):<40} {cell['device']:<8} "
              f"{cell['train_episodes'] / cell['train_seconds'] if cell['train_seconds'] else 0:>10.1f} "
              f"{len(cell['accuracies']) / cell['eval_seconds']:>10.1f}  "
              f"{cell.get('train_steps', '?')} / {cell.get('eval_steps', '?')}")
    if cells:
        busy = sum(c["train_seconds"] + c["eval_seconds"] for c in cells)
        episodes = sum(c["train_episodes"] + len(c["accuracies"]) for c in cells)
        print(f"{len(cells)} cells, {episodes} episodes, {busy:.0f} s of cell time "
              f"({episodes / busy:.1f} episodes/s per worker)")
    return cells


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", help="FER2013 (.npz, fer2013.csv or Kaggle folders)")
    parser.add_argument("--reduced", action="store_true", help="CPU size: 1 seed, shots 1 and 5, 20 training / "
                        "50 test episodes")
    parser.add_argument("--tiny", action="store_true", help="dry-run size (protonet and MAML, 1 shot, 2 training / 3 "
                                                            "test episodes, 16 px): checks the path, measures nothing")
    parser.add_argument("--jobs", type=int, default=1, help="cells run concurrently (bench run --jobs)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--output-dir", default=str(REPO / "results" / "runs"))
    parser.add_argument("--run-id", help="run folder name (default: grid-<size>-<time>); an existing one resumes")
    parser.add_argument("--make-subset", type=Path, help="write a per-class capped copy of --data here and stop")
    parser.add_argument("--cap", type=int, default=2500)
    parser.add_argument("--uncapped", default="", help="with --make-subset: classes kept whole (comma-separated)")
    parser.add_argument("--report", type=Path, help="print the speed table of an existing run folder and stop")
    args = parser.parse_args()
    if args.make_subset:
        if not args.data:
            parser.error("--make-subset needs --data")
        make_subset(Path(args.data), args.make_subset, args.cap, [c for c in args.uncapped.split(",") if c])
        return 0
    if args.report:
        report(args.report)
        return 0
    if not args.data:
        parser.error("--data is required")

    from fewshot_bench.cli.main import main as bench

    size = (["--seeds", "0", "--shots", "1,5", "--train-episodes", "20", "--test-episodes", "50"] if args.reduced
            else [])
    if args.tiny:  # the GPU script's CPU dry run: every step of the path, seconds of work
        size = ["--methods", "protonet,maml", "--seeds", "0", "--shots", "1", "--query", "2", "--train-query", "2",
                "--train-episodes", "2", "--test-episodes", "3", "--image-size", "16", "--context", "none"]
    run_id = args.run_id or f"grid-{'tiny' if args.tiny else 'reduced' if args.reduced else 'full'}-{time.strftime('%Y%m%d-%H%M%S')}"
    # Checkpoints every 500 episodes: a resumable cell without writing one every 100 (the default).
    command = ["run", "--config", str(REPO / "configs" / "fer2013-grid.yaml"), "--data-root", args.data,
               "--jobs", str(args.jobs), "--device", args.device, "--output-dir", args.output_dir,
               "--run-id", run_id, "--checkpoint-interval", "500", *size]
    print("bench " + " ".join(command), flush=True)
    start = time.perf_counter()
    status = bench(command)
    wall = time.perf_counter() - start
    if status != 0:
        return status
    cells = report(Path(args.output_dir) / run_id)
    episodes = sum(c["train_episodes"] + len(c["accuracies"]) for c in cells)
    print(f"\n{len(cells)} cells, {episodes} episodes in {wall / 60:.1f} min wall ({episodes / wall:.1f} episodes/s); "
          f"target for the full grid on one GPU: under {TARGET_SECONDS // 60} min"
          + (" (reduced size: not comparable)" if args.reduced or args.tiny else
             f" -> {'met' if wall < TARGET_SECONDS else 'NOT met'}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
