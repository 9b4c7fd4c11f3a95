"""Test episodes handed to a method several at a time (``episodes_per_prediction`` / ``predict_episodes``):
Baseline and Baseline++ fit their per-episode classifiers for many episodes in one batched program, and every
episode gets the scores it gets alone."""

from __future__ import annotations

import pytest
import torch

from fewshot_bench.engine.evaluation import evaluate
from fewshot_bench.episodic.episodes import EpisodeSampler
from fewshot_bench.episodic.tasks import TaskBuilder
from fewshot_bench.errors import MethodContractError
from fewshot_bench.method import FewShotMethod
from fewshot_bench.registry import METHODS
from fewshot_bench.testing import ConformanceError, check_method
from test_methods_train import build, patterned_dataset

SHAPE = (1, 28, 28)


def _evaluation_setup(n_episodes: int, shot: int = 3):
    dataset = patterned_dataset(SHAPE, n_classes=5, per_class=10)
    builder = TaskBuilder(dataset, torch.device("cpu"), torch.tensor([0.5]), torch.tensor([0.25]))
    episodes = EpisodeSampler(dataset.labels.numpy(), range(5), 3, shot, 3, seed=1).sample_set(n_episodes)
    return builder, episodes


@pytest.mark.parametrize("name", ["baseline", "baselinepp"])
def test_batched_finetuning_gives_every_episode_its_own_scores(name):
    model = build(f"{name}[finetune_epochs=20]", SHAPE).eval()
    builder, episodes = _evaluation_setup(7)
    tasks = [builder.task(episode, model.memory_format) for episode in episodes]
    assert type(model).episodes_per_prediction > 1
    with torch.no_grad():
        alone = [model.predict(t.support, t.support_labels, t.query, 3) for t in tasks]
        together = model.predict_episodes([t.support for t in tasks], [t.support_labels for t in tasks],
                                          [t.query for t in tasks], 3)
    assert len(together) == len(tasks)
    for one, many in zip(alone, together):
        torch.testing.assert_close(many, one, atol=1e-5, rtol=1e-5)
        assert torch.equal(many.argmax(1), one.argmax(1))
    # The fit does depend on each episode's own support: different episodes, different classifiers.
    assert not torch.allclose(together[0], together[1])


def test_each_distinct_image_goes_through_the_frozen_backbone_once_on_a_cpu():
    model = build("baseline[finetune_epochs=5]", SHAPE).eval()
    builder, episodes = _evaluation_setup(20)  # 20 episodes of 5 classes × 10 images: images recur
    tasks = [builder.task(episode, model.memory_format) for episode in episodes]
    seen: list[int] = []
    handle = model.backbone.register_forward_hook(lambda module, args, out: seen.append(len(args[0])))
    with torch.no_grad():
        together = model.predict_episodes([t.support for t in tasks], [t.support_labels for t in tasks],
                                          [t.query for t in tasks], 3)
    handle.remove()
    slots = sum(len(t.support) + len(t.query) for t in tasks)
    distinct = len(set(int(i) for e in episodes for i in [*e.support, *e.query]))
    assert sum(seen) == distinct < slots  # one backbone pass per distinct image, not per episode slot
    with torch.no_grad():
        for task, many in zip(tasks, together):
            torch.testing.assert_close(many, model.predict(task.support, task.support_labels, task.query, 3),
                                       atol=1e-5, rtol=1e-5)
    # In training mode batch norm would depend on the batch: every episode is then embedded as it is.
    model.train()
    assert model._embedded_once([tasks[0].support, tasks[0].query]) is None


@pytest.mark.parametrize("name", ["baseline", "baselinepp"])
def test_the_evaluator_gives_the_same_accuracies_batched_and_one_by_one(name):
    model = build(f"{name}[finetune_epochs=20]", SHAPE)
    builder, episodes = _evaluation_setup(11)
    batched = evaluate(model, builder, episodes)
    model.episodes_per_prediction = 1
    one_by_one = evaluate(model, builder, episodes)
    assert (batched.accuracies == one_by_one.accuracies).all()
    assert (batched.class_correct == one_by_one.class_correct).all()


class _Counting(FewShotMethod):
    """Nearest class mean on pixels, counting how many episodes each evaluator call hands over."""

    episodes_per_prediction = 4

    def __init__(self, backbone, image_shape, **options):
        super().__init__(backbone, image_shape, **options)
        self.calls: list[int] = []
        self.anchor = torch.nn.Parameter(torch.zeros(1))

    def predict(self, support, support_labels, query, n_way):
        means = torch.stack([support[support_labels == c].flatten(1).mean(0) for c in range(n_way)])
        return -torch.cdist(query.flatten(1), means) + 0 * self.anchor

    def predict_episodes(self, supports, support_labels, queries, n_way):
        self.calls.append(len(supports))
        return super().predict_episodes(supports, support_labels, queries, n_way)


def test_the_evaluator_hands_over_episodes_per_prediction_at_a_time():
    model = _Counting(torch.nn.Identity(), SHAPE)
    builder, episodes = _evaluation_setup(10)
    seen = []
    result = evaluate(model, builder, episodes, progress=seen.append)
    assert model.calls == [4, 4, 2]
    assert seen == [4, 4, 2]
    model.calls, model.episodes_per_prediction = [], 1
    alone = evaluate(model, builder, episodes)
    assert model.calls == [1] * 10
    assert (result.class_correct == alone.class_correct).all()


def test_an_evaluator_call_that_returns_the_wrong_number_of_score_matrices_is_refused():
    class Short(_Counting):
        def predict_episodes(self, supports, support_labels, queries, n_way):
            return super().predict_episodes(supports, support_labels, queries, n_way)[:-1]

    builder, episodes = _evaluation_setup(5)
    with pytest.raises(MethodContractError, match="one score matrix per episode"):
        evaluate(Short(torch.nn.Identity(), SHAPE), builder, episodes)


def test_the_conformance_kit_refuses_a_predict_episodes_that_mixes_episodes():
    base = METHODS.get("protonet")

    class Mixing(base):
        """ProtoNet whose batched prediction scores every episode against the first episode's support."""

        episodes_per_prediction = 3

        def predict_episodes(self, supports, support_labels, queries, n_way):
            return [self.predict(supports[0], support_labels[0], query, n_way) for query in queries]

    with pytest.raises(ConformanceError, match="predict_episodes disagrees with predict on episode 2"):
        check_method(Mixing, image_shape=(1, 28, 28))
