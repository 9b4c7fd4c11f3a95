"""Whether a published record is still what today's code computes: its variant's behaviour then and now.

A record's state:

* ``current`` — computed by exactly today's code (same code version);
* ``current (refactored)`` — other source bytes, the same behaviour: today's fingerprint of the variant matches
  the committed one of the code that computed the record, within the stated tolerance;
* ``stale`` — the fingerprints differ (the detail names the first differences), or, for a record computed on
  a GPU, the GPU-only code (CUDA graphs, bf16 autocast), which the CPU probe cannot observe, changed;
* ``unverified`` — no committed fingerprint of the code that computed it (the detail says why).

Today's fingerprint of a variant is the committed one of today's code version when there is one, else the probe
runs now (a few seconds per variant, all of them in one go).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from fewshot_bench.fingerprint.book import FingerprintBook, behaviour
from fewshot_bench.fingerprint.compare import DEFAULT_TOLERANCE, compare

CURRENT, REFACTORED, STALE, UNVERIFIED = "current", "current (refactored)", "stale", "unverified"
# Worst first: a row of several cells takes its worst cell's state.
SEVERITY = (STALE, UNVERIFIED, REFACTORED, CURRENT)


@dataclass(frozen=True)
class RecordState:
    """A record's (or a row's) state and why."""

    state: str
    detail: str = ""


@dataclass(frozen=True)
class Today:
    """A variant under today's code: its code version and fingerprint (None when it cannot be built here)."""

    version: str | None
    fingerprint: dict[str, Any] | None
    source: str


class CodeStates:
    """Today's behaviour of the variants of some records, and each record's state against it."""

    def __init__(self, book: FingerprintBook, workdir: Path | None = None) -> None:
        self.book = book
        self.workdir = workdir
        self._today: dict[str, Today] = {}
        from fewshot_bench.results.provenance import gpu_paths_version

        self.gpu_paths = gpu_paths_version()

    def prepare(self, labels: Iterable[str]) -> None:
        """Today's fingerprints of ``labels``: committed ones where today's code version has one, the rest
        probed now, together."""
        from fewshot_bench.errors import BenchError
        from fewshot_bench.options import Spec
        from fewshot_bench.pretraining import resolve
        from fewshot_bench.results.provenance import cell_code_version

        missing = []
        for label in dict.fromkeys(labels):
            if label in self._today:
                continue
            try:
                version = cell_code_version(resolve(Spec.parse(label)))
            except BenchError as exc:
                self._today[label] = Today(None, None, f"not resolvable here ({exc})")
                continue
            known = self.book.known(label, version)
            if known:
                self._today[label] = Today(version, known[0].fingerprint, known[0].source)
            else:
                self._today[label] = Today(version, None, "probed now")
                missing.append(label)
        if missing:
            for label, print_ in probe_now(missing, self.workdir).items():
                self._today[label] = Today(self._today[label].version, behaviour(print_), "probed now")

    def today(self, label: str) -> Today:
        self.prepare([label])
        return self._today[label]

    def state(self, record: dict[str, Any]) -> RecordState:
        """The state of one cell record."""
        from fewshot_bench.results.numerics import record_numerics

        label, version = record.get("label"), record.get("code_version")
        now = self.today(label)
        if now.fingerprint is None:
            return RecordState(UNVERIFIED, f"{label}: {now.source}")
        if version == now.version:
            return RecordState(CURRENT)
        then, why = self.book.then(label, version, record.get("git_commit"))
        if then is None:
            return RecordState(UNVERIFIED, why)
        differences = compare(then.fingerprint, now.fingerprint, **DEFAULT_TOLERANCE)
        if differences:
            return RecordState(STALE, f"{label} behaves differently from {then.source}: " + "; ".join(differences[:3])
                               + (f" (+{len(differences) - 3} more)" if len(differences) > 3 else ""))
        if record_numerics(record)["device_kind"] == "cuda":
            gpu_then = record.get("gpu_paths") or then.gpu_paths
            if gpu_then != self.gpu_paths:
                return RecordState(STALE, f"{label} was computed on a GPU and the GPU-only code changed "
                                          f"({gpu_then} → {self.gpu_paths})")
        return RecordState(REFACTORED, f"same behaviour as {then.source}")

    def row_state(self, records: Iterable[dict[str, Any]]) -> RecordState:
        """The worst state among ``records`` (the cells of one card row)."""
        states = [self.state(record) for record in records]
        if not states:
            return RecordState(UNVERIFIED, "no cell records")
        return min(states, key=lambda s: SEVERITY.index(s.state))


def probe_now(labels: list[str], workdir: Path | None = None) -> dict[str, dict[str, Any]]:
    """The probe's fingerprints of ``labels`` with today's code (in this process, one thread)."""
    import logging

    import torch

    from fewshot_bench.console import logger
    from fewshot_bench.fingerprint.probe import fingerprint

    threads, level = torch.get_num_threads(), logger.level
    logger.setLevel(logging.WARNING)  # the probe's tiny runs log their pre-training epochs: noise here
    try:
        if workdir is not None:
            return fingerprint(labels, Path(workdir))["variants"]
        with tempfile.TemporaryDirectory(prefix="fewshot-probe-") as folder:
            return fingerprint(labels, Path(folder))["variants"]
    finally:
        torch.set_num_threads(threads)
        logger.setLevel(level)
