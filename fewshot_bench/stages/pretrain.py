"""The ``pretrain`` stage: the backbone trained as an ordinary classifier over the training classes before
anything else (``fewshot_bench.engine.pretraining``), for variants whose options ask for it."""

from __future__ import annotations

from typing import Any

from fewshot_bench.engine.pretraining import pretrain, pretrain_key, weights_digest
from fewshot_bench.method import TRAINING_OPTIONS
from fewshot_bench.registry import register_stage
from fewshot_bench.stages import CellContext, Stage


@register_stage("pretrain")
class Pretrain(Stage):
    """Supervised pre-training, shared through the run folder by the cells that would pre-train the same
    backbone (the key names everything that decides it)."""

    order = 10

    def applies(self, cell: CellContext) -> bool:
        return cell.variant.pretraining is not None

    def run(self, cell: CellContext) -> dict[str, Any]:
        recipe, variant, settings = cell.variant.pretraining, cell.variant, cell.settings
        training = cell.protocol.training_images()
        facts = {"recipe": recipe.facts(), "method": variant.name,
                 "options": {k: v for k, v in variant.options if k not in TRAINING_OPTIONS},
                 "initial_backbone": weights_digest(cell.method.backbone), "classes": list(training.class_ids),
                 "data": cell.protocol.dataset.fingerprint, "image_shape": cell.protocol.dataset.image_shape,
                 "seed": cell.seed, "amp": settings.amp and cell.device.type == "cuda", "augment": settings.augment,
                 "device": cell.device.type, "code": cell.code_version}
        result = pretrain(cell.method, cell.builder, recipe, indices=training.indices, targets=training.targets,
                          key=pretrain_key(facts), folder=cell.pretrained_dir, seed=cell.seed, amp=settings.amp,
                          augment=settings.augment)
        return {"pretraining": {**recipe.facts(), **vars(result)}}

    def skipped(self, cell: CellContext) -> dict[str, Any]:
        return {"pretraining": None}
