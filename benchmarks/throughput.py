"""Throughput of fewshot-bench next to its peers, measured side by side in one invocation.

For every method it prints training episodes/s, evaluation episodes/s, seconds per 1000 training
episodes, peak host memory (RSS) and CUDA memory, and the share of training step time spent building
episodes (sampling + gathering + normalising), for our runner and for the peer implementation with the
same backbone, episode sizes and number of episodes:

* ProtoNet, MatchingNet (FCE), RelationNet: easyfsl 1.5.0 (its TaskSampler + a DataLoader);
* MAML: a plain learn2learn 0.2.0 loop (``MAML.clone()`` / ``adapt``) on learn2learn's TaskDataset;
* CRN: ours only (no peer implements it).

Every implementation is then evaluated on the same test episodes — our seeded test set, fed to the peers
through their own data path (easyfsl: its Dataset + DataLoader + episodic collate; learn2learn: item
loading as its ``LoadData``) — so the accuracies are paired: each peer row also prints the mean per-episode
difference (ours − peer) with its 95% CI. Training episodes differ (each implementation draws its own,
from the same training classes, with the same budget and seed), so the difference measures implementation
and training noise together.

Each (method, implementation, repeat) runs in a fresh process so peak memory is its own; with
``--repeats R`` the implementations alternate R times (training seeds 0..R-1) and the table shows median
episodes/s, the ratio of the medians with the lowest and highest per-repeat ratio, and accuracies averaged
per test episode over the repeats. Usage::

    .venv/bin/python benchmarks/throughput.py                     # synthetic-fer and FER2013 (if found)
    .venv/bin/python benchmarks/throughput.py --train 50 --test 50 --datasets synthetic-fer   # quicker
    .venv/bin/python benchmarks/throughput.py --train 400 --test 200 --repeats 3   # the README table
    .venv/bin/python benchmarks/throughput.py --soak 10000 --soak-size 24   # RSS over a long run
    .venv/bin/python benchmarks/throughput.py --finetune --shot 5 --test 100   # batched test-time fitting

The easyfsl peers need easyfsl 1.5.0, in the dev extra (``scripts/setup.sh --dev``); skipped with a note when missing.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "fer2013.npz"


# ----------------------------------------------------------------------------------------------- data
def load_setting(name: str, fer_path: str | None):
    """(dataset config overrides, description) of a benchmark setting."""
    from fewshot_bench.config import merge
    from fewshot_bench.episodic.protocol import prepare

    if name == "synthetic-fer":
        config = merge(None, {})
    else:
        config = merge(None, {"dataset": "fer2013", "data_root": fer_path})
    return config, prepare(config)


# ------------------------------------------------------------------------------------------- ours
def measure_ours(method: str, setting: str, fer_path: str | None, shot: int, n_train: int, n_test: int,
                 device: str, seed: int, meta_batch: int = 1) -> dict[str, Any]:
    from fewshot_bench.device import prepare_device
    from fewshot_bench.engine.cell import run_cell
    from fewshot_bench.engine.training import TrainSettings
    from fewshot_bench.episodic.episodes import check_episodes
    from fewshot_bench.episodic.tasks import TaskBuilder, channel_statistics
    from fewshot_bench.options import Spec
    from fewshot_bench.pretraining import resolve

    config, protocol = load_setting(setting, fer_path)
    dev = torch.device(device)
    prepare_device(dev)  # what the runner does
    mean, std = channel_statistics(protocol.dataset.images, protocol.training_images().indices)
    builder = TaskBuilder(protocol.dataset, dev, mean, std)
    seed_everything(seed)
    variant = resolve(Spec.parse(method))  # pre-training options too (protonet[pretrain_epochs=2])
    # The runner's own cell pipeline (CUDA-graph replays on a GPU). Like the peers' loops, its first `warmup`
    # training episodes are not timed: on a GPU they are the eager warm-up steps and the capture.
    # (With a meta-batch of B, the first 3 optimiser steps: 3·B episodes.)
    warmup = 3 * meta_batch if variant.method_class.meta_trained else 0
    marks = {"seen": 0, "started": time.perf_counter(), "trained": None}

    class Timer:
        def trained(self, episodes: int, _loss) -> None:
            marks["seen"] += episodes
            if marks["seen"] == warmup:
                _sync(dev)
                marks["started"] = time.perf_counter()
            if marks["seen"] == n_train + warmup:
                _sync(dev)
                marks["trained"] = time.perf_counter()

        def evaluated(self, episodes: int) -> None: ...

    settings = TrainSettings(episodes=n_train + warmup, log_interval=n_train + warmup, amp=True, seed=seed,
                             meta_batch=meta_batch)
    record = run_cell(variant, protocol, builder, settings, shot, seed, shared_test_episodes(protocol, shot, n_test),
                      None, dev, Timer())
    train_s = (marks["trained"] or marks["started"]) - marks["started"]
    # Share of that time the host spends building episodes (sampling, checks, staging), measured apart.
    sampler = protocol.train_sampler(shot, seed + 1)
    _sync(dev)
    t0 = time.perf_counter()
    for _ in range(n_train):
        episode = sampler.sample()
        check_episodes(episode, protocol.labels, protocol.train_ids, protocol.class_names, "training")
        builder.stage_episodes([episode])
    _sync(dev)
    data_time = time.perf_counter() - t0
    report = _report(n_train, train_s, n_test, record["eval_seconds"], data_time, dev, np.asarray(record["accuracies"]))
    report["steps"] = f"{record['train_steps']}/{record['eval_steps']}"
    return report


# ------------------------------------------------------------------------------------------ peers
def _patch_easyfsl_sampler():
    # easyfsl 1.5.0's TaskSampler calls Sampler.__init__(data_source=None), which torch >= 2.2 rejects.
    torch.utils.data.Sampler.__init__ = lambda self, data_source=None: None


class _ArrayDataset(torch.utils.data.Dataset):
    """What an easyfsl user writes: items decoded from memory, normalised per item."""

    def __init__(self, images: torch.Tensor, labels: np.ndarray, mean: torch.Tensor, std: torch.Tensor):
        self.images, self.labels = images, [int(x) for x in labels]
        self.mean, self.std = mean.view(-1, 1, 1), std.view(-1, 1, 1)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return (self.images[i].float() / 255.0 - self.mean) / self.std, self.labels[i]

    def get_labels(self):
        return self.labels


def measure_easyfsl(method: str, setting: str, fer_path: str | None, shot: int, n_train: int, n_test: int,
                    device: str, seed: int, meta_batch: int = 1) -> dict[str, Any]:
    if meta_batch != 1:
        raise ValueError("easyfsl trains one episode per optimiser step; --meta-batch applies to MAML only")
    from easyfsl.methods import MatchingNetworks, PrototypicalNetworks, RelationNetworks
    from easyfsl.samplers import TaskSampler

    from fewshot_bench.backbones import feature_shape
    from fewshot_bench.methods.relationnet import RelationModule
    from fewshot_bench.registry import BACKBONES
    from fewshot_bench.episodic.tasks import channel_statistics

    _patch_easyfsl_sampler()
    method = method.split("[")[0]  # a variant of ours (protonet[distance=euclidean]) meets the same peer
    config, protocol = load_setting(setting, fer_path)
    dev = torch.device(device)
    images, labels = protocol.dataset.images, protocol.labels
    train_idx = np.flatnonzero(np.isin(labels, protocol.train_ids))
    mean, std = channel_statistics(images, train_idx)
    seed_everything(seed)
    shape = protocol.dataset.image_shape
    if method == "relationnet":
        backbone = BACKBONES.get("rn-encoder")(shape[0])
        c, h, w = feature_shape(backbone, shape)
        model = RelationNetworks(backbone, feature_dimension=c, relation_module=RelationModule(2 * c, (h, w)))
        loss_fn = lambda scores, y: F.mse_loss(scores, F.one_hot(y, scores.shape[1]).float())  # noqa: E731
    else:
        backbone = torch.nn.Sequential(BACKBONES.get("conv4")(shape[0]), torch.nn.Flatten())
        if method == "protonet":
            model, loss_fn = PrototypicalNetworks(backbone), F.cross_entropy
        else:
            dim = int(np.prod(feature_shape(backbone[0], shape)))
            model, loss_fn = MatchingNetworks(backbone, feature_dimension=dim), F.nll_loss
    model = model.to(dev)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)

    def loader(indices, way, n_tasks):
        dataset = _ArrayDataset(images[indices], labels[indices], mean, std)
        sampler = TaskSampler(dataset, n_way=way, n_shot=shot, n_query=protocol.train_query, n_tasks=n_tasks)
        return torch.utils.data.DataLoader(dataset, batch_sampler=sampler, num_workers=0,
                                           collate_fn=sampler.episodic_collate_fn)

    warmup = 3
    data_time = 0.0
    model.train()
    t0 = time.perf_counter()
    for i, (sx, sy, qx, qy, _) in enumerate(loader(train_idx, protocol.train_way, n_train + warmup)):
        sx, sy, qx, qy = sx.to(dev), sy.to(dev), qx.to(dev), qy.to(dev)
        if i == warmup:
            _sync(dev)
            start, data_time = time.perf_counter(), 0.0
        else:
            data_time += time.perf_counter() - t0
        model.process_support_set(sx, sy)
        loss = loss_fn(model(qx), qy)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        _sync(dev)
        t0 = time.perf_counter()
    train_s = time.perf_counter() - start
    # Our test episodes through easyfsl's data path: each batch lists an episode's items class by class
    # (K support then Q query), the order its TaskSampler yields and its collate function splits.
    episodes = shared_test_episodes(protocol, shot, n_test)
    full = _ArrayDataset(images, labels, mean, std)
    collate = TaskSampler(full, n_way=protocol.way, n_shot=shot, n_query=protocol.query,
                          n_tasks=n_test).episodic_collate_fn
    batches = [class_by_class(e) for e in episodes]
    test_loader = torch.utils.data.DataLoader(full, batch_sampler=batches, num_workers=0, collate_fn=collate)
    model.eval()
    accuracies = []
    start = time.perf_counter()
    with torch.no_grad():
        for sx, sy, qx, qy, _ in test_loader:
            model.process_support_set(sx.to(dev), sy.to(dev))
            accuracies.append((model(qx.to(dev)).argmax(1) == qy.to(dev)).float().mean())
    _sync(dev)
    eval_s = time.perf_counter() - start
    return _report(n_train, train_s, n_test, eval_s, data_time, dev, torch.stack(accuracies).cpu().numpy())


def measure_learn2learn(method: str, setting: str, fer_path: str | None, shot: int, n_train: int, n_test: int,
                        device: str, seed: int, meta_batch: int = 1) -> dict[str, Any]:
    from fewshot_bench.backbones import feature_shape
    from fewshot_bench.peers import import_learn2learn
    from fewshot_bench.registry import BACKBONES
    from fewshot_bench.episodic.tasks import channel_statistics

    l2l = import_learn2learn()
    config, protocol = load_setting(setting, fer_path)
    dev = torch.device(device)
    images, labels = protocol.dataset.images, protocol.labels
    mean, std = channel_statistics(images, np.flatnonzero(np.isin(labels, protocol.train_ids)))
    shape = protocol.dataset.image_shape
    seed_everything(seed)
    backbone = BACKBONES.get("conv4-32")(shape[0])
    for module in backbone.modules():  # batch statistics, as Finn's MAML and our default bn=batch
        if isinstance(module, torch.nn.BatchNorm2d):
            module.track_running_stats, module.running_mean, module.running_var = False, None, None
            module.num_batches_tracked = None
    dim = int(np.prod(feature_shape(backbone, shape)))
    model = torch.nn.Sequential(backbone, torch.nn.Flatten(), torch.nn.Linear(dim, protocol.train_way)).to(dev)
    maml = l2l.algorithms.MAML(model, lr=0.01, first_order=False)
    optimiser = torch.optim.Adam(maml.parameters(), lr=1e-3)
    query = protocol.train_query

    def taskset(class_ids, way, n_tasks):
        idx = np.flatnonzero(np.isin(labels, class_ids))
        dataset = l2l.data.MetaDataset(_ArrayDataset(images[idx], labels[idx], mean, std))
        transforms = [l2l.data.transforms.NWays(dataset, way), l2l.data.transforms.KShots(dataset, shot + query),
                      l2l.data.transforms.LoadData(dataset), l2l.data.transforms.RemapLabels(dataset)]
        return l2l.data.TaskDataset(dataset, task_transforms=transforms, num_tasks=n_tasks)

    def split(batch, way):
        x, y = batch
        order = torch.argsort(y, stable=True)
        x, y = x[order].view(way, shot + query, *shape), y[order].view(way, shot + query)
        return (x[:, :shot].reshape(-1, *shape).to(dev), y[:, :shot].reshape(-1).to(dev),
                x[:, shot:].reshape(-1, *shape).to(dev), y[:, shot:].reshape(-1).to(dev))

    def adapt(sx, sy, way):
        # The head has the training way's outputs; a test episode of fewer classes adapts and predicts with its
        # first `way` of them, as ours does (a softmax over an output no support image belongs to would push
        # every support image away from it and change the adaptation).
        learner = maml.clone()
        for _ in range(5):
            learner.adapt(F.cross_entropy(learner(sx)[:, :way], sy))
        return learner

    # 3 warm-up steps, then n_train episodes in steps of `meta_batch` tasks: each task's query loss over the
    # meta-batch, back-propagated task by task (gradients accumulate), as learn2learn's MAML examples do.
    steps = 3 + n_train // meta_batch
    tasks = taskset(protocol.train_ids, protocol.train_way, steps * meta_batch)
    data_time = 0.0
    for i in range(steps):
        if i == 3:
            _sync(dev)
            start, data_time = time.perf_counter(), 0.0
        optimiser.zero_grad(set_to_none=True)
        for _ in range(meta_batch):
            t0 = time.perf_counter()
            sx, sy, qx, qy = split(tasks.sample(), protocol.train_way)
            if i >= 3:
                data_time += time.perf_counter() - t0
            loss = F.cross_entropy(adapt(sx, sy, protocol.train_way)(qx), qy) / meta_batch
            loss.backward()
        optimiser.step()
    _sync(dev)
    train_s = time.perf_counter() - start
    # Our test episodes, items loaded one by one from the dataset as learn2learn's LoadData does.
    full = _ArrayDataset(images, labels, mean, std)
    accuracies = []
    start = time.perf_counter()
    for episode in shared_test_episodes(protocol, shot, n_test):
        way = episode.n_way
        sx = torch.stack([full[i][0] for i in episode.support]).to(dev)
        qx = torch.stack([full[i][0] for i in episode.query]).to(dev)
        sy = torch.arange(way, device=dev).repeat_interleave(shot)
        qy = torch.arange(way, device=dev).repeat_interleave(episode.n_query)
        learner = adapt(sx, sy, way)
        with torch.no_grad():
            accuracies.append((learner(qx)[:, :way].argmax(1) == qy).float().mean())
    _sync(dev)
    eval_s = time.perf_counter() - start
    return _report(n_train, train_s, n_test, eval_s, data_time, dev, torch.stack(accuracies).cpu().numpy())


# ----------------------------------------------------------------------------------------- plumbing
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seed_everything(seed: int) -> None:
    """Seed every generator an implementation may draw from (easyfsl and learn2learn sample with ``random``)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def shared_test_episodes(protocol, shot: int, n_test: int):
    """The test episodes every implementation is evaluated on: the protocol's seed-0 set."""
    return protocol.test_episodes(shot, 0, n_test)


def class_by_class(episode) -> list[int]:
    """An episode's dataset indices grouped by class, K support then Q query items each."""
    support = episode.support.reshape(episode.n_way, -1)
    query = episode.query.reshape(episode.n_way, -1)
    return np.concatenate([support, query], axis=1).reshape(-1).tolist()


def _report(n_train, train_s, n_test, eval_s, data_s, device, accuracies) -> dict[str, Any]:
    if train_s <= 0:  # a method without episodic training (Baseline, SimpleShot): no training speed to report
        train_s = float("nan")
    return {
        "train_eps": n_train / train_s, "eval_eps": n_test / eval_s, "s_per_1000": 1000 * train_s / n_train,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "cuda_mb": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else 0.0,
        "data_share": data_s / train_s, "accuracies": np.asarray(accuracies, dtype=np.float64),
    }


MEASURE = {"ours": measure_ours, "easyfsl": measure_easyfsl, "learn2learn": measure_learn2learn}
PEER = {"protonet": "easyfsl", "matchingnet": "easyfsl", "relationnet": "easyfsl", "maml": "learn2learn",
        "crn": None}


def _child(queue, impl, *args):
    try:
        queue.put(MEASURE[impl](*args))
    except Exception as exc:  # report and go on with the other measurements
        queue.put({"error": f"{type(exc).__name__}: {exc}"})


def in_fresh_process(impl: str, *args) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(queue, impl, *args))
    process.start()
    result = queue.get()
    process.join()
    return result


def soak(episodes: int, size: int) -> None:
    """Peak RSS every 1000 episodes of one long ProtoNet training: memory must not grow."""
    from fewshot_bench.config import merge
    from fewshot_bench.episodic.protocol import prepare
    from fewshot_bench.method import resolve_variant
    from fewshot_bench.options import Spec
    from fewshot_bench.episodic.tasks import TaskBuilder, channel_statistics
    from fewshot_bench.engine.cell import run_cell
    from fewshot_bench.engine.training import TrainSettings

    protocol = prepare(merge(None, {"image_size": size}))
    builder = TaskBuilder(protocol.dataset, torch.device("cpu"),
                          *channel_statistics(protocol.dataset.images, protocol.training_images().indices))
    marks = []

    class Memory:
        done = 0

        def trained(self, n, loss):
            self.done += n
            if self.done % 1000 == 0:
                peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                rss = current_rss_mb()
                marks.append(rss)
                print(f"  after {self.done:>6} episodes: RSS {rss:7.1f} MB (peak {peak:7.1f} MB)", flush=True)

        def evaluated(self, n): ...

    memory = Memory()
    run_cell(resolve_variant(Spec.parse("protonet")), protocol, builder, TrainSettings(episodes=episodes, log_interval=100),
             1, 0, protocol.test_episodes(1, 0, 1), None, torch.device("cpu"), memory)
    if len(marks) > 1:
        print(f"RSS growth from episode 1000 to episode {memory.done}: {marks[-1] - marks[0]:+.1f} MB")


def finetune_speed(methods: list[str], setting: str, fer_path: str | None, shot: int, n_test: int,
                   device: str) -> None:
    """Baseline/Baseline++'s test-time fitting episode by episode (``episodes_per_prediction`` 1) and batched
    (the method's default), on the same test episodes, in this process: evaluation episodes/s, their ratio, and
    how far the two evaluations' per-episode accuracies and scores are apart."""
    from fewshot_bench.episodic.tasks import TaskBuilder, channel_statistics
    from fewshot_bench.engine.evaluation import evaluate
    from fewshot_bench.method import resolve_variant
    from fewshot_bench.options import Spec

    config, protocol = load_setting(setting, fer_path)
    target = torch.device(device)
    builder = TaskBuilder(protocol.dataset, target,
                          *channel_statistics(protocol.dataset.images, protocol.training_images().indices))
    episodes = shared_test_episodes(protocol, shot, n_test)
    way = episodes.class_ids.shape[1]
    print(f"{setting}: {n_test} test episodes, {way}-way {shot}-shot, device {device}, "
          f"{torch.get_num_threads()} thread(s); the backbone is untrained (speed does not depend on its weights)")
    print(f"{'method':<12} {'per call':>8} {'eval ep/s':>10} {'ratio':>7} {'acc %':>7} {'episodes differing':>19} "
          f"{'max |Δ score|':>14}")
    for spec in methods:
        variant = resolve_variant(Spec.parse(spec))
        model = variant.build(protocol.dataset.image_shape, seed=0).to(target)
        batched = type(model).episodes_per_prediction
        results, scores = {}, {}
        for per_call in (1, batched):
            model.episodes_per_prediction = per_call
            results[per_call] = evaluate(model, builder, episodes, cuda_graphs=False)
            # The first episodes' scores, to show the batched fit is the same computation.
            model.eval()
            tasks = [builder.task(episodes[i], model.memory_format) for i in range(min(per_call, 5))]
            with torch.no_grad():
                scores[per_call] = model.predict_episodes([t.support for t in tasks], [t.support_labels for t in tasks],
                                                          [t.query for t in tasks], way)
        one, many = results[1], results[batched]
        width = min(len(scores[1]), len(scores[batched]))
        gap = max(float((a - b).abs().max()) for a, b in zip(scores[1][:width], scores[batched][:width]))
        differing = int((one.accuracies != many.accuracies).sum())
        for per_call, result in ((1, one), (batched, many)):
            ratio = f"{(len(episodes) / many.seconds) / (len(episodes) / one.seconds):.2f}" if per_call == batched else ""
            print(f"{spec:<12} {per_call:>8} {len(episodes) / result.seconds:>10.2f} {ratio:>7} "
                  f"{100 * result.accuracies.mean():>7.2f} {differing if per_call == batched else '':>19} "
                  f"{gap if per_call == batched else '':>14}")


def current_rss_mb() -> float:
    """Resident set size now (not the peak), from /proc; the peak where /proc is missing."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def summarise(repeats: list[dict[str, Any]]) -> dict[str, Any]:
    """One table row from an implementation's repeats: median speeds, peak memory, mean data share, and
    accuracies averaged per test episode over the repeats."""
    keys = ("train_eps", "eval_eps", "s_per_1000", "data_share")
    row = {k: float(np.median([r[k] for r in repeats])) for k in keys}
    row["rss_mb"] = max(r["rss_mb"] for r in repeats)
    row["cuda_mb"] = max(r["cuda_mb"] for r in repeats)
    row["accuracies"] = np.mean([r["accuracies"] for r in repeats], axis=0)
    # Each training seed's mean: how far apart two trainings of one implementation land, the noise a difference
    # between implementations has to stand out from (the paired CI covers the test episodes only).
    row["seed_means"] = [100 * float(np.mean(r["accuracies"])) for r in repeats]
    row["train_eps_each"] = [r["train_eps"] for r in repeats]
    row["eval_eps_each"] = [r["eval_eps"] for r in repeats]
    row["steps"] = repeats[0].get("steps", "")
    return row


def format_row(setting: str, method: str, impl: str, row: dict[str, Any], ours: dict[str, Any] | None) -> str:
    """A printed table line; peer lines carry ours/peer speed ratios and the paired accuracy difference."""
    from fewshot_bench.stats import ci95, paired_test, seed_difference

    acc = row["accuracies"] * 100
    accuracy = f"{acc.mean():5.1f} ± {ci95(acc):3.1f}"
    ratio_train = ratio_eval = difference = across_seeds = ""
    if ours is not None:
        per_train = [o / p for o, p in zip(ours["train_eps_each"], row["train_eps_each"])]
        per_eval = [o / p for o, p in zip(ours["eval_eps_each"], row["eval_eps_each"])]
        ratio_train = f"{ours['train_eps'] / row['train_eps']:.2f}"
        ratio_eval = f"{ours['eval_eps'] / row['eval_eps']:.2f}"
        if len(per_train) > 1:
            ratio_train += f" [{min(per_train):.2f}-{max(per_train):.2f}]"
            ratio_eval += f" [{min(per_eval):.2f}-{max(per_eval):.2f}]"
        paired = paired_test(ours["accuracies"], row["accuracies"])
        difference = f"{paired.mean_diff:+5.1f} ± {paired.ci95:3.1f}"
        # The verdict uses the interval over independent trainings: the paired one above is over shared test
        # episodes only, and two trainings of one implementation land points apart.
        seeds = seed_difference(ours["seed_means"], row["seed_means"])
        if seeds.ci95 == seeds.ci95:  # not NaN: at least two seeds a side
            verdict = "agree" if abs(seeds.mean_diff) <= seeds.ci95 else "differ"
            across_seeds = f"{seeds.mean_diff:+5.1f} ± {seeds.ci95:3.1f} {verdict}"
    return (f"{setting:<14} {method:<12} {impl:<12} {row['train_eps']:>10.2f} {row['eval_eps']:>10.2f} "
            f"{row['s_per_1000']:>10.1f} {row['rss_mb']:>8.0f} {row['cuda_mb']:>8.0f} {100 * row['data_share']:>6.1f}% "
            f"{accuracy:>12} {difference:>12} {across_seeds:>19} {ratio_train:>17} {ratio_eval:>17} {row['steps']:<14} "
            f"{'/'.join(f'{m:.1f}' for m in row['seed_means'])}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", default="protonet,matchingnet,relationnet,maml,crn",
                        help="methods or variants, e.g. protonet[distance=euclidean]")
    parser.add_argument("--datasets", default="synthetic-fer,fer2013")
    parser.add_argument("--fer2013", default=os.environ.get("FER2013", str(SHARED)), help="FER2013 .npz/csv/folder")
    parser.add_argument("--shot", type=int, default=1)
    parser.add_argument("--train", type=int, default=100, help="training episodes per measurement")
    parser.add_argument("--test", type=int, default=100, help="evaluation episodes per measurement")
    parser.add_argument("--repeats", type=int, default=1, help="alternate ours and the peer this many times")
    parser.add_argument("--meta-batch", type=int, default=1,
                        help="tasks per optimiser step (MAML and learn2learn; the papers': 4 for miniImageNet 1-shot, "
                             "32 for Omniglot 5-way); a multiple of it is trained")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--soak", type=int, default=0, help="instead: RSS over this many training episodes")
    parser.add_argument("--soak-size", type=int, default=48)
    parser.add_argument("--finetune", action="store_true",
                        help="instead: Baseline/Baseline++'s test-time fitting one episode at a time and batched "
                             "(first of --datasets, --shot, --test episodes; --methods defaults to both)")
    args = parser.parse_args()
    from fewshot_bench.config import split_method_list

    if args.soak:
        soak(args.soak, args.soak_size)
        return
    if args.finetune:
        chosen = args.methods if args.methods != parser.get_default("methods") else "baseline,baselinepp"
        finetune_speed(split_method_list([chosen]), args.datasets.split(",")[0], args.fer2013, args.shot, args.test, args.device)
        return
    try:
        import easyfsl  # noqa: F401
        have_easyfsl = True
    except ImportError:
        have_easyfsl = False
        print("note: easyfsl is not installed (scripts/setup.sh --dev installs it, or pip install easyfsl==1.5.0); "
              "its peers are skipped")
    if args.meta_batch < 1 or args.train % args.meta_batch:
        parser.error(f"--train ({args.train}) must be a multiple of --meta-batch ({args.meta_batch})")
    print(f"device {args.device}, torch {torch.__version__}, {os.cpu_count()} CPU cores, {args.shot}-shot, "
          f"{args.train} training + {args.test} test episodes per measurement, {args.repeats} repeat(s), "
          f"meta-batch {args.meta_batch}, {torch.get_num_threads()} thread(s) per process\n")
    header = (f"{'setting':<14} {'method':<12} {'impl':<12} {'train ep/s':>10} {'eval ep/s':>10} {'s/1000 ep':>10} "
              f"{'RSS MB':>8} {'CUDA MB':>8} {'data %':>7} {'acc %':>12} {'Δ acc':>12} {'Δ over seeds':>19} {'ratio train':>17} "
              f"{'ratio eval':>17} {'steps (tr/ev)':<14} acc % per seed")
    print(header)
    print("-" * len(header))
    for setting in args.datasets.split(","):
        if setting == "fer2013" and not Path(args.fer2013).exists():
            print(f"{setting:<14} skipped: {args.fer2013} not found")
            continue
        for method in split_method_list([args.methods]):  # commas inside a variant's brackets stay its own
            peer = PEER.get(method.split("[")[0])  # methods without a peer implementation are measured alone
            if peer == "easyfsl" and (not have_easyfsl or args.meta_batch > 1):
                peer = None  # (easyfsl trains one episode per optimiser step: no meta-batch to compare)
            impls = ["ours"] + ([peer] if peer else [])
            runs: dict[str, list[dict[str, Any]]] = {impl: [] for impl in impls}
            for seed in range(args.repeats):
                for impl in impls:
                    runs[impl].append(in_fresh_process(impl, method, setting, args.fer2013, args.shot, args.train,
                                                       args.test, args.device, seed, args.meta_batch))
            ours = None
            for impl in impls:
                errors = [r["error"] for r in runs[impl] if "error" in r]
                if errors:
                    print(f"{setting:<14} {method:<12} {impl:<12} error: {errors[0]}")
                    continue
                row = summarise(runs[impl])
                print(format_row(setting, method, impl, row, ours if impl != "ours" else None), flush=True)
                if impl == "ours":
                    ours = row
    print("\nratio = ours / peer episodes per second (higher is better for us; median over repeats, [lowest-highest]"
          " per-repeat ratio); acc % = mean test accuracy ± 95% CI on the same test episodes for every "
          "implementation; Δ acc = paired mean difference ours − peer in points ± 95% CI over the shared test episodes; "
          "Δ over seeds = difference of the implementations' mean per-seed accuracies ± Welch's 95% CI over the "
          "independent trainings (needs --repeats 2 or more), 'agree' when that interval contains 0; data % = share of the "
          "training step spent building episodes (sampling, gathering, normalising); acc % per seed = each training "
          "seed's mean test accuracy (the spread between trainings, which the paired CI does not include).")


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
