"""Model-Agnostic Meta-Learning, MAML (Finn, Abbeel & Levine, ICML 2017).

The meta-parameters θ of a Conv-4 + linear classifier are adapted to each episode by a few steps of
gradient descent on the support loss (θ' = θ − α ∇θ L_support); the meta-objective is the query loss of
the adapted weights, back-propagated through the adaptation (second order) or, with ``first_order=true``,
treating the inner gradients as constants (FOMAML). At test time the same adaptation runs with gradients
enabled, even inside the evaluation loop's ``no_grad``.

Implemented with ``torch.func.functional_call`` on a dictionary of fast weights; verified against
``learn2learn.algorithms.MAML`` in the tests. The tasks of a meta-batch (``--meta-batch``) can run as one
task-batched program, first or second order (``vmap``): the T tasks' images are stacked along channels and
every convolution becomes one grouped convolution of T groups, so task t's images meet only task t's fast
weights, batch norm normalises each (task, channel) over that task's own images (Finn's batch statistics),
and the head is one batched matrix product. Its losses and first- and second-order meta-gradients equal the
task loop's (float64, in the tests). It needs a backbone of plain layers (convolutions, batch norm with
``bn=batch``, ReLU, max-pooling: every Conv-4) and tasks of one shape. ``vmap=auto`` uses it on CUDA only:
on a 2-core CPU the grouped convolutions made a 32-task second-order Omniglot meta-step 1.7× slower than the
loop (benchmarks/maml_step.py). (``torch.func.vmap``, the earlier first-order-only vectorisation, gave a wrong second-order gradient
through the conv/batch-norm blocks in torch 2.14: off by 1e-3 relative even in float64.)

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
from torch.func import functional_call

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
        Option("vmap", str, "auto", "run a meta-batch's tasks as one task-batched program (grouped convolutions; "
               "first and second order): auto (on CUDA), on, off", ("auto", "on", "off")),
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
        # Found once: the meta-batch check and every batched forward of the inner loop read it.
        self._batched_layers = self._find_batched_layers()

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
        n_way, count = tasks[0].n_way, len(tasks)
        support, query = torch.stack([t.support for t in tasks]), torch.stack([t.query for t in tasks])
        support_labels = torch.stack([t.support_labels for t in tasks]).flatten()
        query_labels = torch.stack([t.query_labels for t in tasks]).flatten()
        # Every task starts from the meta-parameters; the expansion's backward sums the tasks' meta-gradients.
        fast = {name: p.unsqueeze(0).expand(count, *p.shape) for name, p in self.named_parameters()}
        for _ in range(self.config["inner_steps"]):
            # The sum over tasks of each task's mean support loss: each task's fast weights get its own gradient.
            loss = F.cross_entropy(self.task_batched_logits(fast, support, n_way).flatten(0, 1), support_labels,
                                   reduction="sum") / support.shape[1]
            names = [n for n, p in fast.items() if p.requires_grad]
            grads = torch.autograd.grad(loss, [fast[n] for n in names], create_graph=not self.config["first_order"],
                                        allow_unused=True)
            for name, grad in zip(names, grads):
                if grad is not None:
                    fast[name] = fast[name] - self.config["inner_lr"] * grad
        # The mean over tasks of each task's mean query loss, as the task loop's meta_batch_loss.
        return F.cross_entropy(self.task_batched_logits(fast, query, n_way).flatten(0, 1), query_labels,
                               reduction="sum") / (query.shape[1] * count)

    def task_batched_logits(self, params: dict[str, torch.Tensor], images: torch.Tensor, n_way: int) -> torch.Tensor:
        """Logits (T, N, n_way) of T tasks' images (T, N, C, H, W), task t under its own weights ``params[name][t]``."""
        count, n = images.shape[:2]
        x = images.transpose(0, 1).reshape(n, count * images.shape[2], *images.shape[3:])
        for name, layer in self._batched_layers or ():
            if isinstance(layer, nn.Conv2d):
                weight, bias = params[f"{name}.weight"], params.get(f"{name}.bias")
                x = F.conv2d(x, weight.reshape(-1, *weight.shape[2:]), None if bias is None else bias.reshape(-1),
                             layer.stride, layer.padding, layer.dilation, groups=count)
            elif isinstance(layer, nn.BatchNorm2d):  # statistics per (task, channel), over that task's images
                weight, bias = params.get(f"{name}.weight"), params.get(f"{name}.bias")
                x = F.batch_norm(x, None, None, None if weight is None else weight.reshape(-1),
                                 None if bias is None else bias.reshape(-1), training=True, eps=layer.eps)
            else:
                x = layer(x)
        features = x.reshape(n, count, -1).transpose(0, 1)  # task t's maps, flattened as forward() flattens them
        logits = torch.baddbmm(params["head.bias"].unsqueeze(1), features, params["head.weight"].transpose(1, 2))
        return logits[..., :n_way]

    def _find_batched_layers(self) -> list[tuple[str, nn.Module]] | None:
        """The backbone's layers with their parameter-name prefixes when the task-batched program can run them
        (plain convolutions, batch norm on batch statistics, ReLU, max-pooling), else None."""
        layers = []
        for name, module in self.backbone.named_modules(prefix="backbone"):
            if isinstance(module, nn.Sequential):
                continue
            plain_conv = isinstance(module, nn.Conv2d) and module.groups == 1 and module.padding_mode == "zeros"
            batch_norm = isinstance(module, nn.BatchNorm2d) and not module.track_running_stats
            if not (plain_conv or batch_norm or isinstance(module, (nn.ReLU, nn.LeakyReLU, nn.MaxPool2d))):
                return None
            layers.append((name, module))
        return layers

    def vectorisable(self, tasks: list[Task]) -> bool:
        """Whether a meta-batch can run as one task-batched program: several tasks of one shape, batch BN, a
        backbone of plain layers, and ``vmap`` on (or auto, on CUDA)."""
        if len(tasks) < 2 or self.config["bn"] != "batch" or self._batched_layers is None:
            return False
        if self.config["vmap"] == "off" or (self.config["vmap"] == "auto" and tasks[0].support.device.type != "cuda"):
            return False
        first = tasks[0]
        return all(t.n_way == first.n_way and t.support.shape == first.support.shape
                   and t.query.shape == first.query.shape for t in tasks)
