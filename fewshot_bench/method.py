"""The method contract: one small base class that every few-shot method implements.

A method is an ``nn.Module`` built around a backbone. The runner only ever calls:

* ``meta_batch_loss(tasks)`` during meta-training (default: the mean of ``loss(task)`` over the batch);
  ``batched_loss(tasks)`` instead when the run asks for batched episodes and the method supports them;
* ``predict(support, support_labels, query, n_way)`` at evaluation, returning ``(n_query, n_way)`` scores
  (higher = more likely). Query labels are never passed to ``predict``. The evaluator actually calls
  ``predict_episodes`` with ``episodes_per_prediction`` episodes at a time; its default calls ``predict`` on
  each, and a method whose test-time work is many tiny steps per episode (Baseline's fine-tuning) overrides
  it to run them for all the episodes at once.

``loss(task)`` defaults to cross-entropy on ``predict``'s scores, which is right for ProtoNet (logits) and
MatchingNet (log-probabilities: their log-softmax is themselves). Relation-style methods override it with
their own losses; MAML overrides ``predict`` to adapt on the support set with gradients enabled.

A method whose episode is "backbone on every image, then a head on the features" (ProtoNet, MatchingNet,
RN, CRN) may implement ``predict_features`` (and ``loss_features`` when its loss is not cross-entropy on
those scores) instead of ``predict``/``loss``. It then supports batched episodes: the images of a whole
meta-batch go through the backbone in one call and each episode's head and loss run on its slice of the
features. Batch norm then normalises over the meta-batch rather than per episode, which is why it is a
run setting (``batch_episodes``), off by default.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fewshot_bench.errors import ConfigError, MethodContractError, did_you_mean
from fewshot_bench.options import Option, Spec, format_label, resolve_options
from fewshot_bench.recipes import PRETRAIN_OPTIONS, Optimisation, PretrainRecipe, recipe_from_options
from fewshot_bench.registry import BACKBONES, METHODS

__all__ = ["FewShotMethod", "MethodVariant", "Optimisation", "ParameterGroup", "PretrainRecipe", "Task",
           "TrainingClasses", "check_scores", "resolve_variant"]


@dataclass
class Task:
    """One episode as tensors on the method's device.

    Attributes:
        support: (n_way * n_shot, C, H, W) float images, class-major.
        support_labels: (n_way * n_shot,) int64 in ``[0, n_way)``.
        query: (n_way * n_query, C, H, W) float images, class-major.
        query_labels: (n_way * n_query,) int64 in ``[0, n_way)``; used by losses only.
        n_way: number of classes in the episode.
        n_shot: support images per class.
    """

    support: torch.Tensor
    support_labels: torch.Tensor
    query: torch.Tensor
    query_labels: torch.Tensor
    n_way: int
    n_shot: int


BACKBONE_OPTION = "backbone"


# The options every method has besides its own: the backbone and its training recipe. Each is also a run key
# that, when set, applies to every variant that does not name it.
TRAINING_OPTIONS = ("lr", "lr_step", "lr_gamma", "grad_clip")
COMMON_OPTIONS = (BACKBONE_OPTION, *TRAINING_OPTIONS)
# Initial weights from a file (the ``load_weights`` stage). Every method has these options, but a variant carries
# them only when they are given: a variant without them is exactly what it was before they existed (same
# resolved options, label and records).
WEIGHTS_OPTIONS = (
    Option("weights", str, "", "start from the weights in this file (a state dict saved with torch.save, read "
           "with weights_only=True so nothing in it runs; a run's cell checkpoint works too); recorded by content "
           "hash. With --train-episodes 0 the cell evaluates them as they are", omitted_at_default=True),
    Option("weights_layout", str, "native", "how the file's tensors map onto the method: native (its own "
           "state_dict) or an adapter the method declares for another code's checkpoints (weight_layouts; "
           "relationnet and crn: csrn)", omitted_at_default=True),
)
WEIGHTS_KEYS = tuple(option.name for option in WEIGHTS_OPTIONS)
# How a method with a feature head embeds an episode in training: one backbone call over support and query
# (``joint``: batch norm normalises over the whole episode) or one call each (``separate``: each set by its own
# statistics, as Sung et al.'s and CSRN's code and easyfsl do). In evaluation batch norm uses its running
# statistics, so the two give the same scores there. Carried by a variant only when it differs from the method's
# default (``FewShotMethod.embedding_calls``), so existing variants keep their labels and records.
EMBEDDING_OPTION = "embedding_calls"
EMBEDDING_CHOICES = ("joint", "separate")


@dataclass(frozen=True)
class ParameterGroup:
    """Parameters that train at their own multiple of the variant's learning rate (``lr_scale``), e.g. FEAT's
    attention at 10× (Ye et al. give it its own optimiser group). The schedule decays every group alike."""

    params: list[nn.Parameter]
    lr_scale: float = 1.0


@dataclass(frozen=True)
class TrainingClasses:
    """The training classes' images as the fit stage hands them to ``fit_training_classes``.

    Attributes:
        class_ids: the dataset's ids of the training classes, sorted.
        indices: (N,) dataset indices of every image of those classes.
        targets: (N,) their class as 0..C-1 in ``class_ids`` order.
        load: images at some ``indices`` as a normalised (n, C, H, W) tensor on the method's device, in the
            given memory format.
    """

    class_ids: tuple[int, ...]
    indices: np.ndarray
    targets: np.ndarray
    load: Callable[[np.ndarray, torch.memory_format], torch.Tensor]

    def mean_embedding(self, method: "FewShotMethod", batch: int = 512) -> torch.Tensor:
        """The mean of ``method.embedding`` over every image (SimpleShot's centring vector), in eval mode, in
        batches of ``batch`` in index order (float32 sums)."""
        method.eval()
        total = None
        with torch.no_grad():
            for start in range(0, len(self.indices), batch):
                maps = method.backbone(self.load(self.indices[start:start + batch], method.memory_format))
                part = method.embedding(maps).float().sum(0)
                total = part if total is None else total + part
        method.train()
        return total / len(self.indices)


class FewShotMethod(nn.Module):
    """Base class of every few-shot method.

    Subclasses declare ``options`` (typed, with defaults), a ``default_backbone`` name, their paper's
    ``optimisation`` (learning rate, schedule, clipping; default: Adam 1e-3 halved every 2000 episodes), and implement
    ``predict``; they override ``loss`` when their training objective is not cross-entropy on the scores.
    The constructor receives the built backbone, the input image shape and the resolved options.

    What else a method does is declared here, with defaults, and the cell pipeline (``fewshot_bench.stages``)
    is chosen from these declarations — the engine never probes a method for attributes:

    * ``pretraining``: the paper's supervised pre-training recipe (None: the method does not declare one; any
      variant can still ask for the stage with ``pretrain_epochs``);
    * ``meta_trained``: whether the method trains on episodes (Baseline and SimpleShot do not);
    * ``transductive``: whether ``predict`` uses the query set as a whole (recorded with every cell, so a table
      can tell such results apart; the scores must still follow the queries when they are permuted);
    * ``fits_training_classes`` with the hook ``fit_training_classes``: statistics of the training classes
      taken after training (SimpleShot's mean embedding);
    * ``class_map_figure`` with the hook ``episode_class_maps``: the class maps the feature-map figure draws;
    * hooks with defaults: ``embedding`` (feature maps to vectors, used by the pre-training head),
      ``parameter_groups`` (per-group learning rates), ``clip_groups`` (per-group gradient clipping);
    * ``weight_layouts``: adapters that read other code's checkpoints into the method (``weights_layout``);
    * ``episodes_per_prediction`` with the hook ``predict_episodes``: how many test episodes the evaluator hands
      over at once (1 by default; each score matrix must equal ``predict`` on its episode alone);
    * ``code_modules``: modules besides the class's own files that compute its numbers (exact provenance).
    """

    options: ClassVar[tuple[Option, ...]] = ()
    default_backbone: ClassVar[str] = "conv4"
    optimisation: ClassVar[Optimisation] = Optimisation()
    pretraining: ClassVar[PretrainRecipe | None] = None
    meta_trained: ClassVar[bool] = True
    transductive: ClassVar[bool] = False
    fits_training_classes: ClassVar[bool] = False
    class_map_figure: ClassVar[bool] = False
    code_modules: ClassVar[tuple[str, ...]] = ()
    paper: ClassVar[str] = ""
    # Layout of the images the runner hands to the method: channels-last convolutions are faster with
    # oneDNN on CPU and with tensor cores on CUDA for batched episodes; tiny-batch loops (MAML's inner
    # steps) can prefer the default layout.
    memory_format: ClassVar[torch.memory_format] = torch.channels_last
    # Whether ``--compile`` may torch.compile the backbone; methods that call it with swapped-in weights
    # (MAML's fast weights) would recompile at every inner step.
    compilable: ClassVar[bool] = True
    # Test episodes per ``predict_episodes`` call. More than one only pays where an episode's own work is too
    # small to keep the device busy (hundreds of tiny fitting steps); every episode's images are then held at once.
    episodes_per_prediction: ClassVar[int] = 1
    # Adapters from other code's checkpoints (the object torch.load returns) to this method's state_dict, by layout
    # name: ``mymethod[weights=FILE,weights_layout=NAME]`` (the ``load_weights`` stage).
    weight_layouts: ClassVar[dict[str, Callable[[Any], dict[str, torch.Tensor]]]] = {}
    # The default of the ``embedding_calls`` option (feature-head methods only): what the method's reference code
    # does, or the documented choice where it has none.
    embedding_calls: ClassVar[str] = "joint"

    def __init__(self, backbone: nn.Module, image_shape: tuple[int, int, int], **options: Any) -> None:
        super().__init__()
        self.backbone = backbone
        self.image_shape = image_shape
        self.config = options
        # A variant's choice, else the method's default (the option exists on feature-head methods only).
        self.embedding_calls = options.get(EMBEDDING_OPTION, type(self).embedding_calls)

    def predict(self, support: torch.Tensor, support_labels: torch.Tensor, query: torch.Tensor,
                n_way: int) -> torch.Tensor:
        """Scores of shape (n_query, n_way) for the query images, given the labelled support set."""
        if not self.has_feature_head():
            raise NotImplementedError(f"{type(self).__name__} implements neither predict nor predict_features")
        support_features, query_features = self.embed(support, query)
        return self.predict_features(support_features, support_labels, query_features, n_way)

    def predict_episodes(self, supports: list[torch.Tensor], support_labels: list[torch.Tensor],
                         queries: list[torch.Tensor], n_way: int) -> list[torch.Tensor]:
        """``predict`` for several test episodes of one shape (at most ``episodes_per_prediction``): one score
        matrix per episode, each equal to what ``predict`` gives for that episode alone. The default calls
        ``predict`` episode by episode."""
        return [self.predict(support, labels, query, n_way)
                for support, labels, query in zip(supports, support_labels, queries)]

    def loss(self, task: Task) -> torch.Tensor:
        """Meta-training loss of one episode (a scalar)."""
        if self.has_feature_head():
            return self.loss_features(task, *self.embed(task.support, task.query))
        scores = self.predict(task.support, task.support_labels, task.query, task.n_way)
        check_scores(self, scores, len(task.query), task.n_way)
        return F.cross_entropy(scores, task.query_labels)

    def meta_batch_loss(self, tasks: list[Task]) -> torch.Tensor:
        """Meta-training loss of a batch of episodes: the mean of the per-episode losses."""
        return torch.stack([self.loss(task) for task in tasks]).mean()

    def embed(self, support: torch.Tensor, query: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Backbone features of an episode's support and query images: from one backbone call, or from one call
        each with ``embedding_calls=separate``."""
        if self.embedding_calls == "separate":
            return self.backbone(support), self.backbone(query)
        features = self.backbone(torch.cat([support, query]))
        return features[: len(support)], features[len(support):]

    def predict_features(self, support_features: torch.Tensor, support_labels: torch.Tensor,
                         query_features: torch.Tensor, n_way: int) -> torch.Tensor:
        """``predict`` from backbone features; implementing it makes the method support batched episodes."""
        raise NotImplementedError

    def loss_features(self, task: Task, support_features: torch.Tensor, query_features: torch.Tensor) -> torch.Tensor:
        """``loss`` from backbone features (default: cross-entropy on ``predict_features``'s scores)."""
        scores = self.predict_features(support_features, task.support_labels, query_features, task.n_way)
        check_scores(self, scores, len(query_features), task.n_way)
        return F.cross_entropy(scores, task.query_labels)

    def clip_groups(self) -> list[list[nn.Parameter]]:
        """The parameter groups whose gradient norms ``grad_clip`` bounds separately: the backbone and the rest
        (Sung et al.'s and CSRN's code clip encoder and relation module each at 0.5)."""
        backbone = list(self.backbone.parameters())
        in_backbone = {id(p) for p in backbone}
        head = [p for p in self.parameters() if id(p) not in in_backbone]
        return [group for group in (backbone, head) if group]

    def parameter_groups(self) -> list[ParameterGroup]:
        """The optimiser's parameter groups (default: every parameter at the variant's learning rate)."""
        return [ParameterGroup(list(self.parameters()))]

    def embedding(self, feature_maps: torch.Tensor) -> torch.Tensor:
        """(N, D) embeddings from the backbone's feature maps (default: flattened), what a pre-training head and
        ``TrainingClasses.mean_embedding`` work on."""
        return feature_maps.flatten(1)

    def fit_training_classes(self, training: TrainingClasses) -> None:
        """Take what the method needs from the training classes after training (declared by
        ``fits_training_classes``; the fit stage calls it once per cell)."""
        raise NotImplementedError(f"{type(self).__name__} declares fits_training_classes but does not implement "
                                  "fit_training_classes")

    def episode_class_maps(self, task: Task) -> tuple[torch.Tensor, float]:
        """(n_way, C, h, w) class maps of ``task`` as the method compares queries with them, and one number
        summarising how far apart they are (declared by ``class_map_figure``; the feature-map figure)."""
        raise NotImplementedError(f"{type(self).__name__} declares class_map_figure but does not implement "
                                  "episode_class_maps")

    @classmethod
    def has_feature_head(cls) -> bool:
        """Whether the method splits into backbone + head (implements ``predict_features``)."""
        return cls.predict_features is not FewShotMethod.predict_features

    @classmethod
    def supports_batched_episodes(cls) -> bool:
        """Whether ``batched_loss`` batches: a feature head whose training loss is ``loss_features``."""
        return cls.has_feature_head() and cls.loss is FewShotMethod.loss

    def batched_loss(self, tasks: list[Task]) -> torch.Tensor:
        """The meta-batch's loss with every episode's images in one backbone call (batched episodes).

        Equals ``meta_batch_loss`` when batch norm uses running statistics; in training mode batch norm
        normalises over the whole meta-batch instead of each episode. Methods without ``predict_features``
        fall back to ``meta_batch_loss``.
        """
        if not self.supports_batched_episodes() or len(tasks) < 2:
            return self.meta_batch_loss(tasks)
        if self.embedding_calls == "separate":  # every support set in one call, every query set in another (CSRN)
            supports = self.backbone(torch.cat([task.support for task in tasks])).split([len(t.support) for t in tasks])
            queries = self.backbone(torch.cat([task.query for task in tasks])).split([len(t.query) for t in tasks])
            pairs = list(zip(supports, queries))
        else:
            parts = [images for task in tasks for images in (task.support, task.query)]
            features = self.backbone(torch.cat(parts)).split([len(images) for images in parts])
            pairs = [(features[2 * i], features[2 * i + 1]) for i in range(len(tasks))]
        return torch.stack([self.loss_features(task, *pair) for task, pair in zip(tasks, pairs)]).mean()

    @classmethod
    def all_options(cls) -> tuple[Option, ...]:
        """The method's declared options plus those every method has: the backbone and the training recipe, and
        the pre-training options when the method declares a pre-training recipe."""
        backbone = Option(BACKBONE_OPTION, str, cls.default_backbone, "feature extractor (see `bench list backbones`)")
        staged = cls.pretraining.as_options() if cls.pretraining is not None else ()
        embedding = (Option(EMBEDDING_OPTION, str, cls.embedding_calls, "training-time backbone calls per episode: "
                            "joint (support and query together) or separate (batch norm statistics per set)",
                            choices=EMBEDDING_CHOICES, omitted_at_default=True),) if cls.has_feature_head() else ()
        return (*cls.options, backbone, *cls.optimisation.as_options(), *staged, *WEIGHTS_OPTIONS, *embedding)


@dataclass(frozen=True)
class MethodVariant:
    """A registered method with resolved options and the label it has in every table."""

    name: str
    options: tuple[tuple[str, Any], ...]
    label: str
    # The class itself for a variant of a class that is not registered (the conformance kit checks those too).
    unregistered_class: type[FewShotMethod] | None = field(default=None, compare=False, repr=False)

    @property
    def option_dict(self) -> dict[str, Any]:
        return dict(self.options)

    @property
    def method_class(self) -> type[FewShotMethod]:
        return self.unregistered_class or METHODS.get(self.name)

    @property
    def training(self) -> dict[str, Any]:
        """The variant's training recipe (``lr``, ``lr_step``, ``lr_gamma``, ``grad_clip``)."""
        options = self.option_dict
        return {key: options[key] for key in TRAINING_OPTIONS}

    def check_image_shape(self, image_shape: tuple[int, int, int]) -> None:
        """Refuse images too small for the variant's backbone (its poolings would leave nothing), in one line,
        before any training."""
        from fewshot_bench.backbones import feature_shape

        name = self.option_dict[BACKBONE_OPTION]
        try:
            shape = feature_shape(BACKBONES.get(name)(image_shape[0]), image_shape)
        except RuntimeError:
            shape = (0,)
        if 0 in shape:
            raise ConfigError(f"{image_shape[1]}×{image_shape[2]} images are too small for backbone '{name}' of "
                              f"{self.label}; use larger images (--image-size) or another backbone")

    @property
    def pretraining(self) -> PretrainRecipe | None:
        """The variant's pre-training recipe, or None when it does not pre-train (no recipe, or 0 epochs)."""
        return recipe_from_options(self.option_dict)

    def build(self, image_shape: tuple[int, int, int], seed: int | None = None) -> FewShotMethod:
        """The variant's method for images of ``image_shape``, its weights drawn after ``torch.manual_seed(seed)``
        when a seed is given (the one way a cell, the conformance kit and the figures build a method)."""
        return build_method(self.method_class, self.option_dict, image_shape, seed)


def build_method(cls: type[FewShotMethod], options: dict[str, Any], image_shape: tuple[int, int, int],
                 seed: int | None = None) -> FewShotMethod:
    """``cls`` with resolved ``options`` (every option of ``all_options``) for images of ``image_shape``: the
    backbone by name, the recipe options left to the stages; weights drawn after ``torch.manual_seed(seed)`` when
    a seed is given."""
    # Options a variant omits at their default (``Option.omitted_at_default``) are given to the method as declared.
    options = {**{o.name: o.default for o in cls.all_options() if o.omitted_at_default}, **options}
    options = {k: v for k, v in options.items()
               if k not in TRAINING_OPTIONS and k not in PRETRAIN_OPTIONS and k not in WEIGHTS_KEYS}
    backbone_name = options.pop(BACKBONE_OPTION)
    if seed is not None:
        torch.manual_seed(seed)
    backbone = BACKBONES.get(backbone_name)(image_shape[0])
    method = cls(backbone, image_shape, **options)
    return method.to(memory_format=method.memory_format)


def check_scores(method: "FewShotMethod", scores: torch.Tensor, n_query: int, n_way: int) -> None:
    """Refuse scores that are not (n_query, n_way): extra columns would be argmax'ed (or trained on) silently.
    Shapes are host-side metadata, so the check costs no device synchronisation."""
    if tuple(scores.shape) != (n_query, n_way):
        raise MethodContractError(
            f"method {type(method).__name__} returned scores of shape {tuple(scores.shape)} for {n_query} queries "
            f"of a {n_way}-way episode; predict must return (n_query, n_way) = ({n_query}, {n_way})")


def resolve_variant(spec: Spec) -> MethodVariant:
    """Look up ``spec.name`` in the method registry and validate its options."""
    cls = METHODS.get(spec.name)
    if not (isinstance(cls, type) and issubclass(cls, FewShotMethod)):
        raise ConfigError(f"method '{spec.name}' is not a FewShotMethod subclass; see docs on plugins")
    declared = cls.all_options()
    resolved = resolve_options(declared, spec.option_dict, owner=f"method '{spec.name}'")
    if resolved[BACKBONE_OPTION] not in BACKBONES:
        BACKBONES.get(resolved[BACKBONE_OPTION])  # raises the standard unknown-name error
    layout = resolved["weights_layout"]
    if layout != "native" and layout not in cls.weight_layouts:
        known = ", ".join(["native", *cls.weight_layouts])
        hint = did_you_mean(layout, ["native", *cls.weight_layouts])
        raise ConfigError(f"method '{spec.name}' has no weights layout '{layout}'; {hint}layouts: {known}")
    if layout != "native" and not resolved["weights"]:
        raise ConfigError(f"method '{spec.name}': weights_layout={layout} needs a file, weights=PATH")
    omitted = {option.name: option.default for option in declared if option.omitted_at_default}
    resolved = {k: v for k, v in resolved.items() if k not in omitted or v != omitted[k]}
    label = format_label(spec.name, resolved, declared)
    return MethodVariant(spec.name, tuple(resolved.items()), label)


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
