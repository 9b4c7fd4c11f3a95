"""Options that reproduce a peer implementation's choices where they differ from a method's default
(docs/performance.md traces each accuracy difference to one of them).

``embedding_calls``: one backbone call per episode (support and query together) or one per set, which is what
Sung et al.'s and CSRN's training code and easyfsl do. With batch norm in training mode the two differ: each set
is normalised by its own statistics. ``matchingnet[similarity=support-unit]``: easyfsl's attention logits."""

from __future__ import annotations

import pytest
import torch

from fewshot_bench.errors import ConfigError
from fewshot_bench.method import Task, resolve_variant
from fewshot_bench.options import Spec


def _variant(text: str):
    name, _, rest = text.partition("[")
    options = tuple(tuple(item.split("=", 1)) for item in rest.rstrip("]").split(",") if item)
    return resolve_variant(Spec(name, options))


def _task(seed: int = 0) -> Task:
    generator = torch.Generator().manual_seed(seed)
    support = torch.randn(3, 1, 24, 24, generator=generator)
    query = torch.randn(6, 1, 24, 24, generator=generator) + 2.0  # other statistics than the support's
    return Task(support, torch.arange(3), query, torch.arange(3).repeat(2), 3, 1)


def test_a_default_variant_does_not_carry_the_option_and_keeps_its_label():
    plain = _variant("relationnet")
    assert "embedding_calls" not in plain.option_dict and plain.label == "relationnet"
    separate = _variant("relationnet[embedding_calls=separate]")
    assert separate.option_dict["embedding_calls"] == "separate"
    assert separate.label == "relationnet[embedding_calls=separate]"


def test_methods_without_a_feature_head_and_unknown_values_are_refused():
    with pytest.raises(ConfigError, match="unknown option 'embedding_calls' for method 'maml'"):
        _variant("maml[embedding_calls=separate]")
    with pytest.raises(ConfigError, match="embedding_calls"):
        _variant("protonet[embedding_calls=twice]")


@pytest.mark.parametrize("name", ["protonet", "relationnet", "matchingnet", "crn"])
def test_separate_calls_normalise_each_set_by_its_own_statistics(name):
    task = _task()
    joint = _variant(name).build((1, 24, 24), seed=0).train()
    separate = _variant(f"{name}[embedding_calls=separate]").build((1, 24, 24), seed=0).train()
    assert separate.embedding_calls == "separate" and joint.embedding_calls == "joint"
    s, q = separate.embed(task.support, task.query)
    torch.testing.assert_close(s, separate.backbone(task.support))
    torch.testing.assert_close(q, separate.backbone(task.query))
    js, _ = joint.embed(task.support, task.query)
    assert not torch.allclose(js, s)  # batch norm saw the queries too
    # The training losses differ accordingly; in evaluation (running statistics) the scores are the same.
    assert not torch.allclose(joint.loss(task), separate.loss(task))
    joint = _variant(name).build((1, 24, 24), seed=0).eval()  # fresh: training steps moved the running statistics
    separate = _variant(f"{name}[embedding_calls=separate]").build((1, 24, 24), seed=0).eval()
    with torch.no_grad():
        torch.testing.assert_close(joint.predict(task.support, task.support_labels, task.query, 3),
                                   separate.predict(task.support, task.support_labels, task.query, 3))


def test_a_meta_batch_with_separate_calls_embeds_all_supports_then_all_queries():
    model = _variant("protonet[embedding_calls=separate]").build((1, 24, 24), seed=0).train()
    calls = []
    model.backbone.register_forward_hook(lambda module, args, out: calls.append(len(args[0])))
    tasks = [_task(0), _task(1)]
    loss = model.batched_loss(tasks)
    assert calls == [6, 12] and torch.isfinite(loss)


def test_options_added_later_are_carried_only_when_given_and_reach_the_method_at_their_default():
    plain = _variant("matchingnet")
    assert "similarity" not in plain.option_dict and plain.label == "matchingnet"
    assert plain.build((1, 24, 24), seed=0).config["similarity"] == "cosine"
    given = _variant("matchingnet[similarity=support-unit]")
    assert given.option_dict["similarity"] == "support-unit" and given.label == "matchingnet[similarity=support-unit]"


def test_support_unit_similarity_is_the_raw_query_against_unit_support_embeddings():
    import torch.nn.functional as F

    from fewshot_bench.methods.matchingnet import attention_log_probs

    generator = torch.Generator().manual_seed(0)
    query, support = torch.randn(4, 8, generator=generator) * 5, torch.randn(3, 8, generator=generator)
    labels = torch.arange(3)
    attention, _ = attention_log_probs(query, support, labels, 3, scale=1.0, similarity="support-unit")
    torch.testing.assert_close(attention, torch.softmax(query @ F.normalize(support, dim=1).t(), dim=1))
    cosine, _ = attention_log_probs(query, support, labels, 3, scale=1.0)
    torch.testing.assert_close(cosine, torch.softmax(F.normalize(query, dim=1) @ F.normalize(support, dim=1).t(), 1))
    assert not torch.allclose(attention, cosine)  # the query's norm (about 14 here) sharpens the softmax
