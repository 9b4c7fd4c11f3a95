"""The one meta-training loop, shared by every method."""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable, Protocol

import torch

from fewshot_bench.config import RunConfig
from fewshot_bench.console import warn
from fewshot_bench.errors import MethodContractError
from fewshot_bench.device import autocast
from fewshot_bench.engine.evaluation import evaluate
from fewshot_bench.engine.graphs import CapturedStep
from fewshot_bench.episodic.augment import EpisodeAugmenter
from fewshot_bench.episodic.episodes import EpisodeSampler, EpisodeSet, check_episodes
from fewshot_bench.episodic.tasks import TaskBuilder
from fewshot_bench.method import TRAINING_OPTIONS, FewShotMethod
from fewshot_bench.stats import ci95


@dataclass(frozen=True)
class TrainSettings:
    """Optimisation settings of one training run."""

    episodes: int
    meta_batch: int = 1
    batch_episodes: bool = False
    lr: float = 1e-3
    lr_step: int = 2000
    lr_gamma: float = 0.5
    grad_clip: float = 0.0
    log_interval: int = 50
    val_interval: int = 500
    checkpoint_interval: int = 100
    amp: bool = True
    augment: bool = False
    seed: int = 0
    compile_backend: str | None = None
    cuda_graphs: bool = True
    budget_curve: tuple[int, ...] = ()

    @classmethod
    def from_config(cls, config: RunConfig) -> TrainSettings:
        """The training settings of a run: config keys of the same name, plus the two that are renamed. The
        learning rate, its schedule and clipping are each variant's (``MethodVariant.training``), set per cell."""
        shared = {f.name: getattr(config, f.name) for f in fields(cls)
                  if hasattr(config, f.name) and f.name not in TRAINING_OPTIONS}
        return cls(**{**shared, "episodes": config.train_episodes, "budget_curve": tuple(config.budget_curve),
                      "compile_backend": config.compile_backend if config.compile else None})


@dataclass
class TrainHistory:
    """What training produced besides the weights: the loss curve and validation accuracies."""

    loss_episodes: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    val_episodes: list[int] = field(default_factory=list)
    val_accuracies: list[float] = field(default_factory=list)
    selected_episode: int | None = None
    seconds: float = 0.0
    step_mode: str = "eager"
    # The accuracy-versus-budget curve: mean test accuracy after each of ``TrainSettings.budget_curve``'s
    # training episodes, with its 95% interval, and the seconds those evaluations took (not training time).
    curve_episodes: list[int] = field(default_factory=list)
    curve_accuracies: list[float] = field(default_factory=list)
    curve_ci95: list[float] = field(default_factory=list)
    curve_seconds: float = 0.0


ProgressCallback = Callable[[int, float | None], None]


class Checkpointer(Protocol):
    """Where a cell's training state goes, so a killed run resumes where it stopped."""

    def load(self) -> dict[str, Any] | None: ...
    def save(self, state: dict[str, Any]) -> None: ...


def make_optimiser(method: FewShotMethod, lr: float, fused: bool = False) -> torch.optim.Adam:
    """Adam over the method's parameter groups, each at its multiple of ``lr``. Fused on CUDA: one kernel for all
    parameters instead of a chain of small ones (the eager and the graph-replayed step both use it, so they
    compute the same numbers)."""
    groups = [{"params": group.params, "lr": lr * group.lr_scale} for group in method.parameter_groups()]
    return torch.optim.Adam(groups, lr=lr, **({"fused": True} if fused else {}))


def train(
    method: FewShotMethod,
    sampler: EpisodeSampler,
    builder: TaskBuilder,
    settings: TrainSettings,
    *,
    allowed_class_ids: list[int],
    labels,
    class_names: list[str],
    val_episodes: EpisodeSet | None = None,
    progress: ProgressCallback | None = None,
    checkpointer: Checkpointer | None = None,
    curve_episodes: EpisodeSet | None = None,
) -> TrainHistory:
    """Meta-train ``method`` on episodes from ``sampler`` with Adam and a step learning-rate schedule.

    With ``val_episodes`` the weights with the best validation accuracy are kept (model selection on
    validation classes only). With ``curve_episodes`` (the cell's test episodes) and ``settings.budget_curve``,
    the model is also evaluated on them after each of those numbers of training episodes: what the cell would
    have scored with that budget (nothing in training depends on the total budget, and evaluation draws from
    no generator training uses). Those evaluations are reported, never selected on. Losses are accumulated on the device and read once per log interval so the
    episode loop never waits for the device.

    With a ``checkpointer`` the complete training state (weights, optimiser, schedule, episode sampler and
    torch RNG states, counters, curves) is saved at log boundaries every ``checkpoint_interval`` episodes,
    and a saved state is resumed from, so an interrupted cell ends with exactly the same weights.
    """
    history = TrainHistory()
    on_cuda = builder.device.type == "cuda"
    optimiser = make_optimiser(method, settings.lr, fused=on_cuda)
    # lr_step counts episodes; the scheduler steps once per optimiser step (a meta-batch). lr_step 0 is a
    # constant rate, kept as a StepLR with factor 1 so every checkpoint has the same scheduler state.
    steps_per_decay = max(1, settings.lr_step // settings.meta_batch)
    scheduler = torch.optim.lr_scheduler.StepLR(optimiser, step_size=steps_per_decay,
                                                gamma=settings.lr_gamma if settings.lr_step else 1.0)
    best_state, best_accuracy = None, -1.0
    augmenter = EpisodeAugmenter(builder.device, settings.seed) if settings.augment else None
    running = torch.zeros((), device=builder.device)
    # Set when a training step's loss edited an episode's images in place (read with the loss, at log time).
    edited = torch.zeros((), device=builder.device, dtype=torch.bool)
    since_log = 0
    done = 0
    last_checkpoint = 0
    elapsed_before = 0.0
    saved = checkpointer.load() if checkpointer is not None else None
    if saved is not None:
        fresh = (copy.deepcopy(method.state_dict()), copy.deepcopy(optimiser.state_dict()),
                 copy.deepcopy(scheduler.state_dict()), sampler.state(), torch.get_rng_state())
        try:
            method.load_state_dict(saved["model"])
            optimiser.load_state_dict(saved["optimiser"])
            scheduler.load_state_dict(saved["scheduler"])
            sampler.set_state(saved["sampler"])
            torch.set_rng_state(saved["torch_rng"])
            history = TrainHistory(**saved["history"])
        except (RuntimeError, KeyError, TypeError, ValueError) as exc:
            # The method changed since the checkpoint (a plugin edited between kill and resume): restarting
            # the cell beats failing every resume forever.
            warn(f"the cell's checkpoint does not fit the method any more ({type(exc).__name__}: "
                 f"{str(exc).splitlines()[0][:200]}); the cell restarts from scratch")
            method.load_state_dict(fresh[0])
            optimiser.load_state_dict(fresh[1])
            scheduler.load_state_dict(fresh[2])
            sampler.set_state(fresh[3])
            torch.set_rng_state(fresh[4])
            saved = None
    if saved is not None:
        done = last_checkpoint = saved["done"]
        best_state, best_accuracy = saved["best_state"], saved["best_accuracy"]
        elapsed_before = history.seconds
        if augmenter is not None and "augment_rng" in saved:
            augmenter.set_state(saved["augment_rng"])
        if progress is not None:
            progress(done, history.losses[-1] if history.losses else None)
    start = time.perf_counter()
    curve_before = history.curve_seconds  # the curve's evaluations are not training time
    method.train()
    step = CapturedStep(_loss_step(method, builder, settings, augmenter, running, edited),
                        enabled=on_cuda and settings.cuda_graphs and settings.compile_backend is None)
    while done < settings.episodes:
        batch = min(settings.meta_batch, settings.episodes - done)
        episodes = [sampler.sample() for _ in range(batch)]
        for episode in episodes:
            check_episodes(episode, labels, allowed_class_ids, class_names, "training")
        staged = builder.stage_episodes(episodes, augmenter)
        step(staged.buffers, staged.shapes)
        optimiser.step()
        scheduler.step()
        since_log += batch
        done += batch
        at_log = done % settings.log_interval < batch or done == settings.episodes
        logged = None
        if at_log:
            total, was_edited = running.tolist(), bool(edited)
            logged = total / since_log
            _check_step(method, logged, was_edited, done - since_log + 1, done, settings)
            history.loss_episodes.append(done)
            history.losses.append(logged)
            running.zero_()
            since_log = 0
        if val_episodes is not None and (done % settings.val_interval < batch or done == settings.episodes):
            accuracy = float(evaluate(method, builder, val_episodes, amp=settings.amp,
                                     cuda_graphs=step.enabled, purpose="validation").accuracies.mean())
            method.train()
            history.val_episodes.append(done)
            history.val_accuracies.append(accuracy)
            if accuracy > best_accuracy:
                best_accuracy, history.selected_episode = accuracy, done
                best_state = copy.deepcopy(method.state_dict())
        if curve_episodes is not None and any(done - batch < point <= done for point in settings.budget_curve):
            began = time.perf_counter()
            accuracies = evaluate(method, builder, curve_episodes, amp=settings.amp, cuda_graphs=step.enabled,
                                  purpose="budget-curve").accuracies
            method.train()
            history.curve_episodes.append(done)
            history.curve_accuracies.append(float(accuracies.mean()))
            history.curve_ci95.append(ci95(accuracies))
            history.curve_seconds += time.perf_counter() - began
        if progress is not None:
            progress(batch, logged)
        if (checkpointer is not None and at_log and done < settings.episodes
                and done - last_checkpoint >= settings.checkpoint_interval):
            history.seconds = elapsed_before + time.perf_counter() - start - (history.curve_seconds - curve_before)
            checkpointer.save({
                "model": method.state_dict(), "optimiser": optimiser.state_dict(),
                "scheduler": scheduler.state_dict(), "sampler": sampler.state(), "torch_rng": torch.get_rng_state(),
                "done": done, "history": asdict(history), "best_state": best_state, "best_accuracy": best_accuracy,
                **({"augment_rng": augmenter.state()} if augmenter is not None else {}),
            })
            last_checkpoint = done
    if best_state is not None:
        method.load_state_dict(best_state)
    history.step_mode = step.describe()
    history.seconds = elapsed_before + time.perf_counter() - start - (history.curve_seconds - curve_before)
    return history


def _check_step(method: FewShotMethod, loss: float, edited: bool, first: int, last: int,
                settings: TrainSettings) -> None:
    """Fail the cell, in one line, when the mean training loss of episodes ``first``..``last`` is not finite or
    a step edited an episode's images in place: a diverged or broken method never becomes a number."""
    name = type(method).__name__
    if not math.isfinite(loss):
        raise MethodContractError(
            f"{name}'s training loss is not finite ({loss}) over training episodes {first}-{last}; the training "
            f"diverged (learning rate {settings.lr:g}: try a smaller one) or the loss divides by zero or takes a "
            "log of zero")
    if edited:
        raise MethodContractError(f"{name}'s loss modified the episode's images in place (training episodes "
                                  f"{first}-{last}); work on a copy (x = x - mean, not x -= mean)")


def _loss_step(method: FewShotMethod, builder: TaskBuilder, settings: TrainSettings,
               augmenter: EpisodeAugmenter | None, running: torch.Tensor,
               edited: torch.Tensor) -> Callable[..., None]:
    """The device work of one meta-training step — tasks from the staged buffers, loss, gradients, loss sum
    — as a function of its input buffers and the episodes' shapes, for ``CapturedStep``.

    Gradients are zeroed in place rather than set to None on CUDA: a captured graph keeps writing into the
    gradient tensors it recorded, so they must stay the parameters' ``.grad`` (0 + g = g exactly, so the
    numbers are those of set-to-None).
    """
    in_place = builder.device.type == "cuda"
    batch_episodes = settings.batch_episodes
    clip_groups = method.clip_groups() if settings.grad_clip else []

    def loss_step(buffers: list[torch.Tensor], shapes: tuple[tuple[int, int, int], ...]) -> None:
        draws = buffers[1] if len(buffers) > 1 else None
        tasks = builder.tasks(buffers[0], shapes, method.memory_format, draws, augmenter)
        before = [(task.support.clone(), task.query.clone()) for task in tasks]
        with autocast(builder.device, settings.amp):
            loss = method.batched_loss(tasks) if batch_episodes else method.meta_batch_loss(tasks)
        # Zeroed after the forward, as before CUDA graphs: on this 2-core CPU, freeing the old gradients
        # before the forward made every kernel of the step ~8 % slower (allocator reuse pattern).
        method.zero_grad(set_to_none=not in_place)
        loss.backward()
        for group in clip_groups:
            # No host synchronisation (the norm stays a tensor), so the step stays capturable.
            torch.nn.utils.clip_grad_norm_(group, settings.grad_clip)
        running.add_(loss.detach() * len(shapes))
        for task, (support, query) in zip(tasks, before):
            edited.logical_or_((task.support != support).any() | (task.query != query).any())

    return loss_step
