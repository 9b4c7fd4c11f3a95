"""The behavioural fingerprint probe: every method variant through the harness's real cell pipeline on a fixed,
tiny, seeded CPU problem, with what it observably computes recorded.

The probe also runs against older commits of this package (to baseline their records), so it uses only what
every commit since b434196 has: ``RunConfig``, ``engine.runner.run`` with the observer protocol, the method
registry, ``FewShotMethod.predict``/``backbone``/``all_options``
(and ``predict_episodes`` where it exists) and the ``array`` dataset plugin. It writes its
own data: 6 classes of 10 images (class prototypes plus noise; see ``write_dataset``), in two geometries —
A: 1×28×28, B: 3×32×32 with the run key ``lr_step: 2`` so learning-rate schedules move. Each geometry is one run
with every probe label (cells are seeded independently: a label alone gives the same observables).

Pre-training is cut to the probe's budget: a variant that pre-trains (``pretrain_epochs`` > 0, given in its
label or the default of a method that declares the option) is probed with ``pretrain_epochs=1``.

Observables per (variant, geometry): ``options`` (the cell record's resolved options), ``losses`` (one per
training episode), ``pretraining`` (its ``losses`` and ``accuracies``, or null), ``accuracies`` (per test
episode), ``scores`` (every score matrix ``predict`` returned in eval mode during the cell, in call order, its
rows ordered by their query images' pixel sums so the order the harness hands queries over does not count),
``backbone`` (per model instance, at its first eval-mode ``predict``: [name, numel, sum, sum of squares] of its
backbone's float state) and ``error`` (null, or "Type: message" when the cell failed).

    python fewshot_bench/fingerprint/probe.py --variants 'protonet;crn[dap=false]' --out fingerprint.json
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
import threading
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import torch

# probe-2: score rows ordered by their query images (the harness shuffles queries since probe-1).
PROBE_VERSION = "probe-2"

# The problem: shared by both geometries (only the image shape and the lr_step run key differ).
N_CLASSES, PER_CLASS, DATA_SEED = 6, 10, 20240601
# Weak class structure under strong noise: training has signal but neither losses nor accuracies saturate.
CLASS_SIGNAL, NOISE = 0.3, 0.3
GEOMETRIES = {"A": {"channels": 1, "side": 28, "run": {}},
              "B": {"channels": 3, "side": 32, "run": {"lr_step": 2}}}
PROBLEM = {"way": 3, "shots": [2], "query": 2, "train_way": 3, "train_query": 2, "train_episodes": 6,
           "test_episodes": 3, "meta_batch": 1, "log_interval": 1, "checkpoint_interval": 1000, "seeds": [0],
           "device": "cpu", "threads": 1}
PROBE_PRETRAIN_EPOCHS = 1
CLASS_NAMES = [f"c{i}" for i in range(N_CLASSES)]
SPLIT = {"train": CLASS_NAMES[:3], "val": [], "test": CLASS_NAMES[3:]}

_LABEL = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*(?:\[(.*)\])?\s*$")


# -- labels -------------------------------------------------------------------------------------------------
def parse_label(label: str) -> tuple[str, list[tuple[str, str]]]:
    """``name[key=value,...]`` as the name and its (key, value) texts in order."""
    match = _LABEL.match(label)
    if not match:
        raise ValueError(f"cannot parse variant label {label!r}")
    options = []
    for part in (match.group(2) or "").split(","):
        if part.strip():
            key, _, value = part.partition("=")
            options.append((key.strip(), value.strip()))
    return match.group(1), options


def probe_label(label: str) -> str:
    """The label the probe runs for ``label``: pre-training cut to ``PROBE_PRETRAIN_EPOCHS`` epochs, and no weights
    file (``weights``, ``weights_layout``: a file is data, recorded by its sha256 with the cell; the probe measures
    the code, on its own images, which a checkpoint for other images would not fit)."""
    from fewshot_bench.registry import METHODS

    name, options = parse_label(label)
    options = [(k, v) for k, v in options if k not in ("weights", "weights_layout")]
    given = dict(options)
    if "pretrain_epochs" in given:
        try:
            epochs = int(float(given["pretrain_epochs"]))
        except ValueError:
            epochs = 0  # left as given: the run reports the bad value
        if epochs > 0:
            options = [(k, str(PROBE_PRETRAIN_EPOCHS) if k == "pretrain_epochs" else v) for k, v in options]
    else:
        try:
            declared = {option.name: option.default for option in METHODS.get(name).all_options()}
        except Exception:  # an unknown method: its run says so
            declared = {}
        if (declared.get("pretrain_epochs") or 0) > 0:
            options = [*options, ("pretrain_epochs", str(PROBE_PRETRAIN_EPOCHS))]
    return name + ("[" + ",".join(f"{k}={v}" for k, v in options) + "]" if options else "")


# -- data ---------------------------------------------------------------------------------------------------
def write_dataset(path: Path, channels: int, side: int) -> None:
    """6 classes × 10 images (uint8): a coarse random pattern shared by all classes, a weaker one per class
    (``CLASS_SIGNAL``), and pixel noise (``NOISE``)."""
    rng = np.random.default_rng(DATA_SEED + 1000 * channels + side)
    coarse = rng.uniform(0.0, 1.0, size=(N_CLASSES, 7, 7, channels))
    common = rng.uniform(0.0, 1.0, size=(1, 7, 7, channels))
    coarse = (1.0 - CLASS_SIGNAL) * common + CLASS_SIGNAL * coarse
    # Block-upsampled coarse patterns (nearest, then cropped to side): structure a convolution can learn.
    repeat = -(-side // 7)
    prototypes = coarse.repeat(repeat, axis=1).repeat(repeat, axis=2)[:, :side, :side, :]
    images, labels = [], []
    for c in range(N_CLASSES):
        for _ in range(PER_CLASS):
            noise = rng.normal(0.0, NOISE, size=(side, side, channels))
            images.append(np.clip((0.6 * prototypes[c] + noise + 0.2) * 255.0, 0, 255).astype(np.uint8))
            labels.append(c)
    array = np.stack(images)
    if channels == 1:
        array = array[..., 0]
    np.savez(path, images=array, labels=np.array(labels, dtype=np.int64), class_names=np.array(CLASS_NAMES))


# -- capture of predict's scores ----------------------------------------------------------------------------
class _Capture:
    """Wraps ``predict`` of every registered method class while active; eval-mode calls are recorded under the
    cell the observer last saw start."""

    def __init__(self) -> None:
        self.cell: str | None = None
        self.scores: dict[str, list] = {}
        self.backbones: dict[str, list] = {}
        self._seen: weakref.WeakSet = weakref.WeakSet()
        self._local = threading.local()
        self._saved: list[tuple[type, Any]] = []

    def record(self, model: Any, scores: Any, query: Any) -> None:
        if self.cell is None or model.training or not isinstance(scores, torch.Tensor):
            return
        rows = scores.detach().float().cpu()
        if isinstance(query, torch.Tensor) and len(query) == len(rows):
            # Rows in an order fixed by the query images themselves (their pixel sums), not by the order in which
            # the harness hands the queries over: a method's behaviour is its score for each query.
            flat = query.detach().double().cpu().flatten(1)
            keys = [(round(float(a), 4), round(float(b), 4)) for a, b in zip(flat.sum(1), flat.abs().sum(1))]
            rows = rows[sorted(range(len(keys)), key=keys.__getitem__)]
        self.scores.setdefault(self.cell, []).append(rows.tolist())
        if model not in self._seen:
            self._seen.add(model)
            self.backbones.setdefault(self.cell, []).append(backbone_summary(model.backbone))

    def wrap(self, method: Any, episodes: bool = False) -> Any:
        """``method`` (a class's ``predict``, or ``predict_episodes`` when ``episodes``) recording its scores:
        per episode, so a method that predicts several episodes at once leaves the same record as one by one."""
        capture = self

        def predict(model, *args, **kwargs):
            depth = getattr(capture._local, "depth", 0)
            capture._local.depth = depth + 1
            try:
                scores = method(model, *args, **kwargs)
            finally:
                capture._local.depth = depth
            if depth == 0:
                query = args[2] if len(args) > 2 else kwargs.get("queries" if episodes else "query")
                if episodes:
                    for one_scores, one_query in zip(scores, query):
                        capture.record(model, one_scores, one_query)
                else:
                    capture.record(model, scores, query)
            return scores

        predict.__wrapped__ = method
        return predict

    def __enter__(self) -> "_Capture":
        from fewshot_bench.registry import METHODS

        for name in METHODS.names():
            cls = METHODS.get(name)
            if isinstance(cls, type) and callable(getattr(cls, "predict", None)):
                for attribute in [a for a in _WRAPPED if callable(getattr(cls, a, None))]:
                    self._saved.append((cls, attribute, cls.__dict__.get(attribute, _MISSING)))
        for cls, attribute, _ in self._saved:
            # A class's own method, or the one it inherits (possibly a registered base's wrapper: the
            # re-entrancy guard then records the outermost call only).
            own = cls.__dict__[attribute] if attribute in cls.__dict__ else getattr(cls, attribute)
            setattr(cls, attribute, self.wrap(own, episodes=attribute == "predict_episodes"))
        return self

    def __exit__(self, *exc: Any) -> None:
        for cls, attribute, original in reversed(self._saved):
            if original is _MISSING:
                delattr(cls, attribute)
            else:
                setattr(cls, attribute, original)
        self._saved = []


_MISSING = object()
# The evaluator calls predict_episodes (commits before it: predict); a method's own predict_episodes may call
# predict (the default does).
_WRAPPED = ("predict", "predict_episodes")


def backbone_summary(backbone: Any) -> list[list]:
    """[name, numel, sum, sum of squares] of every float tensor of the backbone's state."""
    rows = []
    for name, tensor in backbone.state_dict().items():
        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point():
            values = tensor.detach().cpu().double()
            rows.append([name, int(values.numel()), float(values.sum()), float((values * values).sum())])
    return rows


class _Observer:
    def __init__(self, capture: _Capture) -> None:
        self.capture = capture
        self.started: list[str] = []

    def cell_started(self, label: str, shot: int, seed: int, train_episodes: int, test_episodes: int) -> None:
        self.capture.cell = label
        self.started.append(label)

    def trained(self, episodes: int, loss: float | None) -> None: ...

    def evaluated(self, episodes: int) -> None: ...

    def cell_finished(self, record: Any, skipped: bool = False) -> None:
        self.capture.cell = None


# -- runs ---------------------------------------------------------------------------------------------------
def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _empty(error: str | None = None) -> dict[str, Any]:
    return {"options": None, "losses": None, "pretraining": None, "accuracies": None, "scores": [],
            "backbone": [], "error": error}


def _observables(record: dict | None, scores: list, backbones: list, error: str | None) -> dict[str, Any]:
    result = _empty(error)
    result.update(scores=scores, backbone=backbones)
    if record is not None:
        pretraining = record.get("pretraining")
        result.update(options=record.get("options"), losses=list(record.get("loss_curve", {}).get("loss", [])),
                      accuracies=record.get("accuracies"),
                      pretraining=None if not pretraining else {"losses": pretraining.get("losses"),
                                                                "accuracies": pretraining.get("accuracies")})
    return result


def run_geometry(labels: list[str], geometry: str, workdir: Path, run_id: str | None = None) -> dict[str, dict]:
    """Observables of every probe label in ``labels`` from one run of geometry ``geometry``; an error that stops
    the whole run before its cells (validation) is attributed by running each label alone."""
    from fewshot_bench.config import RunConfig
    from fewshot_bench.engine.runner import run

    spec = GEOMETRIES[geometry]
    data = workdir / f"probe-{geometry}.npz"
    write_dataset(data, spec["channels"], spec["side"])
    run_id = run_id or f"probe-{geometry}"
    output = workdir / "runs"
    shutil.rmtree(output / run_id, ignore_errors=True)
    config = RunConfig(methods=list(labels), dataset="array", data_root=str(data), split=dict(SPLIT),
                       output_dir=str(output), run_id=run_id, **PROBLEM, **spec["run"])
    capture = _Capture()
    observer = _Observer(capture)
    failed: Exception | None = None
    with capture:
        try:
            result = run(config, observer)
        except Exception as exc:
            failed = exc
    if failed is not None:
        if len(labels) == 1:
            return {labels[0]: _empty(_error(failed))}
        results: dict[str, dict] = {}
        for i, label in enumerate(labels):
            results.update(run_geometry([label], geometry, workdir, f"{run_id}-alone{i}"))
        return results
    # Plan order is the methods' order (one shot, one seed, a fresh folder): probe label -> cell -> record.
    root = output / run_id
    plan = json.loads((root / "plan.json").read_text())
    records = {record["cell"]: record for record in result.store.load_cells()}
    failures = {}
    for line in result.failures:
        cell, _, error = line.partition(": ")
        failures[cell.removeprefix("cell ").strip()] = error
    results = {}
    for label, entry in zip(labels, plan):
        cell, resolved = entry["cell"], entry["label"]
        error = failures.get(cell)
        state = root / "state" / f"{cell}.json"
        if error is None and cell not in records and state.is_file():
            error = json.loads(state.read_text()).get("error")
        if error is None and cell not in records:
            error = "NotRun: the run stored no record for this cell"
        results[label] = _observables(records.get(cell), capture.scores.get(resolved, []),
                                      capture.backbones.get(resolved, []), error)
    return results


def fingerprint(labels: list[str], workdir: Path) -> dict[str, Any]:
    """The probe's output for ``labels``: per original label its probe label and observables in A and B."""
    from fewshot_bench.registry import METHODS

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    mapping = {label: probe_label(label) for label in labels}
    unique = list(dict.fromkeys(mapping.values()))
    unknown = {}
    for label in unique:
        try:
            METHODS.get(parse_label(label)[0])
        except Exception as exc:  # a method this commit does not have: nothing to run
            unknown[label] = _error(exc)
    runnable = [label for label in unique if label not in unknown]
    observed: dict[str, dict[str, dict]] = {}
    for geometry in GEOMETRIES:
        results = run_geometry(runnable, geometry, workdir) if runnable else {}
        results.update({label: _empty(error) for label, error in unknown.items()})
        observed[geometry] = results
    variants = {label: {"probe_label": probe, **{g: observed[g][probe] for g in GEOMETRIES}}
                for label, probe in mapping.items()}
    return {"probe": PROBE_VERSION, "torch": torch.__version__, "variants": variants}


def code_versions(labels: list[str]) -> dict[str, str | None]:
    """The code version the imported package computes for each label's cells (for baselining old records;
    not part of the fingerprint). Commits with a pre-training stage resolve a label with
    ``pretraining.resolve`` and version it with ``engine.runner.cell_code_version``; older ones with
    ``method.resolve_variant`` and ``results.provenance.code_version(method, backbone)``, as their runner did.
    A label its commit cannot resolve gets None."""
    from fewshot_bench.options import Spec
    from fewshot_bench.registry import BACKBONES

    try:
        from fewshot_bench.pretraining import resolve
    except ImportError:
        from fewshot_bench.method import resolve_variant as resolve
    try:
        from fewshot_bench.engine.runner import cell_code_version
    except ImportError:
        from fewshot_bench.results.provenance import code_version

        def cell_code_version(variant):
            return code_version(variant.method_class, BACKBONES.get(variant.option_dict["backbone"]))

    versions: dict[str, str | None] = {}
    for label in labels:
        try:
            versions[label] = cell_code_version(resolve(Spec.parse(label)))
        except Exception:
            versions[label] = None
    return versions


def dumps(data: Any) -> str:
    return json.dumps(data, sort_keys=True, indent=1) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", required=True, help="variant labels separated by ';'")
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument("--workdir", help="where the data and runs go (default: a temporary folder, removed)")
    parser.add_argument("--code-versions", action="store_true",
                        help="also record, per label, the code version the imported package computes and where "
                             "that package is (key 'provenance'; for baselining old commits)")
    args = parser.parse_args(argv)
    labels = [label.strip() for label in args.variants.split(";") if label.strip()]
    if args.workdir:
        data = fingerprint(labels, Path(args.workdir))
    else:
        with tempfile.TemporaryDirectory(prefix="fingerprint-") as folder:
            data = fingerprint(labels, Path(folder))
    if args.code_versions:
        import fewshot_bench

        data["provenance"] = {"package": fewshot_bench.__file__, "code_versions": code_versions(labels)}
        print(f"fewshot_bench: {fewshot_bench.__file__}", file=sys.stderr)
    Path(args.out).write_text(dumps(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
