"""The cross-dataset suite: train on one dataset's training classes, test on another's test classes, for
every ordered pair of the datasets a user has, the in-domain diagonal included — one ``combined`` run per
pair, all in one command.

Each pair (A, B) is a run of the ``combined`` dataset with parts A and B and the ``cross`` split: A's
training emotions against B's unseen test emotions (a dataset's own preset, ``part_splits``, or the CRN
paper's emotions found through the emotion vocabulary). The diagonal (A, A) is ``combined`` with the one
part A: its own class-disjoint split. Every part is read, de-duplicated and brought to the run's geometry the
same way in every pair, and the test episodes of a ``combined`` run are seeded by its test classes' images
alone (``Protocol.test_seed_parts``): every row of a column is tested on the same episodes. The runs are
ordinary run folders (``<run id>-<A>-to-<B>``), so they resume, aggregate and publish like any other;
``reporting.cross`` turns them into the train × test matrix.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import yaml

from fewshot_bench.config import RunConfig
from fewshot_bench.engine.runner import slug
from fewshot_bench.errors import ConfigError, did_you_mean


@dataclass(frozen=True)
class CrossRun:
    """One ordered pair of the suite: the datasets' names and the run that trains on one, tests on the other
    (the same name twice: the in-domain diagonal)."""

    train: str
    test: str
    config: RunConfig

    @property
    def diagonal(self) -> bool:
        return self.train == self.test


def cross_runs(base: RunConfig, parts: list[str], run_id: str) -> list[CrossRun]:
    """The suite's runs: ``parts`` are ``name=path`` or ``name=plugin:path`` entries (the ``combined``
    dataset's syntax), ``base`` holds every other setting (methods, shots, seeds, budgets, image size), and its
    ``part_splits`` / ``class_map`` the per-dataset splits and class renames (keys ``NAME/CLASS``)."""
    from fewshot_bench.datasets.combined import parse_parts

    for key, value in (("dataset", base.dataset != RunConfig().dataset), ("data_root", base.data_root),
                       ("split", base.split), ("dataset_options", base.dataset_options)):
        if value:
            raise ConfigError(f"bench cross sets '{key}' for each pair itself; give the datasets as NAME=PLUGIN:PATH "
                              "arguments instead (and per-dataset splits with --part-splits)")
    entries = {part.name: text for part, text in zip(parse_parts(";".join(parts)), parts)}
    if len(entries) < 2:
        raise ConfigError("bench cross needs two or more datasets (NAME=PLUGIN:PATH ...); for one dataset use bench run")
    for name in base.part_splits:
        if name not in entries:
            raise ConfigError(f"--part-splits names dataset '{name}', which is not one of this suite's "
                              f"({', '.join(entries)}); {did_you_mean(name, entries)}".rstrip("; "))
    for key in base.class_map:
        part = key.split("/", 1)[0] if "/" in key else None
        if part not in entries:
            raise ConfigError(f"--class-map key '{key}' must name its dataset as NAME/CLASS (one of "
                              f"{', '.join(entries)}), e.g. {next(iter(entries))}/{key.rsplit('/', 1)[-1]}=angry")
    runs = []
    for train in entries:
        for test in entries:
            names = [train] if train == test else [train, test]
            options = {"parts": ";".join(entries[n] for n in names)}
            splits = {n: base.part_splits[n] for n in names if n in base.part_splits}
            if splits:
                options["splits"] = yaml.safe_dump(splits, default_flow_style=True, sort_keys=True).strip()
            class_map = {k: v for k, v in base.class_map.items() if k.split("/", 1)[0] in names}
            runs.append(CrossRun(train, test, replace(
                base, dataset="combined", dataset_name=f"{train}-to-{test}", split="cross",
                run_id=slug(f"{run_id}-{train}-to-{test}"), dataset_options=options, class_map=class_map,
                part_splits={})))
    return runs
