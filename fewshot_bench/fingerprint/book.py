"""The committed fingerprints: what each variant did under the code that computed published records.

Two files under ``results/fingerprints/``:

* ``baselines.json`` — fingerprints of the published records' variants at the commits that computed them
  (``scripts/baseline_fingerprints.py`` runs this checkout's probe against each commit's package), with the code
  version each commit computes and its GPU-path hash;
* ``recorded.json`` — fingerprints written by ``bench fingerprint --write``, keyed by variant label and the
  code version of the code that produced them (one entry per code version, kept when the code moves on, so a
  record computed by that code can be checked later).

A record's fingerprint is looked up by its label and code version (and its commit, when it has one and a baseline
of that commit exists). Records without a commit (run from a wheel) match every baseline of their code version;
those must agree, or the record is left unverified.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fewshot_bench.fileio import atomic_write_text
from fewshot_bench.fingerprint.compare import DEFAULT_TOLERANCE, compare
from fewshot_bench.fingerprint.probe import PROBE_VERSION

GEOMETRIES = ("A", "B")
BASELINES, RECORDED = "baselines.json", "recorded.json"


def behaviour(fingerprint: dict[str, Any]) -> dict[str, Any]:
    """The part of a probe output for one variant that describes behaviour: its geometries' observables."""
    return {key: fingerprint[key] for key in GEOMETRIES if key in fingerprint}


@dataclass(frozen=True)
class Known:
    """A stored fingerprint of one variant under one code version."""

    fingerprint: dict[str, Any]
    gpu_paths: str | None
    commit: str | None
    source: str


@dataclass
class FingerprintBook:
    """Every committed fingerprint, by (label, code version)."""

    folder: Path
    entries: dict[tuple[str, str], list[Known]] = field(default_factory=dict)
    recorded: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)

    @classmethod
    def load(cls, folder: str | Path) -> FingerprintBook:
        folder = Path(folder)
        book = cls(folder)
        baselines = _read(folder / BASELINES)
        if baselines and baselines.get("probe") == PROBE_VERSION:
            for commit, snapshot in sorted(baselines.get("commits", {}).items()):
                for label, print_ in sorted(snapshot.get("variants", {}).items()):
                    if print_.get("code_version"):
                        book._add(label, print_["code_version"],
                                  Known(behaviour(print_), snapshot.get("gpu_paths"), commit, f"baseline of {commit[:7]}"))
        recorded = _read(folder / RECORDED)
        if recorded and recorded.get("probe") == PROBE_VERSION:
            book.recorded = recorded.get("variants", {})
            for label, versions in sorted(book.recorded.items()):
                for version, entry in sorted(versions.items()):
                    # An entry whose behaviour equals an earlier one's names it instead of repeating it.
                    target = versions.get(entry.get("same_as", ""), entry)
                    book._add(label, version, Known(behaviour(target["fingerprint"]), entry.get("gpu_paths"),
                                                    entry.get("commit"), f"bench fingerprint --write at {version}"))
        return book

    def _add(self, label: str, version: str, known: Known) -> None:
        self.entries.setdefault((label, version), []).append(known)

    def known(self, label: str, version: str) -> list[Known]:
        return self.entries.get((label, version), [])

    def then(self, label: str, version: str | None, commit: str | None) -> tuple[Known | None, str]:
        """The fingerprint of the code that computed a record of ``label`` at ``version`` (and ``commit``), or
        None with the reason."""
        if not version:
            return None, "the record names no code version"
        candidates = self.known(label, version)
        exact = [k for k in candidates if commit and k.commit == commit]
        candidates = exact or candidates
        if not candidates:
            return None, f"no fingerprint of {label} at {version} is committed"
        first = candidates[0]
        for other in candidates[1:]:
            if compare(first.fingerprint, other.fingerprint, **DEFAULT_TOLERANCE):
                return None, (f"the fingerprints of {label} at {version} differ between {first.source} and "
                              f"{other.source}: which one computed the record is unknown")
        return first, first.source

    def write(self, label: str, version: str, fingerprint: dict[str, Any], gpu_paths: str,
              commit: str | None) -> None:
        """Store ``fingerprint`` as ``label``'s at ``version`` (replacing one of the same version); when an
        entry of another version has exactly this behaviour, the new entry names it (``same_as``)."""
        versions = self.recorded.setdefault(label, {})
        versions.pop(version, None)
        entry: dict[str, Any] = {"gpu_paths": gpu_paths, "commit": commit, "probe_label": fingerprint.get("probe_label")}
        same = next((v for v, e in sorted(versions.items()) if "fingerprint" in e
                     and e["fingerprint"] == behaviour(fingerprint)), None)
        if same is not None:
            entry["same_as"] = same
        else:
            entry["fingerprint"] = behaviour(fingerprint)
        versions[version] = entry
        self._add(label, version, Known(behaviour(fingerprint), gpu_paths, commit, f"bench fingerprint --write at {version}"))

    def prune(self, keep: set[tuple[str, str]]) -> int:
        """Drop recorded entries whose (label, version) is not in ``keep`` (today's code and the code of the
        published records) and that no kept entry names; returns how many went."""
        dropped = 0
        for label, versions in self.recorded.items():
            needed = {version for version in versions if (label, version) in keep}
            needed |= {versions[v]["same_as"] for v in needed if "same_as" in versions[v]}
            for version in sorted(set(versions) - needed):
                del versions[version]
                dropped += 1
        self.recorded = {label: versions for label, versions in self.recorded.items() if versions}
        return dropped

    def save(self) -> Path:
        path = self.folder / RECORDED
        data = {"probe": PROBE_VERSION, "tolerance": DEFAULT_TOLERANCE, "variants": self.recorded}
        atomic_write_text(path, json.dumps(data, sort_keys=True, indent=1) + "\n")
        return path


def _read(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        from fewshot_bench.errors import RecordError

        raise RecordError(f"fingerprint file '{path}' is unreadable ({type(exc).__name__}); restore it from git "
                          "(git checkout -- results/fingerprints)") from None
