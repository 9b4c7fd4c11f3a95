"""The conformance kit passes every built-in plugin and catches deliberately broken ones."""

import os

import pytest
import torch

from fewshot_bench.method import FewShotMethod
from fewshot_bench.methods.protonet import ProtoNet
from fewshot_bench.registry import DATASETS, METHODS
from fewshot_bench.testing import ConformanceError, check_dataset, check_method


# Options that keep a method's check fast; a method not named here is checked with its defaults.
FAST_OPTIONS = {"maml": {"inner_steps": 1}, "baseline": {"finetune_epochs": 5}, "baselinepp": {"finetune_epochs": 5}}
BUILTIN_METHODS = [entry.name for entry in METHODS.entries() if entry.source == "built-in"]


def test_the_builtin_list_comes_from_the_registry():
    assert {"protonet", "matchingnet", "maml", "relationnet", "crn", "baseline", "baselinepp", "simpleshot",
            "feat"} <= set(BUILTIN_METHODS)


@pytest.mark.parametrize("name", BUILTIN_METHODS)
def test_every_builtin_method_conforms(name):
    check_method(METHODS.get(name), FAST_OPTIONS.get(name, {}))


@pytest.mark.parametrize("options", [{"js_pairs": "class-query"}, {"raw_scores": True},
                                     {"js_scale": "standardise", "js_map": "mean", "dap": False}])
def test_crn_variants_conform(options):
    check_method(METHODS.get("crn"), options)


def test_builtin_datasets_conform(tmp_path):
    check_dataset(DATASETS.get("synthetic-fer"), options={"total": 300}, image_size=20)


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


class HardCodedThreeWay(ProtoNet):
    """Scores every episode as if it were 3-way (a plugin written against the default run only)."""

    def predict_features(self, support_features, support_labels, query_features, n_way):
        return super().predict_features(support_features, support_labels, query_features, 3)


class IgnoresSupport(ProtoNet):
    """Classifies queries from their own features alone: a plain classifier, not a few-shot method."""

    def predict_features(self, support_features, support_labels, query_features, n_way):
        return query_features.flatten(1)[:, :n_way]


class EditsSupportInPlace(ProtoNet):
    """Centres the support images in place, which would corrupt the runner's reused episode buffers."""

    def predict(self, support, support_labels, query, n_way):
        support -= support.mean()
        return super().predict(support, support_labels, query, n_way)


class GroupsTwice(ProtoNet):
    """Puts the backbone in two optimiser groups (it would take two steps per episode)."""

    def parameter_groups(self):
        from fewshot_bench.method import ParameterGroup

        return [ParameterGroup(list(self.parameters())), ParameterGroup(list(self.backbone.parameters()), 10.0)]


class DeclaresAFitItLacks(ProtoNet):
    """Declares the fit stage without implementing its hook."""

    fits_training_classes = True


class DeclaresMapsItLacks(ProtoNet):
    """Declares the feature-map figure without implementing its hook."""

    class_map_figure = True


class EmbeddingKeepsMaps(ProtoNet):
    """Returns feature maps from ``embedding`` instead of vectors."""

    def embedding(self, feature_maps):
        return feature_maps


class UnusedParameter(ProtoNet):
    """Declares a parameter that nothing uses: it would never train."""

    def __init__(self, backbone, image_shape, **options):
        super().__init__(backbone, image_shape, **options)
        self.temperature = torch.nn.Parameter(torch.ones(1))


class FrozenOnPurpose(UnusedParameter):
    """The same parameter, frozen on purpose: allowed."""

    def __init__(self, backbone, image_shape, **options):
        super().__init__(backbone, image_shape, **options)
        self.temperature.requires_grad_(False)


class UntrainedCopy(ProtoNet):
    """Scores with a copy of its backbone taken at construction (kept out of its parameters), so training
    changes nothing it predicts."""

    def __init__(self, backbone, image_shape, **options):
        import copy

        super().__init__(backbone, image_shape, **options)
        self._copy = [copy.deepcopy(backbone)]

    def predict(self, support, support_labels, query, n_way):
        self._copy[0].train(self.training)
        features = self._copy[0](torch.cat([support, query]))
        return self.predict_features(features[:len(support)], support_labels, features[len(support):], n_way)


class CachesTrainingLabels(ProtoNet):
    """Remembers the query labels of the last training episode and replays them at test when the shapes match
    (+13.6 points when training and test episodes have the same shape)."""

    def loss(self, task):
        self._labels = task.query_labels
        return super().loss(task)

    def predict(self, support, support_labels, query, n_way):
        scores = super().predict(support, support_labels, query, n_way)
        labels = getattr(self, "_labels", None)
        if labels is not None and len(labels) == len(query):
            return scores + 100 * torch.nn.functional.one_hot(labels, n_way)
        return scores


class RemembersEpisodes(ProtoNet):
    """Adds the previous episode's mean support feature to every score (state carried between episodes)."""

    def predict(self, support, support_labels, query, n_way):
        scores = super().predict(support, support_labels, query, n_way)
        carried = getattr(self, "_carried", torch.zeros(()))
        self._carried = support.mean().detach()
        return scores + carried


class ConstantScores(ProtoNet):
    """The same scores for every query, whatever it shows."""

    def predict(self, support, support_labels, query, n_way):
        bias = sum(p.sum() for p in self.parameters()) * 0  # keeps the gradient checks quiet
        return torch.zeros(len(query), n_way) + bias + torch.arange(n_way)


def test_a_parameter_frozen_on_purpose_is_allowed():
    check_method(FrozenOnPurpose)


@pytest.mark.parametrize("broken, message", [
    (UnusedParameter, "parameter.*temperature never receive a gradient from loss on any checked episode"),
    (UntrainedCopy, "does not depend on the trained weights"),
    (CachesTrainingLabels, "depends on an earlier call of loss"),
    (RemembersEpisodes, "carries state from one episode to the next"),
    (ConstantScores, "gives every query the same scores"),
    (GroupsTwice, "puts parameter 'backbone.*' in 2 groups"),
    (DeclaresAFitItLacks, "fails in the harness's cell pipeline .*declares fits_training_classes"),
    (DeclaresMapsItLacks, "declares class_map_figure but episode_class_maps failed"),
    (EmbeddingKeepsMaps, r"embedding must turn \(N, C, h, w\) feature maps into \(N, D\) vectors"),
    (HardCodedThreeWay, "predict failed on a 5-way 5-shot episode in train mode"),
    (IgnoresSupport, "ignores the support set"),
    (EditsSupportInPlace, "modified the support tensor in place"),
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


WIDE_PLUGIN = '''
import torch
from fewshot_bench.methods.protonet import ProtoNet
from fewshot_bench.registry import register_method


@register_method("wide-scores")
class WideScores(ProtoNet):
    """Scores every query against 20 classes, whatever the episode's N (a plugin bug)."""

    def predict_features(self, support_features, support_labels, query_features, n_way):
        scores = super().predict_features(support_features, support_labels, query_features, n_way)
        return torch.cat([scores, scores.new_zeros(len(scores), 20 - n_way)], dim=1)
'''


def test_the_runner_refuses_scores_of_the_wrong_shape(tmp_path, capsys):
    from fewshot_bench.cli.main import main

    plugin = tmp_path / "wide.py"
    plugin.write_text(WIDE_PLUGIN)
    args = ["run", "--plugin", str(plugin), "--methods", "wide-scores", "--shots", "1", "--query", "3",
            "--train-episodes", "2", "--test-episodes", "3", "--dataset-option", "total=300",
            "--image-size", "24", "--output-dir", str(tmp_path / "runs"), "--device", "cpu"]
    assert main(args) == 1  # the cell failed; the run itself ended normally
    err = " ".join(capsys.readouterr().err.split())
    assert "returned scores of shape (12, 20) for 12 queries of a 4-way episode" in err
    assert "Traceback" not in err
