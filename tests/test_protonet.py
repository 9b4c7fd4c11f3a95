import torch
from torch import nn

from fewshot_bench.datasets import synthetic_fer  # noqa: F401  (registers the default dataset)
from fewshot_bench.methods.protonet import ProtoNet, class_means, squared_euclidean


def identity_protonet(distance="squared"):
    return ProtoNet(nn.Flatten(), (1, 1, 2), distance=distance)


def test_prototypes_are_class_means():
    features = torch.tensor([[0.0, 0.0], [2.0, 0.0], [10.0, 10.0], [12.0, 10.0]])
    labels = torch.tensor([0, 0, 1, 1])
    assert torch.equal(class_means(features, labels, 2), torch.tensor([[1.0, 0.0], [11.0, 10.0]]))


def test_scores_are_negative_squared_distances_to_prototypes_hand_computed():
    model = identity_protonet()
    support = torch.tensor([[0.0, 0.0], [2.0, 0.0], [10.0, 10.0], [12.0, 10.0]]).view(4, 1, 1, 2)
    labels = torch.tensor([0, 0, 1, 1])
    query = torch.tensor([[1.0, 1.0], [9.0, 10.0]]).view(2, 1, 1, 2)
    scores = model.predict(support, labels, query, 2)
    # prototypes (1,0) and (11,10): query (1,1) -> 1 and 100+81=181; query (9,10) -> 64+100=164 and 4
    assert torch.equal(scores, -torch.tensor([[1.0, 181.0], [164.0, 4.0]]))
    assert scores.argmax(1).tolist() == [0, 1]


def test_euclidean_distance_option_scores_by_the_plain_distance():
    support = torch.tensor([[0.0, 0.0], [2.0, 0.0], [10.0, 10.0], [12.0, 10.0]]).view(4, 1, 1, 2)
    query = torch.tensor([[1.0, 1.0], [9.0, 10.0]]).view(2, 1, 1, 2)
    scores = identity_protonet("euclidean").predict(support, torch.tensor([0, 0, 1, 1]), query, 2)
    assert torch.allclose(scores, -torch.tensor([[1.0, 181.0], [164.0, 4.0]]).sqrt())


def test_loss_is_cross_entropy_of_scores():
    model = identity_protonet()
    support = torch.tensor([[0.0, 0.0], [4.0, 0.0]]).view(2, 1, 1, 2)
    query = torch.tensor([[1.0, 0.0]]).view(1, 1, 1, 2)
    from fewshot_bench.method import Task

    task = Task(support, torch.tensor([0, 1]), query, torch.tensor([0]), 2, 1)
    expected = -torch.log_softmax(-torch.tensor([1.0, 9.0]), 0)[0]
    assert torch.allclose(model.loss(task), expected)


def test_squared_euclidean_matches_cdist():
    a, b = torch.randn(5, 7), torch.randn(3, 7)
    assert torch.allclose(squared_euclidean(a, b), torch.cdist(a, b) ** 2, atol=1e-4)
