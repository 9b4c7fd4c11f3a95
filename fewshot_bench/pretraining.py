"""The supervised pre-training stage as methods and runs declare it: its recipe, options and variants.

Baseline, Baseline++, SimpleShot and FEAT start from a backbone trained as an ordinary classifier over the
training classes (standard mini-batches, cross-entropy) before, or instead of, episodic meta-training. A method
that needs the stage declares its paper's ``pretraining`` recipe (a ``PretrainRecipe``) and adds its options to
``all_options``; any other method gets the stage through the same options (``protonet[pretrain_epochs=50]``,
or ``--pretrain-epochs`` for every variant of a run), with the harness's default recipe. A variant that names
no pre-training option is exactly the variant it always was (same options, label and code version).

The stage itself (the loop, its checkpoints and the cache of pre-trained backbones) is
``fewshot_bench.engine.pretraining``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from fewshot_bench.method import FewShotMethod, MethodVariant, Optimisation, resolve_variant
from fewshot_bench.options import Option, Spec, format_label, resolve_options
from fewshot_bench.recipes import DEFAULT_RECIPE, PRETRAIN_OPTIONS, PretrainRecipe
from fewshot_bench.registry import METHODS


def declares_pretraining(method_class: type[FewShotMethod]) -> bool:
    """Whether the method declares its own pre-training recipe (its options then include the stage's)."""
    return method_class.pretraining is not None


def resolve(spec: Spec) -> MethodVariant:
    """``resolve_variant`` that also accepts the pre-training options for methods without a recipe of their own
    (with the default recipe). Without pre-training options the variant is ``resolve_variant``'s."""
    cls = METHODS.get(spec.name)
    given = {key: value for key, value in spec.options if key in PRETRAIN_OPTIONS}
    if not given or not isinstance(cls, type) or not issubclass(cls, FewShotMethod) or declares_pretraining(cls):
        return resolve_variant(spec)
    plain = resolve_variant(Spec(spec.name, tuple((k, v) for k, v in spec.options if k not in PRETRAIN_OPTIONS)))
    declared = DEFAULT_RECIPE.as_options()
    pretraining = resolve_options(declared, given, owner=f"method '{spec.name}'")
    label = format_label(spec.name, {**plain.option_dict, **pretraining}, (*cls.all_options(), *declared))
    return MethodVariant(spec.name, (*plain.options, *pretraining.items()), label)


def recipe_of(variant: MethodVariant) -> PretrainRecipe | None:
    """The variant's pre-training recipe, or None when it does not pre-train (no recipe, or 0 epochs)."""
    return variant.pretraining


def method_options(options: dict[str, Any]) -> dict[str, Any]:
    """``options`` without the pre-training ones (what a method's constructor needs)."""
    return {key: value for key, value in options.items() if key not in PRETRAIN_OPTIONS}


class PretrainedMethod(FewShotMethod):
    """Base class of methods whose paper pre-trains the backbone as a classifier over the training classes.

    Subclasses set ``pretraining`` to their paper's recipe, and ``meta_trained = False`` when the paper does
    no episodic training after it (Baseline, Baseline++, SimpleShot: the runner then skips meta-training and
    the cell records 0 training episodes). ``embedding`` (the contract's hook) turns the backbone's feature maps into the vectors
    the pre-training head (and the method) works on, by the ``pool`` option: ``flatten``, global ``mean`` or
    ``max`` pooling, or ``auto`` — the subclass's ``conv4_pool`` for Conv-4 (what its paper did with a Conv-4)
    and mean pooling for residual networks (every paper here average-pools its ResNets). A method that needs
    statistics of the training classes' embeddings after training (SimpleShot's mean) declares
    ``fits_training_classes`` and implements ``fit_training_classes``.
    """

    pretraining: ClassVar[PretrainRecipe | None] = PretrainRecipe(epochs=100)
    # Without episodic training the meta-training recipe is never used; its options say so.
    optimisation: ClassVar[Optimisation] = Optimisation(source="used only if the method meta-trains")
    conv4_pool: ClassVar[str] = "flatten"
    # Modules besides the class's own file (and its bases') whose code the method's numbers depend on.
    code_modules: ClassVar[tuple[str, ...]] = ("fewshot_bench.heads",)

    def __init__(self, backbone, image_shape: tuple[int, int, int], **options: Any) -> None:
        super().__init__(backbone, image_shape, **method_options(options))
        pool = self.config.get("pool", "auto")
        if pool == "auto":
            from fewshot_bench.backbones import Conv4, RelationEncoder

            pool = self.conv4_pool if isinstance(backbone, (Conv4, RelationEncoder)) else "mean"
        self.pool = pool

    @staticmethod
    def pool_option(conv4_pool: str) -> Option:
        """The ``pool`` option, its ``auto`` described for a method whose paper used ``conv4_pool`` on Conv-4."""
        return Option("pool", str, "auto", f"embedding from the feature maps: flatten, mean or max pooling; auto: "
                      f"{conv4_pool} for Conv-4 (the paper's), mean for ResNets", ("auto", "flatten", "mean", "max"))

    def embedding(self, feature_maps: torch.Tensor) -> torch.Tensor:
        """(N, D) embeddings from the backbone's (N, C, H, W) feature maps."""
        if self.pool == "mean":
            return feature_maps.mean(dim=(2, 3))
        if self.pool == "max":
            return feature_maps.amax(dim=(2, 3))
        return feature_maps.flatten(1)

    def embedding_dim(self) -> int:
        """D of ``embedding`` for this method's backbone and image shape."""
        from fewshot_bench.backbones import feature_shape

        channels, height, width = feature_shape(self.backbone, self.image_shape)
        return channels * height * width if self.pool == "flatten" else channels
