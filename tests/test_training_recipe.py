"""Each method trains with its paper's learning rate, schedule and clipping unless the run names them."""

import numpy as np
import pytest
import torch

from fewshot_bench.config import RunConfig
from fewshot_bench.engine.runner import resolve_variants
from fewshot_bench.engine.training import TrainSettings, train
from fewshot_bench.episodic.episodes import EpisodeSampler
from fewshot_bench.episodic.tasks import TaskBuilder
from test_methods_train import build, patterned_dataset

PAPERS = {  # label: (lr, lr_step, lr_gamma, grad_clip)
    "protonet": (1e-3, 2000, 0.5, 0.0),        # Snell et al.: halved every 2000 episodes
    "matchingnet": (1e-3, 0, 0.5, 0.0),        # Closer Look's re-implementation: constant
    "maml": (1e-3, 0, 0.5, 0.0),               # Finn et al.: constant meta learning rate
    "relationnet": (1e-3, 100_000, 0.5, 0.5),  # Sung et al.'s code
    "crn": (1e-3, 2500, 0.5, 0.5),             # CSRN's code
}


def recipe(variant) -> tuple:
    t = variant.training
    return t["lr"], t["lr_step"], t["lr_gamma"], t["grad_clip"]


def test_every_method_has_its_papers_recipe_by_default():
    variants = resolve_variants(RunConfig(methods=list(PAPERS)))
    assert {v.label: recipe(v) for v in variants} == PAPERS


def test_run_keys_set_the_recipe_of_variants_that_do_not_name_their_own():
    config = RunConfig(methods=["protonet", "matchingnet", "crn[lr_step=10]"], lr_step=2000, grad_clip=0.0)
    variants = {v.name: v for v in resolve_variants(config)}
    # the label says where a variant differs from its method's recipe; ProtoNet's already is 2000
    assert [v.label for v in variants.values()] == ["protonet", "matchingnet[lr_step=2000]",
                                                    "crn[lr_step=10,grad_clip=0]"]
    assert recipe(variants["matchingnet"]) == (1e-3, 2000, 0.5, 0.0)
    assert recipe(variants["crn"]) == (1e-3, 10, 0.5, 0.0)


def small_run(spec: str, episodes: int, **settings):
    shape = (1, 28, 28)
    dataset = patterned_dataset(shape)
    builder = TaskBuilder(dataset, torch.device("cpu"), torch.tensor([0.5]), torch.tensor([0.25]))
    sampler = EpisodeSampler(dataset.labels.numpy(), range(5), 3, 1, 2, seed=0)
    model = build(spec, shape)
    optimisers = []
    original = torch.optim.Adam

    class Recording(original):  # keeps the optimiser, to read its final learning rate
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            optimisers.append(self)

    torch.optim.Adam = Recording
    try:
        train(model, sampler, builder, TrainSettings(episodes=episodes, log_interval=1, **settings),
              allowed_class_ids=list(range(5)), labels=dataset.labels.numpy(), class_names=dataset.class_names)
    finally:
        torch.optim.Adam = original
    return model, optimisers[0].param_groups[0]["lr"]


def test_lr_step_zero_keeps_the_rate_constant_and_a_step_halves_it():
    assert small_run("protonet", 4, lr_step=0)[1] == pytest.approx(1e-3)
    assert small_run("protonet", 4, lr_step=2)[1] == pytest.approx(2.5e-4)


def test_grad_clip_bounds_backbone_and_head_separately():
    model, _ = small_run("relationnet", 1, grad_clip=1e-3)
    groups = model.clip_groups()
    assert len(groups) == 2 and len(groups[1]) > 0  # encoder, relation module
    for group in groups:
        norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in group if p.grad is not None]))
        assert norm.item() == pytest.approx(1e-3, rel=1e-3)
    unclipped, _ = small_run("relationnet", 1, grad_clip=0.0)
    norms = [torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in g if p.grad is not None])).item()
             for g in unclipped.clip_groups()]
    assert min(norms) > 1e-2 and np.isfinite(norms).all()
