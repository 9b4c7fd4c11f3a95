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

from dataclasses import dataclass, fields
from typing import Any, ClassVar

import torch

from fewshot_bench.errors import ConfigError
from fewshot_bench.heads import HEADS
from fewshot_bench.method import FewShotMethod, MethodVariant, Optimisation, resolve_variant
from fewshot_bench.options import Option, Spec, format_label, resolve_options
from fewshot_bench.registry import METHODS

# The modules a pre-trained cell's numbers also depend on (its code version hashes them).
PRETRAIN_MODULES = ("fewshot_bench.pretraining", "fewshot_bench.engine.pretraining", "fewshot_bench.heads")


@dataclass(frozen=True)
class PretrainRecipe:
    """How a method's backbone is pre-trained on the training classes, as its paper states it.

    Attributes:
        epochs: passes over the training classes' images (0: no pre-training).
        batch: images per mini-batch.
        optimiser: ``adam`` or ``sgd`` (momentum 0.9).
        lr: learning rate.
        weight_decay: L2 penalty of the optimiser.
        milestones: epochs after which the learning rate is multiplied by ``gamma`` (comma-separated; empty:
            constant).
        gamma: the decay factor.
        head: the classifier over the training classes: ``linear`` (softmax) or ``cosine`` (Baseline++).
        source: where these values come from, shown by ``bench list methods --options``.
    """

    epochs: int = 0
    batch: int = 128
    optimiser: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 5e-4
    milestones: str = "30,50,80"
    gamma: float = 0.1
    head: str = "linear"
    source: str = ("the harness's default, Ye et al.'s Conv-4 pre-training (FEAT): Adam 1e-3, weight decay 5e-4, "
                   "batch 128, ×0.1 after epochs 30, 50 and 80")

    def as_options(self) -> tuple[Option, ...]:
        where = f"; the method's recipe: {self.source}" if self.source else ""
        return (
            Option("pretrain_epochs", int, self.epochs, "epochs of supervised pre-training on the training classes "
                   "(0: none)" + where, minimum=0),
            Option("pretrain_batch", int, self.batch, "pre-training mini-batch size", minimum=1),
            Option("pretrain_optimiser", str, self.optimiser, "pre-training optimiser (sgd: momentum 0.9)",
                   ("adam", "sgd")),
            Option("pretrain_lr", float, self.lr, "pre-training learning rate", minimum=0.0),
            Option("pretrain_weight_decay", float, self.weight_decay, "pre-training weight decay", minimum=0.0),
            Option("pretrain_milestones", str, self.milestones, "pre-training epochs after which the learning rate "
                   "is multiplied by pretrain_gamma (comma-separated; empty: constant)"),
            Option("pretrain_gamma", float, self.gamma, "pre-training learning-rate decay factor", minimum=0.0),
            Option("pretrain_head", str, self.head, "classifier over the training classes during pre-training",
                   HEADS),
        )

    def milestone_epochs(self) -> list[int]:
        """``milestones`` as sorted epoch numbers."""
        try:
            epochs = sorted(int(part) for part in self.milestones.replace(" ", "").split(",") if part)
        except ValueError:
            raise ConfigError(f"pretrain_milestones '{self.milestones}' is not a comma-separated list of epochs; "
                              "write e.g. pretrain_milestones=30,50") from None
        if any(epoch < 1 for epoch in epochs):
            raise ConfigError(f"pretrain_milestones '{self.milestones}' names an epoch below 1; epochs count from 1")
        return epochs


DEFAULT_RECIPE = PretrainRecipe()
PRETRAIN_OPTIONS = tuple(option.name for option in DEFAULT_RECIPE.as_options())
_FIELD_OF = {option: field.name for option, field in zip(PRETRAIN_OPTIONS, fields(PretrainRecipe))}


def declares_pretraining(method_class: type[FewShotMethod]) -> bool:
    """Whether the method declares its own pre-training recipe (its options include the stage's)."""
    return "pretrain_epochs" in {option.name for option in method_class.all_options()}


def resolve(spec: Spec) -> MethodVariant:
    """``resolve_variant`` that also accepts the pre-training options for methods without a recipe of their own
    (with the default recipe). Without pre-training options the variant is ``resolve_variant``'s."""
    cls = METHODS.get(spec.name)
    given = {key: value for key, value in spec.options if key in PRETRAIN_OPTIONS}
    if not given or not isinstance(cls, type) or declares_pretraining(cls):
        return resolve_variant(spec)
    plain = resolve_variant(Spec(spec.name, tuple((k, v) for k, v in spec.options if k not in PRETRAIN_OPTIONS)))
    declared = DEFAULT_RECIPE.as_options()
    pretraining = resolve_options(declared, given, owner=f"method '{spec.name}'")
    label = format_label(spec.name, {**plain.option_dict, **pretraining}, (*cls.all_options(), *declared))
    return MethodVariant(spec.name, (*plain.options, *pretraining.items()), label)


def recipe_of(variant: MethodVariant) -> PretrainRecipe | None:
    """The variant's pre-training recipe, or None when it does not pre-train (no recipe, or 0 epochs)."""
    options = variant.option_dict
    if not options.get("pretrain_epochs"):
        return None
    recipe = PretrainRecipe(**{_FIELD_OF[name]: options[name] for name in PRETRAIN_OPTIONS}, source="")
    recipe.milestone_epochs()  # a malformed list fails before any training
    return recipe


def method_options(options: dict[str, Any]) -> dict[str, Any]:
    """``options`` without the pre-training ones (what a method's constructor needs)."""
    return {key: value for key, value in options.items() if key not in PRETRAIN_OPTIONS}


class PretrainedMethod(FewShotMethod):
    """Base class of methods whose paper pre-trains the backbone as a classifier over the training classes.

    Subclasses set ``pretraining`` to their paper's recipe, and ``meta_trained = False`` when the paper does
    no episodic training after it (Baseline, Baseline++, SimpleShot: the runner then skips meta-training and
    the cell records 0 training episodes). ``embedding`` turns the backbone's feature maps into the vectors
    the pre-training head (and the method) works on, by the ``pool`` option: ``flatten``, global ``mean`` or
    ``max`` pooling, or ``auto`` — the subclass's ``conv4_pool`` for Conv-4 (what its paper did with a Conv-4)
    and mean pooling for residual networks (every paper here average-pools its ResNets). A method that needs
    statistics of the training classes' embeddings after the stage (SimpleShot's mean) implements
    ``set_base_mean``.
    """

    pretraining: ClassVar[PretrainRecipe] = PretrainRecipe(epochs=100)
    meta_trained: ClassVar[bool] = True
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

    @classmethod
    def all_options(cls) -> tuple[Option, ...]:
        return (*super().all_options(), *cls.pretraining.as_options())

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
