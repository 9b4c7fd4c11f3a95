"""Test-only plugins registered on import."""

import torch

from fewshot_bench.method import FewShotMethod
from fewshot_bench.registry import METHODS


class ConstantMethod(FewShotMethod):
    """Always predicts the first class (a fixed-accuracy probe for the runner)."""

    def __init__(self, backbone, image_shape, **options):
        super().__init__(backbone, image_shape, **options)
        self.bias = torch.nn.Parameter(torch.zeros(1))

    def predict(self, support, support_labels, query, n_way):
        scores = torch.zeros(len(query), n_way, device=query.device) + self.bias * 0
        scores[:, 0] = 1.0
        return scores


if "constant-test" not in METHODS:
    METHODS.add("constant-test", ConstantMethod, source="tests")
register_constant_method = True
