"""Where a second-order MAML step spends its time on a CPU, and what the alternatives to its kernels cost.

Times one meta-training step (inner steps on the support set with ``create_graph``, the query loss, the meta
backward and Adam) of a Conv-4 + linear head in several equivalent formulations, on random images of a given
geometry, in this process:

* ``native``: conv2d, batch_norm (batch statistics, as Finn's MAML), relu, max_pool2d — what MAML and
  learn2learn run;
* ``manual-bn``: batch norm written out (mean, biased variance, affine), so its double backward is built
  from elementary operations instead of the fused kernel's composite;
* ``unfold-first``: the first convolution (few input channels) as unfold + matrix product;
* ``channels-last``: images and weights in channels-last memory format;
* ``compiled`` (``--compile``): the whole functional meta-step (``torch.func.grad`` inside and outside)
  through ``torch.compile``; compiling it takes minutes on a small CPU.

With ``--tasks T`` it instead times a meta-batch of T tasks through MAML itself, as the task loop
(``maml[vmap=off]``) and as one task-batched program (``maml[vmap=on]``), and prints how far apart their
meta-gradients are. Every formulation gives the same loss (printed) to float rounding.

    .venv/bin/python benchmarks/maml_step.py                                  # FER geometry, 1 task
    .venv/bin/python benchmarks/maml_step.py --tasks 32 --side 28 --way 5 --width 64 --inner-steps 1 \\
        --inner-lr 0.4                                                        # Omniglot, Finn's meta-batch
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]


def initial_parameters(in_channels: int, width: int, side: int, way: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    params: dict[str, torch.Tensor] = {}
    channels = in_channels
    for block in range(4):
        conv = torch.nn.Conv2d(channels, width, 3, padding=1)
        params[f"{block}.w"], params[f"{block}.b"] = conv.weight.detach(), conv.bias.detach()
        params[f"{block}.g"], params[f"{block}.beta"] = torch.ones(width), torch.zeros(width)
        channels, side = width, side // 2
    head = torch.nn.Linear(width * side * side, way)
    params["hw"], params["hb"] = head.weight.detach(), head.bias.detach()
    return {name: value.clone().requires_grad_() for name, value in params.items()}


def batch_norm_fused(x, weight, bias):
    return F.batch_norm(x, None, None, weight, bias, training=True, eps=1e-5)


def batch_norm_written_out(x, weight, bias):
    mean = x.mean((0, 2, 3), keepdim=True)
    variance = (x - mean).pow(2).mean((0, 2, 3), keepdim=True)
    return (x - mean) * (torch.rsqrt(variance + 1e-5) * weight.view(1, -1, 1, 1)) + bias.view(1, -1, 1, 1)


def conv_unfolded(x, weight, bias):
    n, _, h, w = x.shape
    columns = F.unfold(x, 3, padding=1)
    return (weight.view(weight.shape[0], -1) @ columns + bias.view(-1, 1)).view(n, weight.shape[0], h, w)


def network(batch_norm=batch_norm_fused, first_conv=None, memory_format=torch.contiguous_format):
    def forward(params, x):
        for block in range(4):
            conv = first_conv if block == 0 and first_conv is not None else \
                lambda x, w, b: F.conv2d(x, w, b, padding=1)
            x = conv(x.contiguous(memory_format=memory_format),
                     params[f"{block}.w"].contiguous(memory_format=memory_format), params[f"{block}.b"])
            x = F.max_pool2d(F.relu(batch_norm(x, params[f"{block}.g"], params[f"{block}.beta"])), 2)
        return F.linear(x.flatten(1), params["hw"], params["hb"])
    return forward


def meta_step(forward, steps: int, inner_lr: float, task) -> Callable[[dict, torch.optim.Optimizer], float]:
    support, support_labels, query, query_labels = task

    def step(params, optimiser):
        names, fast = list(params), dict(params)
        for _ in range(steps):
            loss = F.cross_entropy(forward(fast, support), support_labels)
            grads = torch.autograd.grad(loss, [fast[n] for n in names], create_graph=True)
            fast = {n: fast[n] - inner_lr * g for n, g in zip(names, grads)}
        loss = F.cross_entropy(forward(fast, query), query_labels)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        return float(loss.detach())
    return step


def compiled_step(forward, steps: int, inner_lr: float, task):
    support, support_labels, query, query_labels = task

    def meta_loss(params):
        fast = params
        for _ in range(steps):
            grads = torch.func.grad(lambda w: F.cross_entropy(forward(w, support), support_labels))(fast)
            fast = {k: fast[k] - inner_lr * grads[k] for k in fast}
        return F.cross_entropy(forward(fast, query), query_labels)

    gradient = torch.compile(torch.func.grad_and_value(meta_loss), dynamic=False)

    def step(params, optimiser):
        grads, loss = gradient({k: v.detach() for k, v in params.items()})
        for name, value in params.items():
            value.grad = grads[name]
        optimiser.step()
        return float(loss)
    return step


def time_step(name: str, make: Callable, args: argparse.Namespace, repeats: int) -> None:
    params = initial_parameters(1, args.width, args.side, args.way)
    optimiser = torch.optim.Adam(params.values(), 1e-3)
    step = make()
    started = time.perf_counter()
    first = [step(params, optimiser) for _ in range(3)]
    warm = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(repeats):
        step(params, optimiser)
    per_step = (time.perf_counter() - started) / repeats * 1000
    print(f"{name:<14} {per_step:8.1f} ms/step   first 3 steps {warm:6.1f} s   losses {', '.join(f'{v:.6f}' for v in first)}",
          flush=True)


def meta_batch(args: argparse.Namespace) -> None:
    """A meta-batch of ``args.tasks`` tasks through MAML itself: the task loop against the task-batched program."""
    sys.path.insert(0, str(REPO))
    from fewshot_bench.method import Task, resolve_variant
    from fewshot_bench.options import Spec

    shape = (1, args.side, args.side)
    generator = torch.Generator().manual_seed(0)
    tasks = [Task(torch.randn(args.way, *shape, generator=generator), torch.arange(args.way),
                  torch.randn(args.way * args.query, *shape, generator=generator),
                  torch.arange(args.way).repeat_interleave(args.query), args.way, 1) for _ in range(args.tasks)]
    spec = (f"maml[backbone=conv4{'-32' if args.width == 32 else ''},inner_steps={args.inner_steps},"
            f"inner_lr={args.inner_lr},max_way={args.way},vmap=")
    gradients = {}
    for vmap in ("off", "on"):
        model = resolve_variant(Spec.parse(spec + vmap + "]")).build(shape, seed=0)
        optimiser = torch.optim.Adam(model.parameters(), 1e-3)
        times = []
        for repeat in range(args.repeats + 1):
            started = time.perf_counter()
            optimiser.zero_grad()
            loss = model.meta_batch_loss(tasks)
            loss.backward()
            if repeat == 0:
                gradients[vmap] = [p.grad.clone() for p in model.parameters()]
            else:
                times.append(time.perf_counter() - started)
        label = "task loop" if vmap == "off" else "task-batched"
        print(f"{label:<14} {1000 * min(times):8.1f} ms per meta-step of {args.tasks} tasks (best of {args.repeats}), "
              f"loss {float(loss.detach()):.6f}", flush=True)
    worst = max(float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))
                for a, b in zip(gradients["on"], gradients["off"]) if b.abs().max() > 1e-6)
    print(f"largest relative difference of a meta-gradient (parameters with a non-zero one): {worst:.2e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--side", type=int, default=48, help="image side (synthetic-fer and FER2013: 48)")
    parser.add_argument("--way", type=int, default=4, help="classes per task (the FER split trains 4-way)")
    parser.add_argument("--query", type=int, default=15, help="queries per class")
    parser.add_argument("--width", type=int, default=32, help="Conv-4 filters (MAML's miniImageNet: 32)")
    parser.add_argument("--inner-steps", type=int, default=5)
    parser.add_argument("--inner-lr", type=float, default=0.01)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=15, help="timed steps after 3 warm-up steps")
    parser.add_argument("--compile", action="store_true", help="also the torch.compile'd step (minutes to compile)")
    parser.add_argument("--tasks", type=int, default=1, help="instead: a meta-batch of this many tasks through "
                        "MAML, task loop against the task-batched program")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)  # as the runner does on CPUs
    print(f"torch {torch.__version__}, {args.threads} thread(s); {args.way}-way 1-shot, {args.query} queries, "
          f"{args.side}×{args.side}, Conv-4-{args.width}, {args.inner_steps} second-order inner step(s)")
    if args.tasks > 1:
        meta_batch(args)
        return
    shape = (1, args.side, args.side)
    generator = torch.Generator().manual_seed(0)
    task = (torch.randn(args.way, *shape, generator=generator), torch.arange(args.way),
            torch.randn(args.way * args.query, *shape, generator=generator),
            torch.arange(args.way).repeat_interleave(args.query))
    variants = {
        "native": network(),
        "manual-bn": network(batch_norm=batch_norm_written_out),
        "unfold-first": network(first_conv=conv_unfolded),
        "channels-last": network(memory_format=torch.channels_last),
    }
    for name, forward in variants.items():
        time_step(name, lambda: meta_step(forward, args.inner_steps, args.inner_lr, task), args, args.repeats)
    if args.compile:
        time_step("compiled", lambda: compiled_step(variants["native"], args.inner_steps, args.inner_lr, task), args,
                  args.repeats)


if __name__ == "__main__":
    main()
