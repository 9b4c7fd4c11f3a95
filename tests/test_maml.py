"""MAML (torch.func) against its definition and against learn2learn's reference implementation."""

import copy

import pytest
import torch
import torch.nn.functional as F

from fewshot_bench.method import Task, resolve_variant
from fewshot_bench.options import Spec


def make_maml(**options):
    spec = "maml[" + ",".join(f"{k}={v}" for k, v in options.items()) + "]" if options else "maml"
    torch.manual_seed(0)
    return resolve_variant(Spec.parse(spec)).build((1, 28, 28))


def episode(n_way=5, shot=1, query=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    support = torch.randn(n_way * shot, 1, 28, 28, generator=g)
    query_x = torch.randn(n_way * query, 1, 28, 28, generator=g)
    return (support, torch.arange(n_way).repeat_interleave(shot), query_x,
            torch.arange(n_way).repeat_interleave(query))


@pytest.mark.parametrize("first_order", [False, True])
def test_matches_learn2learn_adapted_weights_and_meta_gradient(first_order):
    from fewshot_bench.peers import import_learn2learn

    l2l = import_learn2learn()
    ours = make_maml(inner_steps=2, inner_lr=0.4, first_order=str(first_order).lower(), max_way=5)
    reference = copy.deepcopy(ours)
    support, ys, query, yq = episode()

    fast = ours.adapt(support, ys, 5, create_graph=not first_order)
    F.cross_entropy(ours.logits(fast, query, 5), yq).backward()

    maml = l2l.algorithms.MAML(reference, lr=0.4, first_order=first_order)
    learner = maml.clone()
    for _ in range(2):
        learner.adapt(F.cross_entropy(learner(support), ys))
    F.cross_entropy(learner(query), yq).backward()

    for (name, ours_fast), (_, ref_fast) in zip(fast.items(), learner.module.named_parameters()):
        assert torch.allclose(ours_fast, ref_fast, atol=1e-5, rtol=1e-4), name
    for (name, p), q in zip(ours.named_parameters(), reference.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-5, rtol=1e-3), name


def test_one_inner_step_changes_fast_weights_and_leaves_meta_parameters_untouched():
    model = make_maml(inner_steps=1, inner_lr=0.5)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    support, ys, _, _ = episode()
    fast = model.adapt(support, ys, 5, create_graph=False)
    assert any(not torch.equal(fast[k], before[k]) for k in before)
    loss = F.cross_entropy(model.logits(dict(model.named_parameters()), support, 5), ys)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    for (name, p), g in zip(model.named_parameters(), grads):
        assert torch.equal(p.detach(), before[name])
        assert torch.allclose(fast[name], p - 0.5 * g, atol=1e-6)


def test_second_order_meta_gradient_reaches_every_initial_weight_and_differs_from_first_order():
    from fewshot_bench.method import Task

    support, ys, query, yq = episode()
    grads = {}
    for first_order in ("false", "true"):
        model = make_maml(inner_steps=1, inner_lr=0.4, first_order=first_order)
        model.loss(Task(support, ys, query, yq, 5, 1)).backward()
        grads[first_order] = {n: p.grad.clone() for n, p in model.named_parameters() if n.startswith("backbone")}
    assert all(g.abs().sum() > 0 for g in grads["false"].values())
    assert any(not torch.allclose(grads["false"][n], grads["true"][n]) for n in grads["false"])


def test_first_order_gradient_is_the_query_gradient_at_the_adapted_weights():
    model = make_maml(inner_steps=1, inner_lr=0.4, first_order="true")
    support, ys, query, yq = episode()
    from fewshot_bench.method import Task

    model.loss(Task(support, ys, query, yq, 5, 1)).backward()
    fast = {k: v.detach().requires_grad_() for k, v in model.adapt(support, ys, 5, create_graph=False).items()}
    expected = torch.autograd.grad(F.cross_entropy(model.logits(fast, query, 5), yq), list(fast.values()),
                                   allow_unused=True)
    for (name, p), g in zip(model.named_parameters(), expected):
        reference = torch.zeros_like(p) if g is None else g
        assert torch.allclose(p.grad, reference, atol=1e-6), name


def test_test_time_adaptation_runs_inside_no_grad():
    model = make_maml(inner_steps=3, inner_lr=0.4)
    model.eval()
    support, ys, query, _ = episode()
    with torch.no_grad():
        adapted = model.predict(support, ys, query, 5)
        unadapted = model.logits(dict(model.named_parameters()), query, 5)
    assert adapted.shape == (15, 5) and not torch.allclose(adapted, unadapted)


def test_running_bn_mode_keeps_statistics_and_batch_mode_does_not():
    batch = make_maml()
    running = make_maml(bn="running")
    assert all(m.running_mean is None for m in batch.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert all(m.running_mean is not None for m in running.modules() if isinstance(m, torch.nn.BatchNorm2d))


def tasks_of(n, **shape):
    from fewshot_bench.method import Task

    tasks = []
    for seed in range(n):
        support, support_labels, query, query_labels = episode(seed=seed, **shape)
        tasks.append(Task(support, support_labels, query, query_labels, shape.get("n_way", 5), shape.get("shot", 1)))
    return tasks


@pytest.mark.parametrize("first_order", [False, True])
def test_task_batched_meta_batch_equals_the_task_loop_in_loss_and_meta_gradient(first_order):
    """The meta-batch as one program (grouped convolutions, batch norm per task) against the task loop, in
    float64: the same loss and the same first- or second-order meta-gradient for every initial weight (the conv
    biases, whose gradient batch norm makes zero, included)."""
    model = make_maml(inner_steps=2, inner_lr=0.4, first_order=str(first_order).lower(), vmap="on").double()
    for module in model.modules():  # BN scales and shifts away from their 1/0 start: every term of the gradient
        if isinstance(module, torch.nn.BatchNorm2d):
            torch.nn.init.uniform_(module.weight, 0.5, 1.5)
            torch.nn.init.uniform_(module.bias, -0.2, 0.2)
    tasks = [Task(t.support.double(), t.support_labels, t.query.double(), t.query_labels, t.n_way, t.n_shot)
             for t in tasks_of(3, shot=2)]
    assert model.vectorisable(tasks)
    loss = model.meta_batch_loss(tasks)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    looped = torch.stack([model.loss(t) for t in tasks]).mean()
    looped_grads = torch.autograd.grad(looped, list(model.parameters()))
    assert loss.item() == pytest.approx(looped.item(), rel=1e-12)
    for (name, _), a, b in zip(model.named_parameters(), grads, looped_grads):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12, msg=name)
    assert max(g.abs().max() for g in grads) > 1e-3


def test_task_batched_meta_batch_in_float32_trains_as_the_loop():
    batched, looped = make_maml(inner_steps=1, inner_lr=0.4, vmap="on"), make_maml(inner_steps=1, inner_lr=0.4)
    tasks = tasks_of(4)
    for model in (batched, looped):
        model.meta_batch_loss(tasks).backward()
    for (name, a), b in zip(batched.named_parameters(), looped.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-3, atol=1e-5, msg=name)


def test_meta_batches_that_cannot_be_vectorised_fall_back_to_the_loop():
    assert not make_maml(bn="running", first_order=True, vmap="on").vectorisable(tasks_of(2))
    assert not make_maml(first_order=True, vmap="on").vectorisable(tasks_of(1))
    assert make_maml(vmap="on").vectorisable(tasks_of(2))  # second order too
    assert not make_maml(vmap="on", backbone="resnet12").vectorisable(tasks_of(2))  # not a plain conv stack
    assert not make_maml(first_order=True).vectorisable(tasks_of(2))  # auto: CUDA only
    assert not make_maml(first_order=True, vmap="off").vectorisable(tasks_of(2))
    mixed = tasks_of(1, shot=1) + tasks_of(1, shot=2)
    model = make_maml(first_order=True, vmap="on")
    assert not model.vectorisable(mixed)
    expected = torch.stack([model.loss(t) for t in mixed]).mean()
    assert model.meta_batch_loss(mixed).item() == pytest.approx(expected.item(), rel=1e-6)


def test_test_time_steps_can_differ_from_training_steps_as_in_finn():
    support, ys, query, _ = episode()
    three = make_maml(inner_steps=3, inner_lr=0.4).eval()
    one_then_three = make_maml(inner_steps=1, test_inner_steps=3, inner_lr=0.4).eval()
    one = make_maml(inner_steps=1, inner_lr=0.4).eval()
    with torch.no_grad():
        expected = three.predict(support, ys, query, 5)
        assert torch.allclose(one_then_three.predict(support, ys, query, 5), expected)  # same initial weights
        assert not torch.allclose(one.predict(support, ys, query, 5), expected)
    task = Task(support, ys, query, torch.arange(5).repeat_interleave(3), 5, 1)
    assert torch.allclose(one_then_three.loss(task), one.loss(task))  # training still takes one step
