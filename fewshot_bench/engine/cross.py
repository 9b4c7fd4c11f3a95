"""The cross-dataset suite: train on one dataset's training classes, test on another's test classes, for
every ordered pair of the datasets a user has — one ``combined`` run per pair, all in one command.

Each pair (A, B) is a run of the ``combined`` dataset with parts A and B and the ``cross`` split: A's
training emotions against B's unseen test emotions (a dataset's own preset, or the CRN paper's emotions for
image folders). The runs are ordinary run folders (``<run id>-<A>-to-<B>``), so they resume, aggregate and
publish like any other (run each with ``engine.launch.execute``); ``reporting.cross`` turns them into the
train × test matrix.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from fewshot_bench.config import RunConfig
from fewshot_bench.engine.runner import slug
from fewshot_bench.errors import ConfigError


@dataclass(frozen=True)
class CrossRun:
    """One ordered pair of the suite: the datasets' names and the run that trains on one, tests on the other."""

    train: str
    test: str
    config: RunConfig


def cross_runs(base: RunConfig, parts: list[str], run_id: str) -> list[CrossRun]:
    """The suite's runs: ``parts`` are ``name=path`` or ``name=plugin:path`` entries (the ``combined``
    dataset's syntax), ``base`` holds every other setting (methods, shots, seeds, budgets, image size)."""
    from fewshot_bench.datasets.combined import parse_parts

    for key, value in (("dataset", base.dataset != RunConfig().dataset), ("data_root", base.data_root),
                       ("split", base.split), ("dataset_options", base.dataset_options)):
        if value:
            raise ConfigError(f"bench cross sets '{key}' for each pair itself; give the datasets as NAME=PLUGIN:PATH "
                              "arguments instead")
    entries = {part.name: text for part, text in zip(parse_parts(";".join(parts)), parts)}
    runs = []
    for train, train_entry in entries.items():
        for test, test_entry in entries.items():
            if train == test:
                continue
            pair_id = slug(f"{run_id}-{train}-to-{test}")
            runs.append(CrossRun(train, test, replace(
                base, dataset="combined", dataset_name=f"{train}-to-{test}", split="cross", run_id=pair_id,
                dataset_options={"parts": f"{train_entry};{test_entry}"})))
    return runs
