"""On a CUDA GPU, the episode loop never waits for the device (skipped where there is none).

Every meta-training step (gather, normalise, augment, forward, backward, optimiser step) and every
evaluation episode must only enqueue work: a host–device synchronisation per episode would cap episodes/s
at the launch latency. ``torch.cuda.set_sync_debug_mode("error")`` turns any synchronising call into an
error. The deliberate reads (the loss once per log interval, the accuracies once per evaluation) are
outside the loops tested here.
"""

import pytest
import torch

from fewshot_bench.device import autocast
from fewshot_bench.episodic.augment import EpisodeAugmenter
from fewshot_bench.episodic.episodes import EpisodeSampler
from fewshot_bench.episodic.tasks import TaskBuilder
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


GRAPH_METHODS = ["protonet", "matchingnet", "maml[inner_steps=2]", "maml[inner_steps=2,first_order=true]",
                 "relationnet", "crn", "crn[dap=false]", "feat", "simpleshot", "baseline[finetune_epochs=3]",
                 "baselinepp[finetune_epochs=3]"]


@pytest.fixture
def float32_kernels():
    """Full float32 convolutions and matrix products. With TF32 (cuDNN's default) two algorithms for the
    same convolution differ by ~1e-3 relative, and cuDNN may pick another algorithm inside a capture (the
    graph's fresh memory pool offers less workspace): seen as 0.1-1% loss differences for MAML on an H100."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.benchmark
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.benchmark = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.benchmark = saved


def _train_and_evaluate(spec, cuda_graphs, augment=False, meta_batch=1):
    """Per-episode losses, the last step's gradients and test counts of a short run. The learning rate is 0,
    so every episode is scored with the same weights: a replay that read a stale input, or an optimiser
    that read stale gradients, shows as a difference, while rounding differences cannot grow through Adam
    (which turns a 1e-9 gradient of either sign into a full ±lr step)."""
    from fewshot_bench.engine.evaluation import evaluate
    from fewshot_bench.engine.training import TrainSettings, train

    device = torch.device("cuda")
    shape = (1, 28, 28)
    dataset = patterned_dataset(shape)
    builder = TaskBuilder(dataset, device, torch.tensor([0.5]), torch.tensor([0.25]))
    sampler = EpisodeSampler(dataset.labels.numpy(), range(4), 3, 2, 3, seed=0)
    model = build(spec, shape).to(device)
    # 9 episodes: 2 eager warm-ups, the capture, 6 replays (and with a meta-batch of 2, a last eager step of 1).
    settings = TrainSettings(episodes=9, meta_batch=meta_batch, log_interval=1, amp=False, augment=augment,
                             cuda_graphs=cuda_graphs, lr=0.0)
    history = train(model, sampler, builder, settings, allowed_class_ids=list(range(4)),
                    labels=dataset.labels.numpy(), class_names=dataset.class_names)
    test = EpisodeSampler(dataset.labels.numpy(), range(5), 3, 2, 3, seed=1).sample_set(12)
    result = evaluate(model, builder, test, amp=False, cuda_graphs=cuda_graphs)
    grads = torch.cat([p.grad.flatten().float() for p in model.parameters() if p.grad is not None])
    return history, result, grads


@pytest.mark.parametrize("spec", GRAPH_METHODS)
def test_captured_steps_compute_what_eager_steps_compute(spec, float32_kernels):
    eager_history, eager_result, eager_grads = _train_and_evaluate(spec, cuda_graphs=False)
    graph_history, graph_result, graph_grads = _train_and_evaluate(spec, cuda_graphs=True)
    assert eager_history.step_mode == "eager" and eager_result.step_mode == "eager"
    assert graph_history.step_mode == "graph", graph_history.step_mode
    assert graph_result.step_mode == "graph", graph_result.step_mode
    assert len(set(eager_history.losses)) == 9  # every episode is another input
    assert graph_history.losses == pytest.approx(eager_history.losses, rel=1e-4, abs=1e-6)
    assert torch.allclose(graph_grads, eager_grads, rtol=1e-3, atol=1e-5)
    assert (graph_result.class_correct == eager_result.class_correct).mean() > 0.95  # float ties may flip


def test_captured_steps_with_augmentation_and_meta_batches_match_eager_ones(float32_kernels):
    eager = _train_and_evaluate("protonet", cuda_graphs=False, augment=True, meta_batch=2)
    graph = _train_and_evaluate("protonet", cuda_graphs=True, augment=True, meta_batch=2)
    assert graph[0].step_mode == "graph"
    assert graph[0].losses == pytest.approx(eager[0].losses, rel=1e-4, abs=1e-6)
    assert torch.allclose(graph[2], eager[2], rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("first_order", ["false", "true"])
def test_maml_task_batched_meta_batches_match_the_task_loop_on_cuda(first_order, float32_kernels):
    """On CUDA, MAML runs a meta-batch's tasks as one task-batched program (vmap=auto); captured in a graph, it
    trains as the task loop does (vmap=off), first and second order."""
    spec = f"maml[inner_steps=2,first_order={first_order}"
    batched = _train_and_evaluate(spec + "]", cuda_graphs=True, meta_batch=2)
    looped = _train_and_evaluate(spec + ",vmap=off]", cuda_graphs=True, meta_batch=2)
    assert batched[0].step_mode == "graph", batched[0].step_mode
    assert batched[0].losses == pytest.approx(looped[0].losses, rel=1e-4, abs=1e-6)
    assert torch.allclose(batched[2], looped[2], rtol=1e-3, atol=1e-5)


def test_a_step_that_cannot_be_captured_falls_back_to_eager_calls():
    from fewshot_bench.engine.graphs import CapturedStep

    def syncing_step(buffers, key):
        total = buffers[0].sum()
        return total * 2 if total.item() >= 0 else total  # .item() is illegal while capturing

    step = CapturedStep(syncing_step)
    outputs = [float(step([torch.full((3,), float(i), device="cuda")], key="k")) for i in range(5)]
    assert outputs == [0.0, 6.0, 12.0, 18.0, 24.0]
    assert step.describe().startswith("eager (") and not step.captured
