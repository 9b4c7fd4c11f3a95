"""Throughput of fewshot-bench next to its peers, measured side by side in one invocation.

For every method it prints training episodes/s, evaluation episodes/s, seconds per 1000 training
episodes, peak host memory (RSS) and CUDA memory, and the share of training step time spent building
episodes (sampling + gathering + normalising), for our runner and for the peer implementation with the
same backbone, episode sizes and number of episodes:

* ProtoNet, MatchingNet (FCE), RelationNet: easyfsl 1.5.0 (its TaskSampler + a DataLoader);
* MAML: a plain learn2learn 0.2.0 loop (``MAML.clone()`` / ``adapt``) on learn2learn's TaskDataset;
* CRN: ours only (no peer implements it).

Each (method, implementation) runs in a fresh process so peak memory is its own. Usage::

    .venv/bin/python benchmarks/throughput.py                     # synthetic-fer and FER2013 (if found)
    .venv/bin/python benchmarks/throughput.py --train 50 --test 50 --datasets synthetic-fer   # quicker
    .venv/bin/python benchmarks/throughput.py --soak 10000 --soak-size 24   # RSS over a long run

Needs ``pip install easyfsl==1.5.0`` for the easyfsl peers (skipped with a note when missing).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
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
    from fewshot_bench.protocol import prepare

    if name == "synthetic-fer":
        config = merge(None, {})
    else:
        config = merge(None, {"dataset": "fer2013", "data_root": fer_path})
    return config, prepare(config)


# ------------------------------------------------------------------------------------------- ours
def measure_ours(method: str, setting: str, fer_path: str | None, shot: int, n_train: int, n_test: int,
                 device: str) -> dict[str, Any]:
    from fewshot_bench.evaluation import evaluate
    from fewshot_bench.method import resolve_variant
    from fewshot_bench.options import Spec
    from fewshot_bench.tasks import TaskBuilder, channel_statistics

    config, protocol = load_setting(setting, fer_path)
    dev = torch.device(device)
    train_idx = np.flatnonzero(np.isin(protocol.labels, protocol.train_ids))
    mean, std = channel_statistics(protocol.dataset.images, train_idx)
    builder = TaskBuilder(protocol.dataset, dev, mean, std)
    torch.manual_seed(0)
    model = resolve_variant(Spec.parse(method)).build(protocol.dataset.image_shape).to(
        dev, memory_format=torch.channels_last)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    sampler = protocol.train_sampler(shot, 0)
    warmup = 3
    data_time = 0.0
    model.train()
    for i in range(n_train + warmup):
        if i == warmup:
            _sync(dev)
            start, data_time = time.perf_counter(), 0.0
        t0 = time.perf_counter()
        task = builder.task(sampler.sample())
        _sync(dev)
        data_time += time.perf_counter() - t0
        loss = model.meta_batch_loss([task])
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
    _sync(dev)
    train_s = time.perf_counter() - start
    episodes = protocol.test_episodes(shot, 0, n_test)
    result = evaluate(model, builder, episodes)
    return _report(n_train, train_s, n_test, result.seconds, data_time, dev)


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
                    device: str) -> dict[str, Any]:
    from easyfsl.methods import MatchingNetworks, PrototypicalNetworks, RelationNetworks
    from easyfsl.samplers import TaskSampler

    from fewshot_bench.backbones import feature_shape
    from fewshot_bench.methods.relationnet import RelationModule
    from fewshot_bench.registry import BACKBONES
    from fewshot_bench.tasks import channel_statistics

    _patch_easyfsl_sampler()
    config, protocol = load_setting(setting, fer_path)
    dev = torch.device(device)
    images, labels = protocol.dataset.images, protocol.labels
    train_idx = np.flatnonzero(np.isin(labels, protocol.train_ids))
    test_idx = np.flatnonzero(np.isin(labels, protocol.test_ids))
    mean, std = channel_statistics(images, train_idx)
    torch.manual_seed(0)
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
    model.eval()
    start = time.perf_counter()
    with torch.no_grad():
        for sx, sy, qx, qy, _ in loader(test_idx, protocol.way, n_test):
            model.process_support_set(sx.to(dev), sy.to(dev))
            (model(qx.to(dev)).argmax(1) == qy.to(dev)).float().mean()
    _sync(dev)
    return _report(n_train, train_s, n_test, time.perf_counter() - start, data_time, dev)


def measure_learn2learn(method: str, setting: str, fer_path: str | None, shot: int, n_train: int, n_test: int,
                        device: str) -> dict[str, Any]:
    from fewshot_bench.backbones import feature_shape
    from fewshot_bench.peers import import_learn2learn
    from fewshot_bench.registry import BACKBONES
    from fewshot_bench.tasks import channel_statistics

    l2l = import_learn2learn()
    config, protocol = load_setting(setting, fer_path)
    dev = torch.device(device)
    images, labels = protocol.dataset.images, protocol.labels
    mean, std = channel_statistics(images, np.flatnonzero(np.isin(labels, protocol.train_ids)))
    shape = protocol.dataset.image_shape
    torch.manual_seed(0)
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

    def adapt(sx, sy):
        learner = maml.clone()
        for _ in range(5):
            learner.adapt(F.cross_entropy(learner(sx), sy))
        return learner

    tasks = taskset(protocol.train_ids, protocol.train_way, n_train + 3)
    data_time = 0.0
    for i in range(n_train + 3):
        t0 = time.perf_counter()
        sx, sy, qx, qy = split(tasks.sample(), protocol.train_way)
        if i == 3:
            _sync(dev)
            start, data_time = time.perf_counter(), 0.0
        elif i > 3:
            data_time += time.perf_counter() - t0
        loss = F.cross_entropy(adapt(sx, sy)(qx), qy)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
    _sync(dev)
    train_s = time.perf_counter() - start
    tests = taskset(protocol.test_ids, protocol.way, n_test)
    start = time.perf_counter()
    for _ in range(n_test):
        sx, sy, qx, qy = split(tests.sample(), protocol.way)
        learner = adapt(sx, sy)
        with torch.no_grad():
            (learner(qx)[:, : protocol.way].argmax(1) == qy).float().mean()
    _sync(dev)
    return _report(n_train, train_s, n_test, time.perf_counter() - start, data_time, dev)


# ----------------------------------------------------------------------------------------- plumbing
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _report(n_train, train_s, n_test, eval_s, data_s, device) -> dict[str, Any]:
    return {
        "train_eps": n_train / train_s, "eval_eps": n_test / eval_s, "s_per_1000": 1000 * train_s / n_train,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "cuda_mb": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else 0.0,
        "data_share": data_s / train_s,
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
    from fewshot_bench.protocol import prepare
    from fewshot_bench.method import resolve_variant
    from fewshot_bench.options import Spec
    from fewshot_bench.tasks import TaskBuilder, channel_statistics
    from fewshot_bench.training import TrainSettings, train

    protocol = prepare(merge(None, {"dataset_options": {"size": size}}))
    train_idx = np.flatnonzero(np.isin(protocol.labels, protocol.train_ids))
    builder = TaskBuilder(protocol.dataset, torch.device("cpu"), *channel_statistics(protocol.dataset.images, train_idx))
    model = resolve_variant(Spec.parse("protonet")).build(protocol.dataset.image_shape)
    marks = []

    def progress(n, loss):
        progress.done += n
        if progress.done % 1000 == 0:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            rss = current_rss_mb()
            marks.append(rss)
            print(f"  after {progress.done:>6} episodes: RSS {rss:7.1f} MB (peak {peak:7.1f} MB)", flush=True)

    progress.done = 0
    train(model, protocol.train_sampler(1, 0), builder, TrainSettings(episodes=episodes, log_interval=100),
          allowed_class_ids=protocol.train_ids, labels=protocol.labels, class_names=protocol.class_names,
          progress=progress)
    if len(marks) > 1:
        print(f"RSS growth from episode 1000 to episode {progress.done}: {marks[-1] - marks[0]:+.1f} MB")


def current_rss_mb() -> float:
    """Resident set size now (not the peak), from /proc; the peak where /proc is missing."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", default="protonet,matchingnet,relationnet,maml,crn")
    parser.add_argument("--datasets", default="synthetic-fer,fer2013")
    parser.add_argument("--fer2013", default=os.environ.get("FER2013", str(SHARED)), help="FER2013 .npz/csv/folder")
    parser.add_argument("--shot", type=int, default=1)
    parser.add_argument("--train", type=int, default=100, help="training episodes per measurement")
    parser.add_argument("--test", type=int, default=100, help="evaluation episodes per measurement")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--soak", type=int, default=0, help="instead: RSS over this many training episodes")
    parser.add_argument("--soak-size", type=int, default=48)
    args = parser.parse_args()
    if args.soak:
        soak(args.soak, args.soak_size)
        return
    try:
        import easyfsl  # noqa: F401
        have_easyfsl = True
    except ImportError:
        have_easyfsl = False
        print("note: easyfsl is not installed (pip install easyfsl==1.5.0); its peers are skipped")
    print(f"device {args.device}, torch {torch.__version__}, {os.cpu_count()} CPU cores, "
          f"{args.shot}-shot, {args.train} training + {args.test} test episodes per measurement\n")
    header = (f"{'setting':<14} {'method':<12} {'impl':<12} {'train ep/s':>10} {'eval ep/s':>10} {'s/1000 ep':>10} "
              f"{'RSS MB':>8} {'CUDA MB':>8} {'data %':>7} {'ratio train':>11} {'ratio eval':>10}")
    print(header)
    print("-" * len(header))
    for setting in args.datasets.split(","):
        if setting == "fer2013" and not Path(args.fer2013).exists():
            print(f"{setting:<14} skipped: {args.fer2013} not found")
            continue
        for method in args.methods.split(","):
            common = (method, setting, args.fer2013, args.shot, args.train, args.test, args.device)
            ours = in_fresh_process("ours", *common)
            rows = [("ours", ours)]
            peer = PEER[method]
            if peer == "easyfsl" and not have_easyfsl:
                peer = None
            if peer:
                rows.append((peer, in_fresh_process(peer, *common)))
            for impl, r in rows:
                if "error" in r:
                    print(f"{setting:<14} {method:<12} {impl:<12} error: {r['error']}")
                    continue
                ratio = ("", "")
                if impl != "ours" and "error" not in ours:
                    ratio = (f"{ours['train_eps'] / r['train_eps']:.2f}", f"{ours['eval_eps'] / r['eval_eps']:.2f}")
                print(f"{setting:<14} {method:<12} {impl:<12} {r['train_eps']:>10.2f} {r['eval_eps']:>10.2f} "
                      f"{r['s_per_1000']:>10.1f} {r['rss_mb']:>8.0f} {r['cuda_mb']:>8.0f} {100 * r['data_share']:>6.1f}% "
                      f"{ratio[0]:>11} {ratio[1]:>10}", flush=True)
    print("\nratio = ours / peer episodes per second (higher is better for us); data % = share of the training "
          "step spent building episodes (sampling, gathering, normalising).")


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
