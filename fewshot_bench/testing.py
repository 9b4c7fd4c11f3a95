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
from fewshot_bench.method import TRAINING_OPTIONS, FewShotMethod, Task
from fewshot_bench.options import Option, resolve_options
from fewshot_bench.registry import BACKBONES


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
    resolved = {k: v for k, v in resolved.items() if k not in TRAINING_OPTIONS}
    backbone_name = resolved.pop("backbone")
    torch.manual_seed(seed)
    return cls(BACKBONES.get(backbone_name)(shape[0]), shape, **resolved)


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
                    n_way: int, shot: int, query: int) -> None:
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
    ``loss`` edits the episode's tensors in place. A method that implements ``predict_features`` (batched
    episodes) must agree with ``predict`` and give the same meta-batch loss batched and looped when batch
    norm uses running statistics (eval mode).
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
    for n_way, shot in CHECKED_EPISODES:
        _episode_checks(cls, name, image_shape, options, n_way, shot, query)
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
    if cls.supports_batched_episodes():
        model = _build(cls, image_shape, options, seed=0).eval()
        tasks = [_task(image_shape, n_way, 2, query, seed=seed) for seed in (10, 11, 12)]
        looped, batched = model.meta_batch_loss(tasks), model.batched_loss(tasks)
        if not torch.allclose(looped, batched, atol=1e-5, rtol=1e-4):
            _fail(f"{name}: batched episodes change the loss ({batched.item():.6g} vs {looped.item():.6g} looped, "
                  "eval mode); predict_features/loss_features must use only their own episode's features, and embed "
                  "nothing but the backbone")


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
