"""The supervised pre-training stage: the backbone trained as an ordinary classifier over the training classes.

Standard mini-batches of the training classes' images (every image of those classes, none of the validation or
test classes), cross-entropy through a ``linear`` or ``cosine`` head, its own optimiser, learning-rate
milestones and epochs (``PretrainRecipe``). Checkpointed after every epoch and resumed from there, like
meta-training. The pre-trained backbone is kept in the run folder (``pretrained/<key>.pt``) under a key of
everything that decides it, so the cells that share it (the shots of one variant and seed) pre-train once;
the head is discarded, as in every paper that uses the stage.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from fewshot_bench.console import logger, warn
from fewshot_bench.device import autocast, to_device
from fewshot_bench.episodic.augment import EpisodeAugmenter
from fewshot_bench.episodic.tasks import TaskBuilder
from fewshot_bench.fileio import atomic_write_bytes, locked
from fewshot_bench.heads import make_head
from fewshot_bench.method import FewShotMethod
from fewshot_bench.recipes import PretrainRecipe


@dataclass
class PretrainResult:
    """What the stage did for a cell: its key, curves (mean loss and training accuracy per epoch) and time.

    ``reused`` is true when another cell of the run had already pre-trained the same backbone."""

    key: str
    epochs: int = 0
    steps: int = 0
    seconds: float = 0.0
    losses: list[float] = field(default_factory=list)
    accuracies: list[float] = field(default_factory=list)
    reused: bool = False


def pretrain_key(facts: dict[str, Any]) -> str:
    """A short hash of everything that decides a pre-trained backbone (recipe, backbone and its initial weights,
    data, classes, seed, precision, augmentation, code)."""
    return hashlib.sha256(json.dumps(facts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def weights_digest(module: torch.nn.Module) -> str:
    """sha256 of a module's parameters and buffers (its initial weights, for the key)."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        digest.update(name.encode() + tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def _save(path: Path, state: dict[str, Any]) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def _load(path: Path, keys: tuple[str, ...] = ()) -> dict[str, Any] | None:
    """A checkpoint of the run folder, or None (with a warning) when it is absent, unreadable or not one."""
    if not path.exists():
        return None
    try:
        # Tensors and plain containers only: a pickle planted in a run folder must not run on resume.
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a torn, foreign or unsafe file costs the stage's progress, never the run
        warn(f"pre-training checkpoint '{path}' is unreadable ({type(exc).__name__}); pre-training restarts")
        return None
    if not isinstance(saved, dict) or any(key not in saved for key in keys):
        warn(f"pre-training checkpoint '{path}' is not one (it lacks {', '.join(keys)}); pre-training restarts")
        return None
    return saved


def pretrain(method: FewShotMethod, builder: TaskBuilder, recipe: PretrainRecipe, *, indices: np.ndarray,
             targets: np.ndarray, key: str, folder: Path | None, seed: int, amp: bool = True,
             augment: bool = False, log_every: int | None = None) -> PretrainResult:
    """Pre-train ``method.backbone`` on the images at ``indices`` with class ``targets`` (0..C-1), or load the
    backbone another cell pre-trained under the same ``key`` from ``folder``.

    The stage draws its randomness (batch order, head initialisation, augmentation) from its own seeded
    generators, so a cell that loads the backbone continues exactly as one that computed it."""
    if folder is None:
        return _pretrain(method, builder, recipe, indices, targets, key, None, seed, amp, augment, log_every)[0]
    final = folder / f"{key}.pt"
    with locked(final):  # two workers needing the same backbone: one computes it, the other then loads it
        saved = _load(final, ("backbone", "result"))
        if saved is not None:
            initial = copy.deepcopy(method.backbone.state_dict())
            try:
                method.backbone.load_state_dict(saved["backbone"])
                return PretrainResult(**{**saved["result"], "reused": True})
            except (RuntimeError, TypeError, KeyError, ValueError) as exc:
                method.backbone.load_state_dict(initial)
                warn(f"pre-trained backbone '{final}' does not fit this variant ({type(exc).__name__}: "
                     f"{str(exc).splitlines()[0][:160]}); pre-training runs again")
        result = _pretrain(method, builder, recipe, indices, targets, key, folder, seed, amp, augment, log_every)[0]
        _save(final, {"backbone": {k: v.detach().cpu() for k, v in method.backbone.state_dict().items()},
                      "result": asdict(result)})
        (folder / f"{key}.partial.pt").unlink(missing_ok=True)
        return result


def train_classifier(method: FewShotMethod, builder: TaskBuilder, recipe: PretrainRecipe, *, indices: np.ndarray,
                     targets: np.ndarray, seed: int, amp: bool = True, name: str = "classifier"
                     ) -> tuple[PretrainResult, torch.nn.Module]:
    """The stage's supervised training of ``method.backbone`` on the images at ``indices`` (classes ``targets``),
    in memory, returning the trained head too (the ceiling reference classifies with it)."""
    return _pretrain(method, builder, recipe, indices, targets, name, None, seed, amp, False, None)


def _pretrain(method: FewShotMethod, builder: TaskBuilder, recipe: PretrainRecipe, indices: np.ndarray,
              targets: np.ndarray, key: str, folder: Path | None, seed: int, amp: bool, augment: bool,
              log_every: int | None) -> tuple[PretrainResult, torch.nn.Module]:
    device = builder.device
    backbone, embed = method.backbone, method.embedding
    n_classes = int(targets.max()) + 1
    backbone.eval()
    with torch.no_grad():
        dim = embed(backbone(builder.gather(indices[:2], method.memory_format))).shape[1]
    # The head is initialised from the stage's own seed without touching torch's global generator.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        head = make_head(recipe.head, dim, n_classes)
    head = head.to(device)
    parameters = [*backbone.parameters(), *head.parameters()]
    if recipe.optimiser == "sgd":
        optimiser = torch.optim.SGD(parameters, lr=recipe.lr, momentum=0.9, weight_decay=recipe.weight_decay)
    else:
        optimiser = torch.optim.Adam(parameters, lr=recipe.lr, weight_decay=recipe.weight_decay)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimiser, recipe.milestone_epochs(), recipe.gamma)
    order = np.random.default_rng(seed)
    augmenter = EpisodeAugmenter(device, seed) if augment else None
    target_tensor = to_device(torch.from_numpy(targets.astype(np.int64)), device)
    result = PretrainResult(key)
    partial = folder / f"{key}.partial.pt" if folder is not None else None
    saved = _load(partial, ("backbone", "head", "optimiser", "scheduler", "order", "result")) \
        if partial is not None else None
    if saved is not None:
        fresh = [copy.deepcopy(part.state_dict()) for part in (backbone, head, optimiser, scheduler)]
        fresh_order = order.bit_generator.state
        try:
            backbone.load_state_dict(saved["backbone"])
            head.load_state_dict(saved["head"])
            optimiser.load_state_dict(saved["optimiser"])
            scheduler.load_state_dict(saved["scheduler"])
            order.bit_generator.state = saved["order"]
            if augmenter is not None:
                augmenter.set_state(saved["augment_rng"])
            result = PretrainResult(**saved["result"])
        except (RuntimeError, TypeError, KeyError, ValueError) as exc:
            for part, state in zip((backbone, head, optimiser, scheduler), fresh):
                part.load_state_dict(state)
            order.bit_generator.state = fresh_order
            if augmenter is not None:
                augmenter.set_state(EpisodeAugmenter(device, seed).state())
            warn(f"pre-training checkpoint '{partial}' does not fit this variant ({type(exc).__name__}); "
                 "pre-training restarts")
    steps_per_epoch = math.ceil(len(indices) / recipe.batch)
    log_every = log_every or max(1, recipe.epochs // 10)
    start = time.perf_counter() - result.seconds
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    backbone.train()
    head.train()
    while result.epochs < recipe.epochs:
        permutation = order.permutation(len(indices))
        for step in range(steps_per_epoch):
            batch = permutation[step * recipe.batch:(step + 1) * recipe.batch]
            staged = builder.stage(indices[batch])
            images = builder.unstage(staged)
            if augmenter is not None:
                images = augmenter.apply(images, to_device(augmenter.draw(len(batch)), device))
            labels = target_tensor[to_device(torch.from_numpy(batch.astype(np.int64)), device)]
            with autocast(device, amp):
                scores = head(embed(backbone(images.contiguous(memory_format=method.memory_format))))
            loss = F.cross_entropy(scores.float(), labels)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            loss_sum += loss.detach() * len(batch)
            correct += (scores.detach().argmax(1) == labels).sum()
        scheduler.step()
        result.epochs += 1
        result.steps += steps_per_epoch
        # One read of the device per epoch, not per step.
        result.losses.append(round(float(loss_sum) / len(indices), 6))
        result.accuracies.append(round(float(correct) / len(indices), 6))
        loss_sum.zero_()
        correct.zero_()
        result.seconds = time.perf_counter() - start
        if result.epochs % log_every == 0 or result.epochs == recipe.epochs:
            logger.info(f"pre-training {key}: epoch {result.epochs}/{recipe.epochs}, loss {result.losses[-1]:.4f}, "
                        f"training accuracy {100 * result.accuracies[-1]:.1f} %")
        if partial is not None and result.epochs < recipe.epochs:
            _save(partial, {"backbone": backbone.state_dict(), "head": head.state_dict(),
                            "optimiser": optimiser.state_dict(), "scheduler": scheduler.state_dict(),
                            "order": order.bit_generator.state, "result": asdict(result),
                            **({"augment_rng": augmenter.state()} if augmenter is not None else {})})
    result.seconds = round(time.perf_counter() - start, 3)
    return result, head
