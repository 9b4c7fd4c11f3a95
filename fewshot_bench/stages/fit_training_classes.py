"""The ``fit_training_classes`` stage: a method takes statistics of the training classes after training
(SimpleShot's mean embedding), through its ``fit_training_classes`` hook."""

from __future__ import annotations

from typing import Any

from fewshot_bench.method import TrainingClasses
from fewshot_bench.registry import register_stage
from fewshot_bench.stages import CellContext, Stage


@register_stage("fit_training_classes")
class FitTrainingClasses(Stage):
    """Hands every image of the training classes to the method's hook (never a validation or test image)."""

    order = 40

    def applies(self, cell: CellContext) -> bool:
        return cell.method.fits_training_classes

    def run(self, cell: CellContext) -> dict[str, Any]:
        images = cell.protocol.training_images()
        cell.method.fit_training_classes(TrainingClasses(images.class_ids, images.indices, images.targets,
                                                         cell.builder.gather))
        return {"fitted_training_images": int(len(images.indices))}
