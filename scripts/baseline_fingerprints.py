"""Behavioural fingerprints of the published records' variants at the commits that computed them.

For every commit named by a cell record under results/records/*/cells/ (records without a commit — the FER2013
GPU folders, run from wheels — are baselined at both commits those wheels were built from), the commit's package
is installed into /tmp/site/<commit> from a detached worktree, and this checkout's probe
(fewshot_bench/fingerprint/probe.py) runs against it in a subprocess on one thread, together with the code
version that commit computes for each label. Everything goes to results/fingerprints/baselines.json.

    .venv/bin/python scripts/baseline_fingerprints.py [--compare-at 46c68ab] [--commits SHA ...]

``--compare-at`` also probes that commit (every label of every baselined commit), does not store it, and
compares each baselined commit's fingerprints with it; labels are compared across the baselined commits too.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PROBE_FILE = REPO / "fewshot_bench" / "fingerprint" / "probe.py"
PYTHON = REPO / ".venv" / "bin" / "python"
PIP = REPO / ".venv" / "bin" / "pip"
SITE = Path("/tmp/site")
WORKTREES = Path("/tmp/fingerprint-worktrees")
OUTPUTS = Path("/tmp/fingerprint-outputs")
# Records without a commit came from wheels of these commits (fer2013-grid-gpu: a5582e4 first, 81a24d4 second;
# fer2013-modern-gpu: 81a24d4): their labels are baselined at both.
WHEEL_COMMITS = ("a5582e4", "81a24d4")
GPU_PATH_FILES = ("fewshot_bench/engine/graphs.py", "fewshot_bench/device.py")
GEOMETRIES = ("A", "B")

sys.path.insert(0, str(REPO / "fewshot_bench" / "fingerprint"))
from compare import DEFAULT_TOLERANCE, compare  # noqa: E402  (this checkout's, without importing the package)


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), *args], check=True, capture_output=True, text=True).stdout


def full_sha(commit: str) -> str:
    return git("rev-parse", "--verify", f"{commit}^{{commit}}").strip()


def records(root: Path) -> list[dict]:
    return [json.loads(path.read_text()) for path in sorted(root.glob("*/cells/*.json"))]


def labels_by_commit(cells: list[dict]) -> dict[str, list[str]]:
    """Distinct labels per full commit sha; records without a commit go to each of ``WHEEL_COMMITS``."""
    grouped: dict[str, set[str]] = defaultdict(set)
    for record in cells:
        commits = [record["git_commit"]] if record.get("git_commit") else list(WHEEL_COMMITS)
        for commit in commits:
            grouped[full_sha(commit)].add(record["label"])
    return {commit: sorted(labels) for commit, labels in grouped.items()}


def recorded_versions(cells: list[dict]) -> dict[tuple[str | None, str], set[str]]:
    """The code versions the records state, per (commit or None, label)."""
    found: dict[tuple[str | None, str], set[str]] = defaultdict(set)
    for record in cells:
        commit = full_sha(record["git_commit"]) if record.get("git_commit") else None
        found[(commit, record["label"])].add(record.get("code_version"))
    return found


def gpu_paths(commit: str) -> str:
    """sha256 (12 hex) over the GPU-path sources at ``commit``, joined by a NUL in ``GPU_PATH_FILES`` order."""
    text = "\0".join(git("show", f"{commit}:{path}") for path in GPU_PATH_FILES)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def install(commit: str) -> Path:
    """The commit's package installed into /tmp/site/<commit> (the package maps fewshot_bench.methods and
    .datasets to top-level folders, so a PYTHONPATH to a worktree would not import it)."""
    target, tree = SITE / commit, WORKTREES / commit
    shutil.rmtree(target, ignore_errors=True)
    if tree.exists():
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], capture_output=True)
    WORKTREES.mkdir(parents=True, exist_ok=True)
    git("worktree", "add", "--detach", str(tree), commit)
    try:
        subprocess.run([str(PIP), "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(target),
                        str(tree)], check=True)
    finally:
        git("worktree", "remove", "--force", str(tree))
    return target


def probe(commit: str, labels: list[str]) -> tuple[dict, float]:
    """This checkout's probe against the commit's installed package, with its code versions; seconds taken."""
    site = install(commit)
    OUTPUTS.mkdir(parents=True, exist_ok=True)
    out = OUTPUTS / f"{commit}.json"
    env = {**os.environ, "PYTHONPATH": str(site), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    start = time.perf_counter()
    done = subprocess.run([str(PYTHON), str(PROBE_FILE), "--variants", ";".join(labels), "--out", str(out),
                           "--code-versions"], env=env, cwd="/tmp", capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-4000:])
        raise SystemExit(f"the probe failed at {commit} (exit {done.returncode})")
    data = json.loads(out.read_text())
    package = data["provenance"]["package"]
    print(f"  fewshot_bench.__file__ = {package}")
    if not Path(package).resolve().is_relative_to(site.resolve()):
        raise SystemExit(f"the probe at {commit} imported {package}, not the package in {site}")
    return data, seconds


def entry(data: dict) -> dict:
    versions = data["provenance"]["code_versions"]
    return {"variants": {label: {**observed, "code_version": versions[label]}
                         for label, observed in data["variants"].items()},
            "torch": data["torch"]}


def behaviour(variant: dict) -> dict:
    """What compare() looks at: the probe label and both geometries' observables."""
    return {key: variant[key] for key in ("probe_label", *GEOMETRIES)}


def report(variant: dict) -> str:
    """The text "ok", or each geometry's error."""
    errors = {g: variant[g]["error"] for g in GEOMETRIES if variant[g]["error"]}
    return "ok" if not errors else "; ".join(f"{g}: {e}" for g, e in errors.items())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", default=str(REPO / "results" / "records"))
    parser.add_argument("--out", default=str(REPO / "results" / "fingerprints" / "baselines.json"))
    parser.add_argument("--commits", nargs="*", help="only these of the records' commits (the other commits' "
                        "baselines in --out are kept)")
    parser.add_argument("--compare-at", help="also probe this commit (not stored) and compare every baseline with it")
    args = parser.parse_args()

    cells = records(Path(args.records))
    wanted = labels_by_commit(cells)
    if args.commits:
        chosen = {full_sha(c) for c in args.commits}
        wanted = {c: labels for c, labels in wanted.items() if c in chosen}
    order = [c for c in git("rev-list", "--reverse", "HEAD").split() if c in wanted]
    stated = recorded_versions(cells)

    wheels = {full_sha(c) for c in WHEEL_COMMITS}
    commits: dict[str, dict] = {}
    probe_versions: set[str] = set()
    for commit in order:
        print(f"{commit[:7]}: {len(wanted[commit])} label(s)")
        data, seconds = probe(commit, wanted[commit])
        probe_versions.add(data["probe"])
        commits[commit] = {**entry(data), "gpu_paths": gpu_paths(commit)}
        print(f"  {seconds:.1f} s, torch {data['torch']}, gpu_paths {commits[commit]['gpu_paths']}")
        for label, variant in commits[commit]["variants"].items():
            record_commits = [commit] + ([None] if commit in wheels else [])
            said = set().union(*(stated.get((c, label), set()) for c in record_commits))
            match = "" if not said else (" (= records)" if variant["code_version"] in said else
                                         f" (records: {', '.join(sorted(map(str, said)))})")
            print(f"  {label:70s} -> {variant['probe_label']:55s} {report(variant)}; "
                  f"{variant['code_version']}{match}")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    versions = sorted(probe_versions)
    if len(versions) > 1:
        raise SystemExit(f"the probe reported several versions: {versions}")
    stored = commits
    if args.commits and out.exists():
        # Only some commits were probed: the other commits' baselines stay (from the same probe only).
        earlier = json.loads(out.read_text())
        if versions and earlier.get("probe") != versions[0]:
            raise SystemExit(f"{out} was made by probe {earlier.get('probe')}, this one is {versions[0]}: rerun "
                             "without --commits to baseline every record's commit again")
        stored = {**earlier.get("commits", {}), **commits}
    document = {"probe": versions[0] if versions else None, "tolerance": DEFAULT_TOLERANCE, "commits": stored}
    out.write_text(json.dumps(document, sort_keys=True, indent=1) + "\n")
    print(f"wrote {out}")

    # Agreement of each label across the commits that baselined it (and with --compare-at).
    reference: dict[str, dict] = {}
    if args.compare_at:
        at = full_sha(args.compare_at)
        union = sorted({label for labels in wanted.values() for label in labels})
        print(f"{at[:7]} (compare-at): {len(union)} label(s)")
        data, seconds = probe(at, union)
        reference = entry(data)["variants"]
        print(f"  {seconds:.1f} s; errors: " + (", ".join(l for l, v in reference.items()
                                                         if report(v) != "ok") or "none"))
    print("agreement (= same as the first commit where the label ran, within tolerance; "
          + ("@ compares with --compare-at; " if reference else "") + "E: the variant failed there)")
    labels = sorted({label for variants in commits.values() for label in variants["variants"]})
    for label in labels:
        having = [c for c in order if label in commits[c]["variants"]]
        # Compared with the first commit where the variant ran (a commit without its method only says E).
        base = next((c for c in having if report(commits[c]["variants"][label]) == "ok"), having[0])
        first = commits[base]["variants"][label]
        cells_text, notes = [], []
        for commit in having:
            variant = commits[commit]["variants"][label]
            failed = report(variant) != "ok"
            diffs = [] if failed else compare(behaviour(first), behaviour(variant), **DEFAULT_TOLERANCE)
            mark = "E" if failed else "=" if not diffs else "≠"
            if reference and label in reference:
                against = compare(behaviour(variant), behaviour(reference[label]), **DEFAULT_TOLERANCE)
                mark += "@=" if not against else "@≠"
                if against and not failed:
                    notes.append(f"    {commit[:7]} vs {args.compare_at}: {len(against)} difference(s): "
                                 + " | ".join(against[:4]))
            if diffs:
                notes.append(f"    {base[:7]} vs {commit[:7]}: {len(diffs)} difference(s): " + " | ".join(diffs[:4]))
            cells_text.append(f"{commit[:7]}:{mark}")
        print(f"  {label:70s} " + "  ".join(cells_text))
        for note in notes:
            print(note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
