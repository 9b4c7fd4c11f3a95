import math

import pytest
import torch
from torch import nn

from fewshot_bench.method import Task
from fewshot_bench.methods.crn import CRN, depth_average_pool, js_distance_loss, js_divergence, map_distributions
from fewshot_bench.methods.matchingnet import attention_log_probs
from fewshot_bench.methods.relationnet import (RelationModule, RelationNet, concatenated_pairs, group_by_class,
                                               one_hot_mse)
from fewshot_bench.registry import BACKBONES


def test_matchingnet_attention_sums_to_one_and_is_a_weighted_vote():
    support = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.1]])
    labels = torch.tensor([0, 1, 0])
    query = torch.tensor([[1.0, 0.05], [0.0, 2.0]])
    attention, log_probs = attention_log_probs(query, support, labels, 2, scale=1.0)
    assert torch.allclose(attention.sum(1), torch.ones(2))
    votes = torch.stack([attention[:, labels == c].sum(1) for c in range(2)], 1)
    assert torch.allclose(log_probs.exp(), votes, atol=1e-6)
    cos = torch.nn.functional.cosine_similarity(query[:1], support)
    assert torch.allclose(attention[0], torch.softmax(cos, 0), atol=1e-6)
    assert log_probs.argmax(1).tolist() == [0, 1]


@pytest.mark.parametrize("size", [(5, 5), (10, 10), (19, 19), (1, 1), (3, 3)])
def test_relation_module_works_at_any_map_size_and_scores_lie_in_0_1(size):
    module = RelationModule(128, size)
    scores = module(torch.randn(6, 128, *size) * 10)
    assert scores.shape == (6,) and bool(((scores >= 0) & (scores <= 1)).all())


@pytest.mark.parametrize("size", [(10, 10), (5, 5)])  # unpadded and padded first convolution
@pytest.mark.parametrize("training", [True, False])
def test_relation_score_grid_equals_the_module_on_explicit_pairs(size, training):
    torch.manual_seed(0)
    module = RelationModule(2 * 16, size, width=8).double().train(training)
    classes = torch.randn(4, 16, *size, dtype=torch.float64, requires_grad=True)
    queries = torch.randn(7, 16, *size, dtype=torch.float64, requires_grad=True)
    reference = module(concatenated_pairs(classes, queries)).view(7, 4)
    grid = module.score_grid(classes, queries)
    assert grid.shape == (7, 4)
    assert torch.allclose(grid, reference, atol=1e-12)
    weights = torch.randn(7, 4, dtype=torch.float64)
    expected = torch.autograd.grad((reference * weights).sum(), [classes, queries, *module.parameters()])
    got = torch.autograd.grad((grid * weights).sum(), [classes, queries, *module.parameters()])
    for e, g in zip(expected, got):
        assert torch.allclose(e, g, atol=1e-10)


def test_relation_mse_target_is_one_hot():
    scores = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.2, 0.6]])
    labels = torch.tensor([0, 2])
    expected = ((0.1 ** 2 + 0.1 ** 2 + 0) + (0.2 ** 2 + 0.2 ** 2 + 0.4 ** 2)) / 6
    assert one_hot_mse(scores, labels).item() == pytest.approx(expected)
    assert one_hot_mse(torch.tensor([[1.0, 0.0, 0.0]]), torch.tensor([0])).item() == 0.0


def test_relationnet_sums_shots_and_crn_dap_averages_them():
    maps = torch.arange(2 * 3 * 4, dtype=torch.float32).view(6, 1, 2, 2)
    labels = torch.tensor([0, 1, 0, 1, 0, 1])
    grouped = group_by_class(maps, labels, 2)
    assert torch.equal(grouped[0], maps[[0, 2, 4]]) and torch.equal(grouped[1], maps[[1, 3, 5]])
    dap = depth_average_pool(grouped)
    assert torch.allclose(dap[0], maps[[0, 2, 4]].mean(0)) and torch.allclose(dap[1], maps[[1, 3, 5]].mean(0))
    rn = RelationNet(BACKBONES.get("rn-encoder")(1), (1, 28, 28), class_pool="sum", hidden=8)
    summed = rn.class_maps(grouped)
    assert torch.equal(summed[0], maps[0] + maps[2] + maps[4]) and torch.equal(summed[1], maps[1] + maps[3] + maps[5])


def test_dap_with_one_shot_is_the_identity():
    maps = torch.randn(3, 1, 64, 5, 5)
    assert torch.equal(depth_average_pool(maps), maps[:, 0])


def test_js_divergence_properties_and_hand_computed_value():
    p = torch.tensor([0.5, 0.5, 0.0])
    q = torch.tensor([0.0, 0.5, 0.5])
    assert js_divergence(p, p).item() == pytest.approx(0.0, abs=1e-7)
    assert js_divergence(p, q).item() == pytest.approx(js_divergence(q, p).item())
    # m = (0.25, 0.5, 0.25): KL(p||m) = 0.5·log2(2) + 0.5·log2(1) = 0.5, same for q → JS = 0.5
    assert js_divergence(p, q).item() == pytest.approx(0.5, abs=1e-6)
    disjoint = js_divergence(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]))
    assert disjoint.item() == pytest.approx(1.0, abs=1e-6)
    random = torch.softmax(torch.randn(50, 10) * 3, 1)
    values = js_divergence(random[:25], random[25:])
    assert bool(((values >= 0) & (values <= 1)).all())


def class_class_loss(maps: torch.Tensor, scale: str = "none") -> torch.Tensor:
    p = map_distributions(maps, scale)
    return js_distance_loss(p, p, torch.eye(len(maps), dtype=torch.bool))


def test_js_distance_loss_decreases_when_classes_are_pulled_apart():
    close = torch.stack([torch.zeros(4, 2, 2), torch.zeros(4, 2, 2) + 0.01 * torch.arange(16.).view(4, 2, 2)])
    apart = torch.stack([torch.zeros(4, 2, 2), 5.0 * torch.arange(16.).view(4, 2, 2)])
    assert class_class_loss(apart).item() < class_class_loss(close).item()
    # identical class maps: every D_JS = 0, so L = 1 − N/N² = 1 − 1/N
    same = torch.zeros(3, 4, 2, 2)
    assert class_class_loss(same).item() == pytest.approx(1 - 1 / 3)


def test_standardised_js_logits_remove_the_scale_degeneracy():
    # The paper's reading: scaling every map (free for batch norm) drives L_dist towards 0 without separating
    # anything; standardised logits give the same loss at every scale.
    torch.manual_seed(0)
    maps = torch.randn(4, 8, 5, 5)
    raw = [class_class_loss(maps * c).item() for c in (1.0, 5.0, 20.0)]
    assert raw[0] > raw[1] > raw[2] and raw[2] < 0.1
    standardised = [class_class_loss(maps * c, "standardise").item() for c in (1.0, 5.0, 20.0)]
    assert standardised == pytest.approx([standardised[0]] * 3, rel=1e-5)
    assert standardised[0] > 0.3


def crn_task():
    torch.manual_seed(0)
    return Task(torch.randn(6, 1, 28, 28), torch.tensor([0, 0, 1, 1, 2, 2]), torch.randn(6, 1, 28, 28),
                torch.tensor([0, 1, 2, 0, 1, 2]), 3, 2)


def crn_model(**options) -> CRN:
    torch.manual_seed(0)
    defaults = {o.name: o.default for o in CRN.options}
    return CRN(BACKBONES.get("rn-encoder")(1), (1, 28, 28), **{**defaults, **options}).eval()


def test_crn_class_query_pairs_compare_each_class_map_with_each_query_map():
    task = crn_task()
    model = crn_model(js_pairs="class-query", js_weight=1.0)
    support_maps, query_maps = model.embed(task.support, task.query)
    scores, classes, grouped, _ = model.scores_and_classes(support_maps, task.support_labels, query_maps, 3)
    same = torch.arange(3).unsqueeze(1) == task.query_labels.unsqueeze(0)
    expected = js_distance_loss(map_distributions(classes), map_distributions(query_maps), same)
    assert model.loss(task).item() == pytest.approx((one_hot_mse(scores, task.query_labels) + expected).item(),
                                                    rel=1e-5)
    # the targets come from the query labels: relabelled queries change the term
    relabelled = Task(task.support, task.support_labels, task.query, task.query_labels.roll(1), 3, 2)
    assert model.js_term(classes, grouped, query_maps, relabelled.query_labels).item() != pytest.approx(
        expected.item(), rel=1e-6)


def test_crn_js_on_the_mean_map_is_the_same_term_with_and_without_dap():
    torch.manual_seed(0)
    grouped = 2.0 * torch.randn(3, 2, 8, 5, 5)  # (n_way, K, C, h, w) support maps
    labels = torch.tensor([0, 1, 2])
    terms = {}
    for dap in (True, False):
        for js_map in ("class", "mean"):
            model = crn_model(dap=dap, js_map=js_map)
            terms[dap, js_map] = model.js_term(model.class_maps(grouped), grouped, grouped[:, 0], labels).item()
    assert terms[True, "mean"] == pytest.approx(terms[False, "mean"], rel=1e-6)
    assert terms[True, "class"] == pytest.approx(terms[True, "mean"], rel=1e-6)  # DAP is the mean
    # by default dap=false's JS term sees RN's sum, K× the mean, so it is another (sharper) term
    assert terms[False, "class"] < terms[True, "class"] - 0.01


def test_crn_raw_support_scores_follow_csrn():
    task = crn_task()
    model = crn_model(raw_scores=True, js_weight=0.0)
    support_maps, query_maps = model.embed(task.support, task.query)
    dap, _, grouped, _ = model.scores_and_classes(support_maps, task.support_labels, query_maps, 3)
    raw = model.raw_support_scores(grouped, query_maps)
    assert raw.shape == (6, 3, 2)
    # each raw score is the relation module on one [support map ‖ query map] pair
    from fewshot_bench.methods.relationnet import group_by_class
    first = model.relation(torch.cat([group_by_class(support_maps, task.support_labels, 3)[1, 0],
                                      query_maps[4]]).unsqueeze(0))
    assert raw[4, 1, 0].item() == pytest.approx(first.item(), rel=1e-4)
    scores = model.predict(task.support, task.support_labels, task.query, 3)
    assert torch.allclose(scores, raw.mean(-1) + 0.7 * dap, atol=1e-6)
    targets = torch.nn.functional.one_hot(task.query_labels, 3).float().unsqueeze(-1).expand_as(raw)
    expected = torch.nn.functional.mse_loss(raw, targets) + 0.7 * one_hot_mse(dap, task.query_labels)
    assert model.loss(task).item() == pytest.approx(expected.item(), rel=1e-5)


def test_crn_loss_adds_weighted_js_term():
    model = crn_model(js_weight=0.7)
    task = Task(torch.randn(6, 1, 28, 28), torch.tensor([0, 0, 1, 1, 2, 2]), torch.randn(6, 1, 28, 28),
                torch.tensor([0, 1, 2, 0, 1, 2]), 3, 2)
    support_maps, query_maps = model.embed(task.support, task.query)
    scores, classes, _, _ = model.scores_and_classes(support_maps, task.support_labels, query_maps, 3)
    expected = one_hot_mse(scores, task.query_labels) + 0.7 * class_class_loss(classes)
    assert model.loss(task).item() == pytest.approx(expected.item(), rel=1e-5)
    model.config["js_weight"] = 0.0
    assert model.loss(task).item() == pytest.approx(one_hot_mse(scores, task.query_labels).item(), rel=1e-5)


@pytest.mark.parametrize("backbone, side, expected", [
    ("conv4", 28, (64, 1, 1)),      # Omniglot: the papers' 64-d features
    ("conv4", 48, (64, 3, 3)),
    ("conv4", 84, (64, 5, 5)),      # miniImageNet: 1600-d
    ("conv4-32", 84, (32, 5, 5)),   # MAML's miniImageNet backbone: 800-d
    ("rn-encoder", 28, (64, 5, 5)),  # Sung et al.: 5×5 maps on Omniglot
    ("rn-encoder", 48, (64, 10, 10)),
    ("rn-encoder", 64, (64, 14, 14)),  # the CRN authors' code (CSRN) at 64 px
    ("rn-encoder", 84, (64, 19, 19)),
    ("resnet12", 84, (640, 5, 5)),     # MetaOptNet / FEAT: 640-d maps of 5×5 at 84 px
    ("resnet12", 28, (640, 1, 1)),
    ("resnet18", 84, (512, 3, 3)),     # torchvision's trunk
])
def test_backbones_give_the_papers_feature_sizes(backbone, side, expected):
    from fewshot_bench.backbones import feature_shape
    from fewshot_bench.registry import BACKBONES

    assert feature_shape(BACKBONES.get(backbone)(1), (1, side, side)) == expected
