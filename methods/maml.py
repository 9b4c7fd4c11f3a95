"""Model-Agnostic Meta-Learning, MAML (Finn, Abbeel & Levine, ICML 2017).

The meta-parameters θ of a Conv-4 + linear classifier are adapted to each episode by a few steps of
gradient descent on the support loss (θ' = θ − α ∇θ L_support); the meta-objective is the query loss of
the adapted weights, back-propagated through the adaptation (second order) or, with ``first_order=true``,
treating the inner gradients as constants (FOMAML). At test time the same adaptation runs with gradients
enabled, even inside the evaluation loop's ``no_grad``.

Implemented with ``torch.func.functional_call`` on a dictionary of fast weights; verified against
``learn2learn.algorithms.MAML`` in the tests. With ``first_order=true`` the tasks of a meta-batch
(``--meta-batch``) are vectorised with ``torch.func.vmap`` (one batched forward/backward for all tasks
instead of a Python loop) when they have the same shapes and ``bn=batch``; the loss and gradients equal
the loop's (checked in the tests). ``vmap=auto`` uses it on CUDA only: on a CPU the vectorised
map was about twice as slow as the loop (8 tasks, 5-way 1-shot 28×28, one thread). Second-order meta-batches are looped: under ``vmap`` the second-order
gradient through the conv/batch-norm blocks came out wrong (off by 1e-3 relative even in float64, and a
non-zero gradient for the conv biases that batch norm makes irrelevant; torch 2.14), and ``bn=running``
updates running statistics, which a vectorised map cannot.

Choices, all options:

* ``bn``: ``batch`` (default, as Finn's code) normalises with the statistics of the batch being processed,
  in training and at test (support during adaptation, query at prediction) and keeps no running
  statistics; ``running`` keeps running statistics, updated during meta-training and used at test.
* Head: a linear layer with ``max_way`` outputs; an N-way episode uses the first N (so meta-training and
  test may differ in N, e.g. 4-way training and 3-way testing on the FER split).

@inproceedings{finn2017model,
  title     = {Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks},
  author    = {Finn, Chelsea and Abbeel, Pieter and Levine, Sergey},
  booktitle = {International Conference on Machine Learning (ICML)},
  year      = {2017}
}
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from fewshot_bench.backbones import feature_shape
from fewshot_bench.method import FewShotMethod, Optimisation, Task
from fewshot_bench.options import Option
from fewshot_bench.registry import register_method


@register_method("maml")
class MAML(FewShotMethod):
    """Model-Agnostic Meta-Learning: inner-loop adaptation of Conv-4 + linear head (Finn et al. 2017)."""

    paper = "Finn, Abbeel & Levine. Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks. ICML 2017."
    default_backbone = "conv4-32"
    optimisation = Optimisation(lr=1e-3, lr_step=0, source="Finn et al. 2017: Adam meta learning rate 1e-3, constant")
    # The inner loop runs tiny batches (the support set) where channels-last reorders cost more than they save.
    memory_format = torch.contiguous_format
    compilable = False  # functional calls with fresh fast weights at every inner step defeat compilation
    options = (
        Option("inner_steps", int, 5, "gradient steps on the support set in meta-training (and at test, unless "
               "test_inner_steps is set)", minimum=0),
        Option("test_inner_steps", int, None, "gradient steps on the support set at test time (default: "
               "inner_steps; Finn et al. used 3 on 5-way Omniglot after 1 in training, 10 on miniImageNet after 5)",
               minimum=0),
        Option("inner_lr", float, 0.01, "inner-loop learning rate α", minimum=0.0),
        Option("first_order", bool, False, "first-order MAML (no second derivatives)"),
        Option("bn", str, "batch", "batch-norm statistics: batch (transductive, Finn) or running", ("batch", "running")),
        Option("max_way", int, 20, "outputs of the linear head; an N-way episode uses the first N", minimum=2),
        Option("vmap", str, "auto", "vectorise first-order meta-batches with torch.func.vmap: auto (on CUDA), "
               "on, off", ("auto", "on", "off")),
    )

    def __init__(self, backbone: nn.Module, image_shape: tuple[int, int, int], **options) -> None:
        super().__init__(backbone, image_shape, **options)
        c, h, w = feature_shape(backbone, image_shape)
        self.head = nn.Linear(c * h * w, options["max_way"])
        if options["bn"] == "batch":
            for module in self.backbone.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.track_running_stats = False
                    module.running_mean = module.running_var = module.num_batches_tracked = None

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images).flatten(1))

    def logits(self, params: dict[str, torch.Tensor], images: torch.Tensor, n_way: int) -> torch.Tensor:
        return functional_call(self, params, (images,))[:, :n_way]

    def adapt(self, support: torch.Tensor, support_labels: torch.Tensor, n_way: int,
              create_graph: bool, steps: int | None = None) -> dict[str, torch.Tensor]:
        """Fast weights after ``steps`` (default ``inner_steps``) gradient steps on the support loss."""
        fast = dict(self.named_parameters())
        for _ in range(self.config["inner_steps"] if steps is None else steps):
            loss = F.cross_entropy(self.logits(fast, support, n_way), support_labels)
            names = [n for n, p in fast.items() if p.requires_grad]
            grads = torch.autograd.grad(loss, [fast[n] for n in names], create_graph=create_graph, allow_unused=True)
            for name, grad in zip(names, grads):
                if grad is not None:
                    fast[name] = fast[name] - self.config["inner_lr"] * grad
        return fast

    def predict(self, support, support_labels, query, n_way):
        with torch.enable_grad():
            fast = self.adapt(support, support_labels, n_way, create_graph=False,
                              steps=self.config.get("test_inner_steps"))
        return self.logits({k: v.detach() for k, v in fast.items()}, query, n_way)

    def loss(self, task: Task) -> torch.Tensor:
        second_order = not self.config["first_order"]
        fast = self.adapt(task.support, task.support_labels, task.n_way, create_graph=second_order)
        return F.cross_entropy(self.logits(fast, task.query, task.n_way), task.query_labels)

    def meta_batch_loss(self, tasks: list[Task]) -> torch.Tensor:
        if not self.vectorisable(tasks):
            return super().meta_batch_loss(tasks)
        n_way = tasks[0].n_way

        def task_loss(params, support, support_labels, query, query_labels):
            fast = params
            for _ in range(self.config["inner_steps"]):
                def support_loss(weights):
                    return F.cross_entropy(self.logits(weights, support, n_way), support_labels)
                grads = grad(support_loss)(fast)
                fast = {name: fast[name] - self.config["inner_lr"] * g.detach() for name, g in grads.items()}
            return F.cross_entropy(self.logits(fast, query, n_way), query_labels)

        stacked = [torch.stack([getattr(t, field) for t in tasks])
                   for field in ("support", "support_labels", "query", "query_labels")]
        losses = vmap(task_loss, in_dims=(None, 0, 0, 0, 0))(dict(self.named_parameters()), *stacked)
        return losses.mean()

    def vectorisable(self, tasks: list[Task]) -> bool:
        """Whether a meta-batch can run as one vectorised map: first order, several tasks of one shape, batch BN."""
        if len(tasks) < 2 or self.config["bn"] != "batch" or not self.config["first_order"]:
            return False
        if self.config["vmap"] == "off" or (self.config["vmap"] == "auto" and tasks[0].support.device.type != "cuda"):
            return False
        first = tasks[0]
        return all(t.n_way == first.n_way and t.support.shape == first.support.shape
                   and t.query.shape == first.query.shape for t in tasks)
