"""On a CUDA GPU, the episode loop never waits for the device (skipped where there is none).

Every meta-training step (gather, normalise, augment, forward, backward, optimiser step) and every
evaluation episode must only enqueue work: a host–device synchronisation per episode would cap episodes/s
at the launch latency. ``torch.cuda.set_sync_debug_mode("error")`` turns any synchronising call into an
error. The deliberate reads (the loss once per log interval, the accuracies once per evaluation) are
outside the loops tested here.
"""

import pytest
import torch

from fewshot_bench.augment import EpisodeAugmenter
from fewshot_bench.episodes import EpisodeSampler
from fewshot_bench.evaluation import autocast
from fewshot_bench.tasks import TaskBuilder
from test_methods_train import build, patterned_dataset

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize("spec", ["protonet", "matchingnet", "maml[inner_steps=2]", "relationnet", "crn"])
def test_episode_loop_never_synchronises_with_the_gpu(spec):
    device = torch.device("cuda")
    shape = (1, 28, 28)
    dataset = patterned_dataset(shape)
    builder = TaskBuilder(dataset, device, torch.tensor([0.5]), torch.tensor([0.25]))
    sampler = EpisodeSampler(dataset.labels.numpy(), range(5), 3, 2, 3, seed=0)
    augmenter = EpisodeAugmenter(device, seed=0)
    model = build(spec, shape).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    running = torch.zeros((), device=device)

    def train_step():
        tasks = [builder.task(sampler.sample(), model.memory_format, augmenter) for _ in range(2)]
        with autocast(device, True):
            loss = model.batched_loss(tasks)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        running.add_(loss.detach())

    def eval_step(correct):
        task = builder.task(sampler.sample(), model.memory_format)
        with torch.no_grad(), autocast(device, True):
            scores = model.predict(task.support, task.support_labels, task.query, task.n_way)
        correct.index_add_(0, task.query_labels, (scores.argmax(1) == task.query_labels).to(torch.int32))

    model.train()
    train_step()  # first calls allocate, pick kernels and create optimiser state
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            train_step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    model.eval()
    correct = torch.zeros(3, dtype=torch.int32, device=device)
    eval_step(correct)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            eval_step(correct)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(running).item() and int(correct.sum()) <= 4 * 9  # 4 episodes of 3 × 3 queries
