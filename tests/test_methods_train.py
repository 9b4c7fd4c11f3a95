"""Every built-in method trains on every input geometry and shot, and its loss goes down."""

import numpy as np
import pytest
import torch

from fewshot_bench.data import ImageDataset
from fewshot_bench.engine.training import TrainSettings, train
from fewshot_bench.episodic.episodes import EpisodeSampler
from fewshot_bench.episodic.tasks import TaskBuilder
from fewshot_bench.method import resolve_variant
from fewshot_bench.options import Spec
from fewshot_bench.registry import METHODS as REGISTERED

# Every built-in method, from the registry (a new one is tested without editing this file), with options
# that keep it fast where its defaults are slow, then variants whose options take other code paths.
FAST = {"maml": "maml[inner_steps=2]", "baseline": "baseline[finetune_epochs=2]",
        "baselinepp": "baselinepp[finetune_epochs=2]"}
BUILTIN = [FAST.get(entry.name, entry.name) for entry in REGISTERED.entries() if entry.source == "built-in"]
VARIANTS = ["crn[dap=false]", "crn[js_weight=0]", "crn[multiply_raw=true]", "crn[backbone=conv4]",
            "crn[js_pairs=class-query]", "crn[raw_scores=true]",
            "crn[dap=false,js_map=mean,js_scale=standardise,js_temperature=0.5]", "feat[pool=mean]"]
METHODS = BUILTIN + VARIANTS
SHAPES = [(1, 28, 28), (1, 48, 48), (3, 84, 84)]


def patterned_dataset(shape, n_classes=5, per_class=8, seed=0) -> ImageDataset:
    """Noise around a class-specific pattern: learnable, tiny, any geometry."""
    rng = np.random.default_rng(seed)
    c, h, w = shape
    patterns = rng.uniform(0, 255, (n_classes, c, h, w))
    labels = np.repeat(np.arange(n_classes), per_class)
    images = np.clip(patterns[labels] * 0.6 + rng.uniform(0, 100, (len(labels), c, h, w)), 0, 255)
    return ImageDataset(torch.from_numpy(images.astype(np.uint8)), torch.from_numpy(labels),
                        [f"c{i}" for i in range(n_classes)], "patterned")


def patterned_tasks(n: int, shot: int, query: int, seed: int, shape=(1, 28, 28)) -> list:
    """``n`` 3-way episodes of ``patterned_dataset``, as tasks on the CPU."""
    dataset = patterned_dataset(shape)
    builder = TaskBuilder(dataset, torch.device("cpu"), torch.tensor([0.5] * shape[0]), torch.tensor([0.25] * shape[0]))
    sampler = EpisodeSampler(dataset.labels.numpy(), range(5), 3, shot, query, seed=seed)
    return [builder.task(sampler.sample()) for _ in range(n)]


def build(spec: str, shape):
    torch.manual_seed(0)
    model = resolve_variant(Spec.parse(spec)).build(shape)
    return model.to(memory_format=torch.channels_last)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("shot", [1, 5])
@pytest.mark.parametrize("spec", METHODS)
def test_trains_and_predicts_on_every_geometry(spec, shot, shape):
    dataset = patterned_dataset(shape)
    builder = TaskBuilder(dataset, torch.device("cpu"), torch.tensor([0.5] * shape[0]), torch.tensor([0.25] * shape[0]))
    sampler = EpisodeSampler(dataset.labels.numpy(), range(5), 3, shot, 2, seed=0)
    model = build(spec, shape)
    history = train(model, sampler, builder, TrainSettings(episodes=2, log_interval=1),
                    allowed_class_ids=list(range(5)), labels=dataset.labels.numpy(), class_names=dataset.class_names)
    assert len(history.losses) == 2 and all(np.isfinite(history.losses))
    model.eval()
    task = builder.task(sampler.sample())
    with torch.no_grad():
        scores = model.predict(task.support, task.support_labels, task.query, 3)
    assert scores.shape == (6, 3) and torch.isfinite(scores).all()


@pytest.mark.parametrize("spec", ["protonet", "matchingnet", "maml[inner_steps=1]", "relationnet", "crn"])
def test_loss_goes_down_over_a_short_run(spec):
    tasks = patterned_tasks(4, shot=2, query=3, seed=1)
    model = build(spec, (1, 28, 28))
    model.train()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for step in range(24):
        loss = model.meta_batch_loss([tasks[step % 4]])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert np.mean(losses[-4:]) < 0.8 * np.mean(losses[:4]), losses


@pytest.mark.parametrize("spec", ["protonet", "matchingnet", "relationnet", "crn", "crn[multiply_raw=true]"])
def test_batched_episodes_embed_a_meta_batch_in_one_backbone_call(spec):
    tasks = patterned_tasks(3, shot=2, query=3, seed=2)
    model = build(spec, (1, 28, 28))
    calls = []
    model.backbone.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    model.train()
    loss = model.batched_loss(tasks)
    assert calls == [3 * (6 + 9)]
    loss.backward()
    assert all(p.grad is not None for p in model.backbone.parameters())
    calls.clear()
    model.meta_batch_loss(tasks)
    assert calls == [15, 15, 15]
    model.eval()  # batch norm on running statistics: batching changes nothing
    with torch.no_grad():
        assert torch.allclose(model.batched_loss(tasks), model.meta_batch_loss(tasks), rtol=1e-5, atol=1e-6)


def test_methods_without_a_feature_head_loop_over_a_meta_batch():
    model = build("maml[inner_steps=1]", (1, 28, 28))
    assert not model.supports_batched_episodes()
    tasks = patterned_tasks(2, shot=1, query=2, seed=0)
    assert model.batched_loss(tasks).item() == pytest.approx(model.meta_batch_loss(tasks).item(), rel=1e-6)


def test_host_memory_fallback_gathers_the_same_episodes():
    dataset = patterned_dataset((1, 28, 28))
    mean, std = torch.tensor([0.5]), torch.tensor([0.25])
    on_device = TaskBuilder(dataset, torch.device("cpu"), mean, std, keep_on_device=True)
    on_host = TaskBuilder(dataset, torch.device("cpu"), mean, std, keep_on_device=False)
    episode = EpisodeSampler(dataset.labels.numpy(), range(5), 3, 2, 2, seed=0).sample()
    a, b = on_device.task(episode), on_host.task(episode)
    assert torch.equal(a.support, b.support) and torch.equal(a.query, b.query)
    expected = (dataset.images[episode.support[0]].float() / 255 - 0.5) / 0.25
    assert torch.allclose(a.support[0], expected, atol=1e-5)


@pytest.mark.parametrize("backbone", ["resnet12", "resnet18"])
@pytest.mark.parametrize("spec", BUILTIN)
def test_every_method_runs_on_the_deeper_backbones(spec, backbone):
    shape = (1, 28, 28)
    name, _, rest = spec.partition("[")
    options = rest.rstrip("]")
    model = build(f"{name}[{options + ',' if options else ''}backbone={backbone}]", shape)
    tasks = patterned_tasks(1, shot=2, query=2, seed=0)
    loss = model.meta_batch_loss(tasks)
    loss.backward()
    assert torch.isfinite(loss) and any(p.grad is not None for p in model.backbone.parameters())
    model.eval()
    scores = model.predict(tasks[0].support, tasks[0].support_labels, tasks[0].query, 3)
    assert scores.shape == (6, 3) and torch.isfinite(scores).all()
