"""The step contract behind CUDA-graph capture, checked on the CPU: a meta-batch staged in one transfer
builds the same tasks (and draws the same augmentation) as episode-by-episode building, a CapturedStep
off CUDA is a plain call, and cell records say how their steps ran. The capture itself is tested on a GPU
(tests/test_gpu.py)."""

import numpy as np
import torch

from fewshot_bench.engine.graphs import CapturedStep
from fewshot_bench.episodic.augment import EpisodeAugmenter
from fewshot_bench.episodic.episodes import EpisodeSampler
from fewshot_bench.episodic.tasks import TaskBuilder
from test_methods_train import patterned_dataset
from conftest import tiny_run_flags


def _builder(shape=(1, 28, 28)):
    dataset = patterned_dataset(shape)
    builder = TaskBuilder(dataset, torch.device("cpu"), torch.tensor([0.5] * shape[0]), torch.tensor([0.25] * shape[0]))
    return dataset, builder


def test_a_staged_meta_batch_builds_the_tasks_of_its_episodes():
    dataset, builder = _builder()
    sampler = EpisodeSampler(dataset.labels.numpy(), range(5), 3, 2, 4, seed=3)
    episodes = [sampler.sample() for _ in range(3)]
    staged = builder.stage_episodes(episodes)
    assert staged.shapes == ((3, 2, 4),) * 3 and staged.draws is None and len(staged.buffers) == 1
    tasks = builder.tasks(staged.images, staged.shapes)
    for episode, task in zip(episodes, tasks):
        alone = builder.task(episode)
        assert torch.equal(task.support, builder.gather(episode.support))
        assert torch.equal(task.query, builder.gather(episode.query))
        assert torch.equal(task.support_labels, alone.support_labels)
        assert torch.equal(task.query_labels, torch.arange(3).repeat_interleave(4))


def test_augmentation_draws_are_those_of_episode_by_episode_augmenting():
    dataset, builder = _builder()
    sampler = EpisodeSampler(dataset.labels.numpy(), range(5), 3, 1, 2, seed=0)
    episodes = [sampler.sample() for _ in range(2)]
    together = EpisodeAugmenter(torch.device("cpu"), seed=7)
    staged = builder.stage_episodes(episodes, together)
    batched = builder.tasks(staged.images, staged.shapes, torch.contiguous_format, staged.draws, together)
    one_by_one = EpisodeAugmenter(torch.device("cpu"), seed=7)
    for episode, task in zip(episodes, batched):
        alone = builder.task(episode, torch.contiguous_format, one_by_one)
        assert torch.allclose(task.support, alone.support) and torch.allclose(task.query, alone.query)
    assert not torch.allclose(batched[0].query, builder.task(episodes[0], torch.contiguous_format).query)


def test_a_captured_step_off_cuda_is_a_plain_call_every_time():
    calls = []

    def step(buffers, key):
        calls.append(key)
        return buffers[0] * 2

    captured = CapturedStep(step)
    for i in range(5):
        assert torch.equal(captured([torch.full((2,), float(i))], key="k"), torch.full((2,), 2.0 * i))
    assert calls == ["k"] * 5 and not captured.captured and captured.describe() == "eager"


def test_cell_records_say_how_their_steps_ran(tmp_path):
    from fewshot_bench.config import merge
    from fewshot_bench.engine.runner import run

    result = run(merge(None, tiny_run_flags(tmp_path, shots=[1], cuda_graphs=False)))
    cell = result.store.load_cells()[0]
    assert cell["train_steps"] == "eager" and cell["eval_steps"] == "eager"
    assert np.isfinite(cell["mean"])
