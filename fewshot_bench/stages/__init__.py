"""The stages of a cell: the steps between building a method and storing its record, each in its own file.

A cell (one method variant at one shot and seed) is a pipeline of stages run in ``order``:

====  ======================  ===============================================================================
 10   ``pretrain``            supervised pre-training on the training classes (variants with ``pretrain_epochs``)
 15   ``load_weights``        initial weights from a file (variants with ``weights=PATH``)
 20   ``compile``             ``torch.compile`` of the backbone (``--compile``, methods that are ``compilable``)
 30   ``meta_train``          episodic meta-training (methods that declare ``meta_trained``)
 40   ``fit_training_classes``  statistics of the training classes (methods that declare ``fits_training_classes``)
 50   ``evaluate``            accuracy on the setting's fixed test episodes (every cell)
 55   ``evaluate_seen``       accuracy on held-out images of the training classes (``--context seen``)
====  ======================  ===============================================================================

Which stages a cell runs follows from its variant's declarations (``FewShotMethod``'s capability attributes and
options) and the run's settings, never from probing a method for attributes. Each stage returns its own block of
the cell record; a stage that does not apply returns what the record says in its place (``skipped``). A new stage
is one file with one declaration::

    from fewshot_bench.registry import register_stage
    from fewshot_bench.stages import CellContext, Stage

    @register_stage("audit")
    class Audit(Stage):
        order = 60                      # after evaluate
        def applies(self, cell: CellContext) -> bool: ...
        def run(self, cell: CellContext) -> dict: return {"audit": {...}}

(a file in this package, a module of an installed package under the entry-point group ``fewshot_bench.stages``,
or a file given with ``--plugin``). The one function that runs a cell is ``fewshot_bench.engine.cell.run_cell``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch

if TYPE_CHECKING:
    from fewshot_bench.engine.training import Checkpointer, TrainSettings
    from fewshot_bench.episodic.episodes import EpisodeSet
    from fewshot_bench.episodic.protocol import Protocol
    from fewshot_bench.episodic.tasks import TaskBuilder
    from fewshot_bench.method import FewShotMethod, MethodVariant


@dataclass
class CellContext:
    """Everything a stage of one cell works with: the variant and its built method, the protocol and the
    device's task builder, the variant's training settings, the setting (shot, seed) and its fixed episodes,
    where progress goes and where training state is checkpointed. Stages may change ``method`` (its weights)
    and set ``compiled``; everything else is read-only."""

    variant: MethodVariant
    method: FewShotMethod
    protocol: Protocol
    builder: TaskBuilder
    settings: TrainSettings
    shot: int
    seed: int
    test_episodes: EpisodeSet
    val_episodes: EpisodeSet | None
    device: torch.device
    observer: Any
    checkpoint: Checkpointer | None = None
    pretrained_dir: Path | None = None
    code_version: str = ""
    compiled: bool = False


class Stage:
    """One step of a cell's pipeline. Subclasses set ``order`` (their place; ties by name), say when they
    apply and return their block of the cell record; register them with ``register_stage("name")``."""

    order: ClassVar[int] = 100

    def applies(self, cell: CellContext) -> bool:
        """Whether this cell runs the stage (default: always)."""
        return True

    def run(self, cell: CellContext) -> dict[str, Any]:
        """Do the stage's work on ``cell.method``; return the record fields it writes."""
        raise NotImplementedError

    def skipped(self, cell: CellContext) -> dict[str, Any]:
        """The record fields in place of ``run``'s when the stage does not apply (default: none)."""
        return {}
