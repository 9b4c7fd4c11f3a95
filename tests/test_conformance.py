"""The conformance kit passes every built-in plugin and catches deliberately broken ones."""

import os

import pytest
import torch

from fewshot_bench.method import FewShotMethod
from fewshot_bench.methods.protonet import ProtoNet
from fewshot_bench.registry import DATASETS, METHODS
from fewshot_bench.testing import ConformanceError, check_dataset, check_method


@pytest.mark.parametrize("name", ["protonet", "matchingnet", "maml", "relationnet", "crn"])
def test_every_builtin_method_conforms(name):
    options = {"inner_steps": 1} if name == "maml" else {}
    check_method(METHODS.get(name), options)


def test_builtin_datasets_conform(tmp_path):
    check_dataset(DATASETS.get("synthetic-fer"), options={"total": 300, "size": 20})


def test_real_data_plugins_conform(shared_data):
    check_dataset(DATASETS.get("fer2013"), shared_data / "fer2013.npz")
    check_dataset(DATASETS.get("omniglot"), shared_data / "omniglot28.npz", {"rotations": False})


class WrongShape(ProtoNet):
    """Returns scores transposed."""

    def predict(self, support, support_labels, query, n_way):
        return super().predict(support, support_labels, query, n_way).t()


class PeeksAtQueryLayout(ProtoNet):
    """Cheats: assumes queries arrive class-major, i.e. reads the labels off their positions."""

    def predict(self, support, support_labels, query, n_way):
        scores = super().predict(support, support_labels, query, n_way)
        cheat = torch.nn.functional.one_hot(torch.arange(n_way).repeat_interleave(len(query) // n_way), n_way)
        return scores * 0 + cheat.float() * 100


class NonDeterministic(ProtoNet):
    """Adds noise from an unseeded generator (64 bits from the OS: two calls never share a seed in practice)."""

    def predict(self, support, support_labels, query, n_way):
        seed = int.from_bytes(os.urandom(8), "little") >> 1
        noise = torch.randn(len(query), n_way, generator=torch.Generator().manual_seed(seed))
        return super().predict(support, support_labels, query, n_way) + noise


class NoGradient(ProtoNet):
    """Detaches its features, so nothing can be trained."""

    def loss(self, task):
        return super().loss(task).detach().requires_grad_()


class PredictOverridesItsHead(ProtoNet):
    """Changes predict but leaves predict_features, which training (and batched episodes) use."""

    def predict(self, support, support_labels, query, n_way):
        return super().predict(support, support_labels, query, n_way) * 2.0


class EmbedBeyondTheBackbone(ProtoNet):
    """Rescales features by the episode's mean feature norm inside embed, which batched episodes skip."""

    def embed(self, support, query):
        support_features, query_features = super().embed(support, query)
        scale = torch.cat([support_features, query_features]).flatten(1).norm(dim=1).mean()
        return support_features / scale, query_features / scale


@pytest.mark.parametrize("broken, message", [
    (WrongShape, r"must return scores of shape \(n_query, n_way\) = \(12, 3\)"),
    (PredictOverridesItsHead, "predict disagrees with predict_features"),
    (EmbedBeyondTheBackbone, "batched episodes change the loss"),
    (PeeksAtQueryLayout, "depends on the order of the query images"),
    (NonDeterministic, "is not deterministic"),
    (NoGradient, "does not propagate gradients"),
    (int, "must subclass fewshot_bench.method.FewShotMethod"),
])
def test_broken_methods_are_caught_with_an_explanation(broken, message):
    with pytest.raises(ConformanceError, match=message):
        check_method(broken)


def test_broken_option_default_is_caught():
    from fewshot_bench.options import Option

    class BadOption(ProtoNet):
        options = (Option("k", int, "three", "an int with a string default"),)

    with pytest.raises(ConformanceError, match="default of option 'k' is not valid"):
        check_method(BadOption)
