"""The supervised pre-training stage, and the methods built on it (Baseline, Baseline++, SimpleShot, FEAT)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import tiny_run_flags
from fewshot_bench.config import RunConfig
from fewshot_bench.engine import pretraining as stage
from fewshot_bench.engine.runner import resolve_variants, run
from fewshot_bench.results.provenance import cell_code_version
from fewshot_bench.episodic.tasks import TaskBuilder
from fewshot_bench.errors import ConfigError
from fewshot_bench.methods.protonet import ProtoNet
from fewshot_bench.options import Spec
from fewshot_bench.pretraining import PretrainRecipe, recipe_of, resolve
from fewshot_bench.registry import BACKBONES, STAGES
from fewshot_bench.results.provenance import code_version
from test_methods_train import patterned_dataset

SHAPE = (1, 28, 28)


def builder_and_data(per_class=12):
    dataset = patterned_dataset(SHAPE, n_classes=5, per_class=per_class)
    builder = TaskBuilder(dataset, torch.device("cpu"), torch.tensor([0.5]), torch.tensor([0.25]))
    train_ids = [0, 1, 2]
    labels = dataset.labels.numpy()
    indices = np.flatnonzero(np.isin(labels, train_ids))
    return builder, indices, np.searchsorted(train_ids, labels[indices])


def variant_model(spec):
    torch.manual_seed(0)
    return resolve(Spec.parse(spec)).build(SHAPE)


def test_any_method_takes_the_stage_and_plain_variants_stay_as_they_were():
    plain = resolve(Spec.parse("protonet"))
    assert recipe_of(plain) is None and not any(k.startswith("pretrain") for k in plain.option_dict)
    # the code version names the source of the method, its backbone, every stage and the core path
    stages = tuple(entry.obj for entry in STAGES.entries())
    assert cell_code_version(plain) == code_version(ProtoNet, BACKBONES.get("conv4"), stages)
    staged = resolve(Spec.parse("protonet[pretrain_epochs=3,pretrain_head=cosine]"))
    assert staged.label == "protonet[pretrain_epochs=3,pretrain_head=cosine]"
    assert recipe_of(staged) == PretrainRecipe(epochs=3, head="cosine", source="")
    assert cell_code_version(staged) == cell_code_version(plain)  # same code; the options are in the label
    # the run key applies to every variant that does not name its own; methods with a recipe keep theirs
    variants = resolve_variants(RunConfig(methods=["protonet", "baseline[pretrain_epochs=7]", "simpleshot"],
                                          pretrain_epochs=2))
    assert [v.label for v in variants] == ["protonet[pretrain_epochs=2]", "baseline[pretrain_epochs=7]",
                                           "simpleshot[pretrain_epochs=2]"]
    assert recipe_of(variants[2]).optimiser == "sgd" and recipe_of(variants[2]).milestones == "45,66"
    with pytest.raises(ConfigError, match="pretrain_milestones"):
        recipe_of(resolve(Spec.parse("protonet[pretrain_epochs=1,pretrain_milestones=ten]")))
    with pytest.raises(ConfigError, match="unknown option 'pretrain_epoch'"):
        resolve(Spec.parse("protonet[pretrain_epoch=1]"))


def test_pretraining_learns_the_training_classes_without_touching_the_global_generator():
    builder, indices, targets = builder_and_data()
    model = variant_model("protonet")
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    rng = torch.get_rng_state()
    result = stage.pretrain(model, builder, PretrainRecipe(epochs=6, batch=8, milestones="4"), indices=indices,
                            targets=targets, key="k", folder=None, seed=0)
    assert torch.equal(torch.get_rng_state(), rng)
    assert result.epochs == 6 and result.steps == 6 * 5 and len(result.losses) == 6
    assert result.losses[-1] < 0.5 * result.losses[0] and result.accuracies[-1] > 0.9
    assert any(not torch.equal(before[k], v) for k, v in model.backbone.state_dict().items())


def test_a_killed_pretraining_resumes_to_the_same_backbone_and_cells_share_it(tmp_path, monkeypatch):
    builder, indices, targets = builder_and_data()
    recipe = PretrainRecipe(epochs=4, batch=8, optimiser="sgd", lr=0.05, milestones="2")
    straight = variant_model("protonet")
    stage.pretrain(straight, builder, recipe, indices=indices, targets=targets, key="a", folder=tmp_path / "a",
                   seed=3, augment=True)

    real_save, saves = stage._save, []

    def save_then_die(path, state):
        real_save(path, state)
        saves.append(path)
        if len(saves) == 2:
            raise KeyboardInterrupt  # killed after epoch 2's checkpoint

    monkeypatch.setattr(stage, "_save", save_then_die)
    killed = variant_model("protonet")
    with pytest.raises(KeyboardInterrupt):
        stage.pretrain(killed, builder, recipe, indices=indices, targets=targets, key="b", folder=tmp_path / "b",
                       seed=3, augment=True)
    assert (tmp_path / "b" / "b.partial.pt").is_file()
    monkeypatch.setattr(stage, "_save", real_save)
    resumed = variant_model("protonet")
    result = stage.pretrain(resumed, builder, recipe, indices=indices, targets=targets, key="b",
                            folder=tmp_path / "b", seed=3, augment=True)
    assert result.epochs == 4 and not result.reused and not (tmp_path / "b" / "b.partial.pt").exists()
    for name, value in straight.backbone.state_dict().items():
        assert torch.equal(value, resumed.backbone.state_dict()[name]), name
    # another cell of the same key loads it instead of pre-training again
    other = variant_model("protonet")
    again = stage.pretrain(other, builder, recipe, indices=indices, targets=targets, key="b", folder=tmp_path / "b",
                           seed=3, augment=True)
    assert again.reused and again.losses == result.losses
    for name, value in straight.backbone.state_dict().items():
        assert torch.equal(value, other.backbone.state_dict()[name]), name


def test_a_run_pretrains_once_per_key_and_records_the_stage(tmp_path):
    # the four new methods beside CRN in one run; the run key gives every variant but CRN one epoch
    methods = ["baseline", "baselinepp[finetune_epochs=2]", "simpleshot", "feat", "crn[pretrain_epochs=0]", "protonet"]
    config = RunConfig(methods=methods, **tiny_run_flags(tmp_path, pretrain_epochs=1, test_episodes=4))
    result = run(config)
    assert not result.failures
    cells = {(c["label"], c["shot"]): c for c in result.store.load_cells()}
    assert cells[("crn", 1)]["pretraining"] is None and cells[("crn", 1)]["train_episodes"] == 4
    assert cells[("feat[pretrain_epochs=1]", 2)]["train_episodes"] == 4  # FEAT meta-trains after the stage
    baseline = [cells[("baseline[pretrain_epochs=1]", shot)] for shot in (1, 2)]
    assert [c["train_episodes"] for c in baseline] == [0, 0]  # Chen et al. do no episodic training
    assert [c["pretraining"]["reused"] for c in baseline] == [False, True]
    assert baseline[0]["pretraining"]["key"] == baseline[1]["pretraining"]["key"]
    assert baseline[0]["pretraining"]["optimiser"] == "adam" and baseline[0]["pretraining"]["batch"] == 16
    protonet = cells[("protonet[pretrain_epochs=1]", 1)]
    assert protonet["train_episodes"] == 4 and protonet["pretraining"]["epochs"] == 1
    keys = {c["pretraining"]["key"] for c in cells.values() if c["pretraining"]}
    assert len(list((result.store.pretrained_dir).glob("*.pt"))) == len(keys) == 5
    # SimpleShot's centring vector is the training classes' mean embedding, saved with its weights
    saved = torch.load(result.store.checkpoint(
        next(p.stem for p in (result.store.root / "cells").glob("simpleshot*.json"))).path, weights_only=True)
    assert saved["model"]["base_mean"].abs().sum() > 0


def test_baseline_fits_its_classifier_as_chen_et_al_sgd_does():
    """Two episodes fitted at once (as the evaluator batches them), each equal to torch.optim.SGD on its own."""
    model = variant_model("baseline[finetune_epochs=3]").eval()
    g = torch.Generator().manual_seed(0)
    supports, labels = torch.randn(2, 6, 10, generator=g), torch.tensor([[0, 0, 1, 1, 2, 2], [2, 1, 0, 2, 1, 0]])
    weight, bias = model._initial(3, 10, supports.device)
    fitted = model._fit(supports, labels, 3)
    for episode in range(2):
        support = supports[episode]
        reference = torch.nn.Linear(10, 3)
        with torch.no_grad():
            reference.weight.copy_(weight)
            reference.bias.copy_(bias)
        sgd = torch.optim.SGD(reference.parameters(), lr=0.01, momentum=0.9, dampening=0.9, weight_decay=0.001)
        for order in model._orders(6, support.device):
            for start in range(0, 6, 4):
                chosen = order[start:start + 4]
                sgd.zero_grad()
                F.cross_entropy(reference(support[chosen]), labels[episode][chosen]).backward()
                sgd.step()
        assert torch.allclose(fitted[0][episode], reference.weight, atol=1e-6)
        assert torch.allclose(fitted[1][episode], reference.bias, atol=1e-6)


def test_baselinepp_scores_with_a_scaled_cosine_classifier():
    model = variant_model("baselinepp").eval()
    direction, gain = torch.randn(3, 8), torch.rand(3) + 0.5
    x = torch.randn(5, 8)
    expected = 2.0 * torch.nn.functional.normalize(x, dim=1) @ (gain[:, None] * F.normalize(direction, dim=1)).t()
    assert torch.allclose(model._scores([direction[None], gain[None]], x[None], 3)[0], expected, atol=1e-4)


def test_simpleshot_is_nearest_centroid_on_centred_normalised_embeddings():
    model = variant_model("simpleshot").eval()
    mean = torch.randn(model.embedding_dim())
    model.set_base_mean(mean)
    support, query = torch.randn(6, 64, 1, 1), torch.randn(4, 64, 1, 1)  # conv4 at 28×28
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    scores = model.predict_features(support, labels, query, 3)
    s = F.normalize(support.flatten(1) - mean, dim=1)
    q = F.normalize(query.flatten(1) - mean, dim=1)
    centroids = torch.stack([s[labels == c].mean(0) for c in range(3)])
    assert torch.allclose(scores, -torch.cdist(q, centroids) ** 2, atol=1e-4)
    un = variant_model("simpleshot[transform=UN]").eval()
    assert torch.allclose(un.transform(support.flatten(1)), support.flatten(1))


def test_feat_attention_learns_lr_mul_times_faster_and_its_regulariser_counts():
    from fewshot_bench.engine.training import make_optimiser

    model = variant_model("feat").train()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimiser = make_optimiser(model, lr=1e-3)  # the training loop's optimiser: FEAT's two parameter groups
    assert [group["lr"] for group in optimiser.param_groups] == [1e-3, pytest.approx(1e-2)]
    from test_methods_train import patterned_tasks
    task = patterned_tasks(1, 2, 3, seed=0)[0]
    model.loss(task).backward()
    optimiser.step()
    moved = {name: (p.detach() - before[name]).abs().max().item() for name, p in model.named_parameters()}
    # Adam's first step moves every parameter by its group's rate: 10× for the attention.
    assert max(v for k, v in moved.items() if k.startswith("adapt.")) == pytest.approx(1e-2, rel=0.05)
    assert max(v for k, v in moved.items() if k.startswith("backbone.")) == pytest.approx(1e-3, rel=0.05)
    assert all(p.grad is not None for p in model.backbone.parameters())
    torch.manual_seed(1)
    off = variant_model("feat[balance=0]").eval()
    on = variant_model("feat").eval()
    assert off.loss(task) < on.loss(task)  # the regulariser adds a positive cross-entropy


def test_the_cli_says_a_baseline_cell_does_no_episodic_training(tmp_path, capsys):
    from fewshot_bench.cli.main import main
    from test_cli_run import cli_args

    flags = tiny_run_flags(tmp_path, shots=[1], test_episodes=3, pretrain_epochs=1)
    assert main(["run", "--methods", "baseline[finetune_epochs=2],protonet"] + cli_args(flags)) == 0
    captured = capsys.readouterr()
    log = captured.out + captured.err
    assert "baseline[finetune_epochs=2,pretrain_epochs=1] 1-shot seed 0: no episodic training, then 3 test" in log
    assert "protonet[pretrain_epochs=1] 1-shot seed 0: training 4 episodes, then 3 test" in log
