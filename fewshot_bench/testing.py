"""A conformance kit for plugin authors: ``check_method`` and ``check_dataset``.

Call them in your own pytest suite::

    from fewshot_bench.testing import check_method
    from my_package.my_method import MyMethod

    def test_my_method_conforms():
        check_method(MyMethod)

Each check raises :class:`ConformanceError` (an ``AssertionError``) whose message says in one sentence
what is wrong and what the harness needs instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from fewshot_bench.data import DatasetPlugin, ImageDataset
from fewshot_bench.method import FewShotMethod, Task, build_method
from fewshot_bench.options import Option, resolve_options
from fewshot_bench.registry import BACKBONES, METHODS


class ConformanceError(AssertionError):
    """A plugin does not meet the harness's contract; the message explains how."""


def _fail(message: str) -> None:
    raise ConformanceError(message)


def _task(shape: tuple[int, int, int], n_way: int, shot: int, query: int, seed: int) -> Task:
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(n_way, *shape, generator=g)
    support = base.repeat_interleave(shot, 0) + 0.3 * torch.randn(n_way * shot, *shape, generator=g)
    queries = base.repeat_interleave(query, 0) + 0.3 * torch.randn(n_way * query, *shape, generator=g)
    labels = torch.arange(n_way)
    return Task(support, labels.repeat_interleave(shot), queries, labels.repeat_interleave(query), n_way, shot)


def _build(cls: type[FewShotMethod], shape: tuple[int, int, int], options: dict[str, Any], seed: int) -> FewShotMethod:
    resolved = resolve_options(cls.all_options(), options, owner=f"method '{cls.__name__}'")
    return build_method(cls, resolved, shape, seed)


# Episode shapes every method is checked on: several ways (a method hard-coding one N fails) and shots.
CHECKED_EPISODES = ((3, 1), (5, 5), (2, 3))


def _inputs_unchanged(name: str, what: str, task: Task, before: list[torch.Tensor]) -> None:
    """A method must not edit the episode's tensors in place: the runner reuses them (and CUDA graphs replay
    into the same buffers), so an edit would leak into the next call or the next method."""
    for label, tensor, original in zip(("support", "support_labels", "query", "query_labels"),
                                       (task.support, task.support_labels, task.query, task.query_labels), before):
        if not torch.equal(tensor, original):
            _fail(f"{name}.{what} modified the {label} tensor in place; work on a copy (e.g. x = x - mean, not "
                  "x -= mean)")


def _episode_checks(cls: type, name: str, image_shape: tuple[int, int, int], options: dict[str, Any],
                    n_way: int, shot: int, query: int) -> set[str]:
    """The per-episode checks on one episode shape; returns the names of the parameters ``loss`` reached."""
    task = _task(image_shape, n_way, shot, query, seed=10 * n_way + shot)
    where = f"a {n_way}-way {shot}-shot episode"
    model = _build(cls, image_shape, options, seed=0)
    for mode in ("train", "eval"):
        getattr(model, mode)()
        before = [t.clone() for t in (task.support, task.support_labels, task.query, task.query_labels)]
        context = torch.no_grad() if mode == "eval" else torch.enable_grad()
        try:
            with context:
                scores = model.predict(task.support, task.support_labels, task.query, n_way)
        except Exception as exc:
            _fail(f"{name}.predict failed on {where} in {mode} mode ({type(exc).__name__}: {exc}); the harness "
                  "runs any N-way K-shot episode the user asks for")
        _inputs_unchanged(name, "predict", task, before)
        if not isinstance(scores, torch.Tensor) or tuple(scores.shape) != (n_way * query, n_way):
            shape = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
            _fail(f"{name}.predict must return scores of shape (n_query, n_way) = ({n_way * query}, {n_way}) "
                  f"for {where} in {mode} mode, got {shape}")
        if not scores.dtype.is_floating_point or not torch.isfinite(scores).all():
            _fail(f"{name}.predict must return finite floating-point scores ({where}, {mode} mode)")
    model = _build(cls, image_shape, options, seed=0).eval()
    twin = _build(cls, image_shape, options, seed=0).eval()
    with torch.no_grad():
        first = model.predict(task.support, task.support_labels, task.query, n_way)
        again = twin.predict(task.support, task.support_labels, task.query, n_way)
    if not torch.allclose(first, again, atol=1e-5, rtol=1e-4):
        _fail(f"{name} is not deterministic: two models built after torch.manual_seed(0) give different scores "
              "for the same episode; draw randomness only from torch's seeded generators")
    with torch.no_grad():
        repeated = model.predict(task.support, task.support_labels, task.query, n_way)
    if not torch.allclose(first, repeated, atol=1e-5, rtol=1e-4):
        _fail(f"{name}.predict carries state from one episode to the next: the same episode scored twice in a row "
              f"gets other scores ({where}); keep nothing between calls (each episode stands alone)")
    if torch.allclose(first, first[:1].expand_as(first), atol=1e-6, rtol=1e-5):
        _fail(f"{name}.predict gives every query the same scores ({where}); scores must depend on the query image "
              "(a constant scorer is at chance whatever it learns)")
    order = torch.randperm(len(task.query), generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        permuted = model.predict(task.support, task.support_labels, task.query[order], n_way)
    if not torch.allclose(permuted, first[order], atol=1e-4, rtol=1e-3):
        _fail(f"{name}.predict depends on the order of the query images: shuffled queries must give the "
              "same scores, shuffled; a method must not rely on how the harness lays out (or labels) queries")
    # The support images of the first two classes swapped (labels kept): a few-shot method must read them.
    swapped_support = task.support.clone()
    first_class, second_class = slice(0, shot), slice(shot, 2 * shot)
    swapped_support[first_class], swapped_support[second_class] = task.support[second_class], task.support[first_class]
    with torch.no_grad():
        swapped = model.predict(swapped_support, task.support_labels, task.query, n_way)
    if torch.allclose(swapped, first, atol=1e-6, rtol=1e-5):
        _fail(f"{name}.predict ignores the support set: swapping the support images of two classes leaves "
              f"the scores unchanged ({where}); scores must come from comparing queries with the support set")
    model.train()
    before = [t.clone() for t in (task.support, task.support_labels, task.query, task.query_labels)]
    loss = model.loss(task)
    _inputs_unchanged(name, "loss", task, before)
    if not isinstance(loss, torch.Tensor) or loss.dim() != 0 or not torch.isfinite(loss):
        _fail(f"{name}.loss must return a finite scalar tensor ({where}), got {loss!r}")
    model.zero_grad()
    loss.backward()
    if not any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters()):
        _fail(f"{name}.loss does not propagate gradients to any parameter ({where}); the optimiser could "
              "never train it")
    return {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}


def _state_checks(cls: type[FewShotMethod], name: str, image_shape: tuple[int, int, int],
                  options: dict[str, Any]) -> None:
    """Predictions come from the trained weights and from the episode alone: training changes them, and neither
    an earlier episode nor the labels ``loss`` saw leak into a later ``predict``."""
    n_way, shot, query = 3, 2, 4
    first, second = _task(image_shape, n_way, shot, query, seed=21), _task(image_shape, n_way, shot, query, seed=22)
    model = _build(cls, image_shape, options, seed=0).eval()
    with torch.no_grad():
        alone = model.predict(first.support, first.support_labels, first.query, n_way)
        model.predict(second.support, second.support_labels, second.query, n_way)
        again = model.predict(first.support, first.support_labels, first.query, n_way)
    if not torch.allclose(alone, again, atol=1e-5, rtol=1e-4):
        _fail(f"{name}.predict carries state from one episode to the next: an episode scored again after another "
              "gets other scores; keep nothing between calls (each episode stands alone)")
    # The labels of a training episode (of the same shape as the test episode) must not reach a later test.
    model = _build(cls, image_shape, options, seed=0)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    trap = _task(image_shape, n_way, shot, query, seed=23)
    trap = Task(first.support, first.support_labels, first.query, trap.query_labels[torch.randperm(
        len(trap.query_labels), generator=torch.Generator().manual_seed(5))], n_way, shot)
    model.train()
    model.loss(trap)
    model.load_state_dict(state)  # undo what the forward pass may update (batch-norm statistics)
    with torch.no_grad():
        after = model.eval().predict(first.support, first.support_labels, first.query, n_way)
    if not torch.allclose(alone, after, atol=1e-5, rtol=1e-4):
        _fail(f"{name}.predict depends on an earlier call of loss (its query labels or other state kept outside "
              "the weights): the same test episode scores differently after loss saw a training episode; keep no "
              "state from loss that predict reads")
    # Training must change what the method predicts: a method scoring with an untrained copy would not.
    model = _build(cls, image_shape, options, seed=0)
    from fewshot_bench.engine.training import make_optimiser

    optimiser = make_optimiser(model, lr=1e-2)
    model.train()
    for seed in (31, 32, 33):
        optimiser.zero_grad()
        model.loss(_task(image_shape, n_way, shot, query, seed=seed)).backward()
        optimiser.step()
    with torch.no_grad():
        trained = model.eval().predict(first.support, first.support_labels, first.query, n_way)
    if torch.allclose(alone, trained, atol=1e-6, rtol=1e-5):
        _fail(f"{name}.predict does not depend on the trained weights: three optimiser steps on loss leave its "
              "scores unchanged; predict must use the parameters that training updates (not a copy kept aside)")


def _hooks_check(cls: type[FewShotMethod], name: str, image_shape: tuple[int, int, int],
                 options: dict[str, Any]) -> None:
    """The contract's hooks with defaults, whatever the method overrides: parameter groups, embedding, and the
    class maps where the method declares ``class_map_figure``."""
    model = _build(cls, image_shape, options, seed=0)
    seen: dict[int, int] = {}
    for group in model.parameter_groups():
        if not (isinstance(group.lr_scale, (int, float)) and 0 < group.lr_scale < float("inf")):
            _fail(f"{name}.parameter_groups gives a group an lr_scale of {group.lr_scale!r}; use a positive number")
        for parameter in group.params:
            seen[id(parameter)] = seen.get(id(parameter), 0) + 1
    for parameter_name, parameter in model.named_parameters():
        if seen.get(id(parameter), 0) != 1:
            _fail(f"{name}.parameter_groups puts parameter '{parameter_name}' in {seen.get(id(parameter), 0)} groups; "
                  "every parameter belongs to exactly one group (or it never trains, or trains twice)")
    task = _task(image_shape, 3, 2, 2, seed=5)
    with torch.no_grad():
        embedded = model.embedding(model.backbone(task.support))
    if embedded.dim() != 2 or embedded.shape[0] != len(task.support):
        _fail(f"{name}.embedding must turn (N, C, h, w) feature maps into (N, D) vectors, got "
              f"{tuple(embedded.shape)} for N = {len(task.support)}")
    if cls.class_map_figure:
        try:
            maps, summary = model.eval().episode_class_maps(task)
        except Exception as exc:
            _fail(f"{name} declares class_map_figure but episode_class_maps failed ({type(exc).__name__}: {exc})")
        if maps.shape[0] != task.n_way or not torch.isfinite(maps).all() or not np.isfinite(summary):
            _fail(f"{name}.episode_class_maps must return finite (n_way, C, h, w) maps and a finite number, got "
                  f"{tuple(maps.shape)} and {summary!r}")


def _tiny_protocol(image_shape: tuple[int, int, int], seed: int = 0):
    """Six classes of patterned images (three for training, three for test), small enough for seconds."""
    from fewshot_bench.episodic.protocol import Protocol
    from fewshot_bench.splits import ClassSplit

    rng = np.random.default_rng(seed)
    n_classes, per_class = 6, 8
    labels = np.repeat(np.arange(n_classes), per_class)
    prototypes = rng.integers(0, 256, size=(n_classes, *image_shape))
    noise = rng.normal(0, 40, size=(len(labels), *image_shape))
    images = np.clip(prototypes[labels] + noise, 0, 255).astype(np.uint8)
    names = [f"class{i}" for i in range(n_classes)]
    dataset = ImageDataset(torch.from_numpy(images), torch.from_numpy(labels), names, "conformance",
                           fingerprint=f"conformance-{seed}-{'x'.join(map(str, image_shape))}")
    split = ClassSplit(tuple(names[:3]), tuple(names[3:]), (), "conformance")
    return Protocol(dataset, split, [0, 1, 2], [], [3, 4, 5], way=3, train_way=3, query=2, train_query=2,
                    labels=labels)


def _pipeline_check(cls: type[FewShotMethod], name: str, image_shape: tuple[int, int, int],
                    options: dict[str, Any]) -> None:
    """A whole cell through the harness's own pipeline (``run_cell``) on a tiny problem: every stage the
    method declares runs (pre-training for one epoch where it declares a recipe, meta-training where it is
    ``meta_trained``, ``fit_training_classes`` where declared) and the cell ends with finite numbers."""
    from fewshot_bench.engine.cell import run_cell
    from fewshot_bench.engine.training import TrainSettings
    from fewshot_bench.episodic.tasks import TaskBuilder, channel_statistics
    from fewshot_bench.method import MethodVariant

    staged = {"pretrain_epochs": 1, "pretrain_batch": 8} if cls.pretraining is not None else {}
    resolved = resolve_options(cls.all_options(), {**options, **staged}, owner=f"method '{cls.__name__}'")
    registered = getattr(cls, "registered_name", None)
    registered = registered if registered in METHODS and METHODS.get(registered) is cls else None
    variant = MethodVariant(registered or cls.__name__, tuple(resolved.items()), registered or cls.__name__,
                            None if registered else cls)
    protocol = _tiny_protocol(image_shape)
    device = torch.device("cpu")
    builder = TaskBuilder(protocol.dataset, device,
                          *channel_statistics(protocol.dataset.images, protocol.training_images().indices))
    settings = TrainSettings(episodes=2, log_interval=1, checkpoint_interval=100, amp=False, cuda_graphs=False)
    try:
        record = run_cell(variant, protocol, builder, settings, 2, 0, protocol.test_episodes(2, 0, 2), None, device)
    except Exception as exc:
        _fail(f"{name} fails in the harness's cell pipeline ({type(exc).__name__}: {exc}); every stage it declares "
              "(pre-training, meta-training, fit_training_classes, evaluation) must run on any episode shape")
    expected = {"pretrain": cls.pretraining is not None, "meta_train": cls.meta_trained,
                "fit_training_classes": cls.fits_training_classes, "evaluate": True}
    for stage, wanted in expected.items():
        if (stage in record["stages"]) != wanted:
            _fail(f"{name}: the cell pipeline {'skipped' if wanted else 'ran'} the '{stage}' stage, but the method "
                  f"declares {'it' if wanted else 'no such stage'}; check its class attributes")
    numbers = [*record["loss_curve"]["loss"], *record["accuracies"]]
    if not all(np.isfinite(numbers)):
        _fail(f"{name} gives non-finite losses or accuracies in the cell pipeline ({numbers}); check for "
              "divisions by zero and logs of zero")


def check_method(cls: type, options: dict[str, Any] | None = None,
                 image_shape: tuple[int, int, int] = (1, 28, 28)) -> None:
    """Verify that ``cls`` fulfils the method contract; raises ConformanceError explaining any failure.

    ``options`` are the method's options to check it with (e.g. fewer inner steps to keep the check fast);
    ``image_shape`` is the (C, H, W) of the test images.

    Checks: it subclasses FewShotMethod; its options are declared ``Option``s whose defaults are valid; it
    builds from a registered backbone; on 3-way 1-shot, 5-way 5-shot and 2-way 3-shot episodes, ``predict``
    returns finite float ``(n_query, n_way)`` scores in train and eval mode and under ``torch.no_grad``;
    the same seed gives the same model and scores (determinism); ``loss`` is a finite scalar whose gradient
    reaches the parameters; predictions do not depend on the query order (permuting the queries permutes
    the scores), so a method cannot peek at the layout the harness uses to build episodes; they do depend
    on the support set (swapping two classes' support images changes them); and neither ``predict`` nor
    ``loss`` edits the episode's tensors in place; its hooks keep the contract (every parameter in exactly one
    optimiser group, ``embedding`` gives (N, D) vectors, declared class maps are finite); and a whole cell runs
    through the harness's own pipeline with every stage the method declares. A method that implements ``predict_features`` (batched
    episodes) must agree with ``predict`` and give the same meta-batch loss batched and looped when batch
    norm uses running statistics (eval mode). ``predict_episodes`` on three episodes at once must give each
    episode the scores ``predict`` gives it alone.
    """
    options = options or {}
    name = getattr(cls, "__name__", str(cls))
    if not (isinstance(cls, type) and issubclass(cls, FewShotMethod)):
        _fail(f"{name} must subclass fewshot_bench.method.FewShotMethod so the runner can train and evaluate it")
    for option in cls.options:
        if not isinstance(option, Option):
            _fail(f"{name}.options must contain fewshot_bench.options.Option declarations, found {option!r}")
        try:
            option.coerce(option.default, f"{name}")
        except Exception as exc:
            _fail(f"{name}: the default of option '{option.name}' is not valid for its own type ({exc})")
    if cls.default_backbone not in BACKBONES:
        _fail(f"{name}.default_backbone '{cls.default_backbone}' is not a registered backbone "
              f"({', '.join(BACKBONES.names())})")
    query = 4
    trained: set[str] = set()
    for n_way, shot in CHECKED_EPISODES:
        trained |= _episode_checks(cls, name, image_shape, options, n_way, shot, query)
    model = _build(cls, image_shape, options, seed=0)
    untouched = [n for n, p in model.named_parameters() if p.requires_grad and n not in trained]
    if untouched:
        _fail(f"{name}: parameter(s) {', '.join(untouched[:5])}{' ...' if len(untouched) > 5 else ''} never receive a "
              "gradient from loss on any checked episode, so they never train; use them in the loss, or freeze them "
              "on purpose with requires_grad_(False) (frozen parameters are allowed)")
    _hooks_check(cls, name, image_shape, options)
    _state_checks(cls, name, image_shape, options)
    _pipeline_check(cls, name, image_shape, options)
    n_way = 3
    if cls.has_feature_head():
        model = _build(cls, image_shape, options, seed=0).eval()
        task = _task(image_shape, n_way, 2, query, seed=9)
        with torch.no_grad():
            scores = model.predict(task.support, task.support_labels, task.query, n_way)
            support_features, query_features = model.embed(task.support, task.query)
            head = model.predict_features(support_features, task.support_labels, query_features, n_way)
        if not torch.allclose(scores, head, atol=1e-5, rtol=1e-4):
            _fail(f"{name}.predict disagrees with predict_features on the embedded episode, but training uses "
                  "predict_features/loss_features: change predict_features instead of predict")
    _predict_episodes_check(cls, name, image_shape, options, n_way, query)
    if cls.supports_batched_episodes():
        model = _build(cls, image_shape, options, seed=0).eval()
        tasks = [_task(image_shape, n_way, 2, query, seed=seed) for seed in (10, 11, 12)]
        looped, batched = model.meta_batch_loss(tasks), model.batched_loss(tasks)
        if not torch.allclose(looped, batched, atol=1e-5, rtol=1e-4):
            _fail(f"{name}: batched episodes change the loss ({batched.item():.6g} vs {looped.item():.6g} looped, "
                  "eval mode); predict_features/loss_features must use only their own episode's features, and embed "
                  "nothing but the backbone")


def _predict_episodes_check(cls: type, name: str, image_shape: tuple[int, int, int], options: dict[str, Any],
                            n_way: int, query: int) -> None:
    """The evaluator's call (``predict_episodes``, several episodes at once) equals ``predict`` episode by episode."""
    model = _build(cls, image_shape, options, seed=0).eval()
    tasks = [_task(image_shape, n_way, 2, query, seed=seed) for seed in (13, 14, 15)]
    with torch.no_grad():
        alone = [model.predict(t.support, t.support_labels, t.query, n_way) for t in tasks]
        together = model.predict_episodes([t.support for t in tasks], [t.support_labels for t in tasks],
                                          [t.query for t in tasks], n_way)
    if not isinstance(together, (list, tuple)) or len(together) != len(tasks):
        _fail(f"{name}.predict_episodes must return one score matrix per episode ({len(tasks)} given), got "
              f"{type(together).__name__}")
    for i, (one, many) in enumerate(zip(alone, together)):
        if not isinstance(many, torch.Tensor) or many.shape != one.shape or not torch.allclose(
                one.float(), many.float(), atol=1e-4, rtol=1e-4):
            _fail(f"{name}.predict_episodes disagrees with predict on episode {i + 1} of 3; each episode's scores "
                  "must depend on that episode only (the evaluator hands over episodes_per_prediction at a time)")


def check_dataset(cls: type, root: str | Path | None = None, options: dict[str, Any] | None = None,
                  image_size: int | None = None, channels: int | None = None) -> None:
    """Verify that dataset plugin ``cls`` loads a valid :class:`ImageDataset` and valid split presets.

    Checks: it subclasses DatasetPlugin with declared ``Option``s; ``load`` returns uint8 (N, C, H, W)
    images, int64 labels within the class list, unique class names and no empty class; two loads give
    identical data; every split preset names existing classes and keeps train/val/test disjoint.
    """
    name = getattr(cls, "__name__", str(cls))
    if not (isinstance(cls, type) and issubclass(cls, DatasetPlugin)):
        _fail(f"{name} must subclass fewshot_bench.data.DatasetPlugin")
    plugin = cls()
    for option in plugin.options:
        if not isinstance(option, Option):
            _fail(f"{name}.options must contain fewshot_bench.options.Option declarations, found {option!r}")
    resolved = plugin.load_options(resolve_options(plugin.options, options or {}, owner=f"dataset '{name}'"),
                                   image_size, channels)
    path = Path(root) if root is not None else None
    dataset = plugin.load(path, resolved)
    if not isinstance(dataset, ImageDataset):
        _fail(f"{name}.load must return a fewshot_bench.data.ImageDataset, got {type(dataset).__name__}")
    counts = dataset.class_counts()
    empty = [c for c, n in counts.items() if n == 0]
    if empty:
        _fail(f"{name} declares class '{empty[0]}' but has no image of it; drop it from class_names")
    again = plugin.load(path, resolved)
    if again.fingerprint != dataset.fingerprint or not np.array_equal(again.labels.numpy(), dataset.labels.numpy()):
        _fail(f"{name}.load is not deterministic: two loads with the same options give different data")
    _, presets = plugin.split_presets(dataset)
    for preset in presets.values():
        try:
            preset.validate(dataset.class_names, name)
        except Exception as exc:
            _fail(f"{name}: split preset '{preset.name}' is invalid: {exc}")


def check_backbone(factory: Any, image_size: int = 32) -> None:
    """Verify that backbone factory ``factory`` builds what every method expects of a backbone.

    Checks: ``factory(in_channels)`` returns an ``nn.Module`` for 1 and 3 channels; it maps (n, C, H, W) float
    images to float feature maps (n, C', h, w) at ``image_size`` and at a larger size; in eval mode an image's
    features do not depend on the other images of the batch (test episodes are embedded together); it has
    trainable parameters that receive gradients; two builds under one seed are identical (cells are a function
    of their seed).
    """
    name = getattr(factory, "__name__", str(factory))
    if not callable(factory):
        _fail(f"{name} must be a factory (in_channels) -> nn.Module")
    for channels in (1, 3):
        torch.manual_seed(0)
        module = factory(channels)
        if not isinstance(module, torch.nn.Module):
            _fail(f"{name}({channels}) must return a torch.nn.Module, got {type(module).__name__}")
        torch.manual_seed(0)
        again = factory(channels)
        first, second = module.state_dict(), again.state_dict()
        if first.keys() != second.keys() or any(not torch.equal(first[k], second[k]) for k in first):
            _fail(f"{name}({channels}) builds different weights under one seed: draw them from torch's generator only")
        for size in (image_size, image_size * 2):
            images = torch.randn(4, channels, size, size, generator=torch.Generator().manual_seed(size))
            module.train()
            features = module(images)
            if not isinstance(features, torch.Tensor) or features.dim() != 4 or len(features) != 4:
                shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
                _fail(f"{name} must return feature maps (n, C', h, w) for {size}×{size} images, got {shape}")
            if not features.is_floating_point() or not torch.isfinite(features).all():
                _fail(f"{name} returns non-finite or non-float features")
            parameters = [p for p in module.parameters() if p.requires_grad]
            if not parameters:
                _fail(f"{name} has no trainable parameters")
            features.square().mean().backward()
            if not any(p.grad is not None and p.grad.abs().sum() > 0 for p in parameters):
                _fail(f"{name}: no parameter receives a gradient from its features")
            module.zero_grad(set_to_none=True)
            module.eval()
            with torch.no_grad():
                together, alone = module(images), module(images[:1])
            if not torch.allclose(together[:1], alone, rtol=1e-4, atol=1e-5):
                _fail(f"{name} in eval mode gives an image other features beside other images; use running "
                      "statistics in eval mode (nn.BatchNorm2d does)")


def check_format(cls: type) -> None:
    """Verify that output-format plugin ``cls`` renders every report a command can give.

    Checks: it subclasses ``ReportFormat`` with a docstring (what `bench list formats` shows); ``render`` returns
    text for a report with numbers, text, marks (best, tied), empty entries and a caption, and for a report with
    no rows; the text holds every column name and the caption (a pasted table must say what it is).
    """
    from fewshot_bench.report import BEST, TIED, Column, Report, ReportFormat, Value

    name = getattr(cls, "__name__", str(cls))
    if not (isinstance(cls, type) and issubclass(cls, ReportFormat)):
        _fail(f"{name} must subclass fewshot_bench.report.ReportFormat")
    if not (cls.__doc__ or "").strip():
        _fail(f"{name} needs a docstring: its first line is what `bench list formats` shows")
    caption = "synthetic-fer, split paper. Accuracy (%) on 3-way episodes; 95% CI over 600 test episodes."
    columns = [Column("method"), Column("1-shot", "right"), Column("5-shot", "right"), Column("params", "right")]
    rows = [["protonet", Value({"mean": 50.41, "ci95": 0.84}, "50.41 ± 0.84", BEST), None, 111936],
            ["crn", Value({"mean": 49.9, "ci95": 0.9}, "49.90 ± 0.90", TIED),
             Value({"mean": 64.0, "ci95": 0.5}, "64.00 ± 0.50"), 1.5e5]]
    for report in (Report("accuracy", columns, rows, caption=caption, kind="accuracy-table"),
                   Report("empty", columns, [], caption=caption, kind="accuracy-table")):
        text = cls().render(report)
        if not isinstance(text, str) or not text.strip():
            _fail(f"{name}.render must return the report as text, got {type(text).__name__}")
        missing = [column.name for column in columns if column.name not in text]
        if missing:
            _fail(f"{name}.render leaves out column '{missing[0]}'")
        if caption not in " ".join(text.split()):
            _fail(f"{name}.render leaves out the caption (what was measured): a pasted table must say it")
