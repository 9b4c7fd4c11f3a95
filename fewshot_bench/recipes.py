"""The training recipes a method declares as its paper states them: meta-training (``Optimisation``) and the
supervised pre-training stage (``PretrainRecipe``). Both become options of every variant (``protonet[lr_step=0]``,
``protonet[pretrain_epochs=50]``); they live apart from the method contract so that the contract, the stage and
the options can all import them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from fewshot_bench.errors import ConfigError
from fewshot_bench.heads import HEADS
from fewshot_bench.options import Option


@dataclass(frozen=True)
class Optimisation:
    """A method's training recipe as its paper (or the reference code) states it: Adam's learning rate, a step
    schedule and gradient clipping. Every method gets these as options (``protonet[lr_step=0]``), and the run
    keys ``lr``/``lr_step``/``lr_gamma``/``grad_clip`` set them for every variant that does not name its own.

    Attributes:
        lr: Adam's learning rate.
        lr_step: training episodes between two multiplications of the learning rate by ``lr_gamma``
            (0: constant).
        lr_gamma: the decay factor.
        grad_clip: largest gradient norm per step (0: no clipping).
        source: where these values come from, shown by ``bench list methods --options``.
    """

    lr: float = 1e-3
    lr_step: int = 2000
    lr_gamma: float = 0.5
    grad_clip: float = 0.0
    source: str = "the harness's default (ProtoNet's schedule)"

    def as_options(self) -> tuple[Option, ...]:
        where = f"; the method's recipe: {self.source}" if self.source else ""
        return (
            Option("lr", float, self.lr, "Adam learning rate" + where, minimum=0.0),
            Option("lr_step", int, self.lr_step, "training episodes between learning-rate decays (0: constant)",
                   minimum=0),
            Option("lr_gamma", float, self.lr_gamma, "learning-rate decay factor", minimum=0.0),
            Option("grad_clip", float, self.grad_clip, "largest gradient norm per step (0: no clipping)", minimum=0.0),
        )



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

    def facts(self) -> dict:
        """The recipe's values without its ``source`` text: what a cell records and a pre-training key hashes."""
        return {field.name: getattr(self, field.name) for field in fields(self) if field.name != "source"}

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


def recipe_from_options(options: dict) -> PretrainRecipe | None:
    """The pre-training recipe that resolved variant ``options`` ask for, or None when they do not pre-train (no
    pre-training options, or 0 epochs). A malformed milestone list fails here, before any training."""
    if not options.get("pretrain_epochs"):
        return None
    recipe = PretrainRecipe(**{_FIELD_OF[name]: options[name] for name in PRETRAIN_OPTIONS}, source="")
    recipe.milestone_epochs()
    return recipe
