"""Initial weights from a file (``weights=PATH``, ``weights_layout``), CSRN's checkpoint layout, and evaluation
without training (``--train-episodes 0``)."""

from __future__ import annotations

import hashlib
import json
import pickle

import pytest
import torch

from conftest import tiny_run_flags
from fewshot_bench.config import merge
from fewshot_bench.engine.runner import run
from fewshot_bench.errors import ConfigError
from fewshot_bench.method import resolve_variant
from fewshot_bench.options import Spec

SHAPE = (3, 64, 64)  # CSRN's FER2013 checkpoints: 3×64×64 images, 14×14 encoder maps


def csrn_layout(state: dict) -> dict:
    """A checkpoint as CSRN's code writes it, from one of our RN/CRN state dicts (the inverse of the adapter)."""
    relation = {"convs.0": "layer1.0", "convs.1": "layer1.1", "convs.4": "layer2.0", "convs.5": "layer2.1",
                "fc1": "fc1", "fc2": "fc2"}
    encoder = {f"layer{int(k.split('.')[1]) + 1}.{k.split('.', 2)[2]}": v for k, v in state.items()
               if k.startswith("backbone.")}
    head = {f"{relation[k.split('.', 1)[1].rsplit('.', 1)[0]]}.{k.rsplit('.', 1)[1]}": v for k, v in state.items()
            if k.startswith("relation.")}
    return {"epoch": 612, "feature_embed_state_dict": encoder, "Relation_score_state_dict": head,
            "best_acc": torch.tensor(0.646), "feature_embed_optimizer_state_dict": {"state": {}, "param_groups": []}}


def _cells(result) -> list[dict]:
    return [json.loads(p.read_text()) for p in (result.store.root / "cells").glob("*.json")]


def test_a_csrn_checkpoint_is_evaluated_as_the_model_it_holds(tmp_path):
    trained = resolve_variant(Spec.parse("crn")).build(SHAPE, seed=7)
    native, foreign = tmp_path / "native.pt", tmp_path / "CRN_fer2013_model_best.pth"
    torch.save(trained.state_dict(), native)
    torch.save(csrn_layout(trained.state_dict()), foreign)
    # The adapter gives back every tensor of the model, unchanged.
    adapted = type(trained).weight_layouts["csrn"](torch.load(foreign, weights_only=True))
    assert adapted.keys() == trained.state_dict().keys()
    assert all(torch.equal(adapted[k], v) for k, v in trained.state_dict().items())

    methods = [f"crn[weights={native}]", f"crn[weights={foreign},weights_layout=csrn]", "crn"]
    flags = tiny_run_flags(tmp_path, methods=methods, shots=[1], image_size=64, channels=3, train_episodes=0,
                           test_episodes=5)
    cells = {c["label"]: c for c in _cells(run(merge(None, flags)))}
    from_native, from_csrn, untrained = (cells[label] for label in methods)
    assert from_csrn["accuracies"] == from_native["accuracies"]
    assert from_csrn["accuracies"] != untrained["accuracies"]  # the file's weights, not the seed's
    assert from_csrn["initial_weights"] == {"file": str(foreign), "layout": "csrn", "tensors": len(adapted),
                                            "sha256": hashlib.sha256(foreign.read_bytes()).hexdigest()}
    assert from_csrn["train_episodes"] == 0 and "meta_train" not in from_csrn["stages"]
    assert "load_weights" in from_csrn["stages"] and "initial_weights" not in untrained


def test_a_variant_without_a_file_is_what_it_was():
    variant = resolve_variant(Spec.parse("crn"))
    assert variant.label == "crn" and "weights" not in variant.option_dict
    assert "weights_layout" not in variant.option_dict


@pytest.mark.parametrize("spec, message", [
    ("crn[weights={missing}]", "weights file '{missing}' of crn[weights={missing}] does not exist"),
    ("crn[weights={file},weights_layout=csrm]", "has no weights layout 'csrm'; did you mean 'csrn'?"),
    ("crn[weights_layout=csrn]", "weights_layout=csrn needs a file, weights=PATH"),
    ("protonet[weights={file},weights_layout=csrn]", "method 'protonet' has no weights layout 'csrn'"),
    ("crn[weights={code}]", "cannot be read as tensors"),
    ("crn[weights={small}]", "does not fit crn[weights={small}] on 3×64×64 images"),
    ("crn[weights={file}]", "holds no state dict of tensors"),
])
def test_a_file_that_cannot_serve_is_one_line_before_any_result(tmp_path, spec, message):
    paths = {"missing": tmp_path / "nope.pt", "file": tmp_path / "csrn.pth", "code": tmp_path / "code.pt",
             "small": tmp_path / "small.pt"}
    # A CSRN file loaded natively is not a state dict of tensors; a model for 48-pixel images does not fit 64.
    torch.save(csrn_layout(resolve_variant(Spec.parse("crn")).build(SHAPE, seed=0).state_dict()), paths["file"])
    torch.save(resolve_variant(Spec.parse("crn")).build((3, 48, 48), seed=0).state_dict(), paths["small"])
    paths["code"].write_bytes(pickle.dumps(ConfigError("a pickled object, not tensors")))
    spec, message = spec.format(**paths), message.format(**paths)
    flags = tiny_run_flags(tmp_path, methods=[spec], shots=[1], image_size=64, channels=3, train_episodes=0,
                           test_episodes=2)
    with pytest.raises(ConfigError) as raised:
        run(merge(None, flags))
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_the_fingerprint_probe_measures_the_code_not_the_file():
    from fewshot_bench.fingerprint.probe import probe_label

    assert probe_label("crn[weights=../CSRN/weights/fer2013/CRN.pth,weights_layout=csrn]") == "crn"
    assert probe_label("protonet[distance=euclidean,weights=a.pt]") == "protonet[distance=euclidean]"


def test_a_kept_cell_is_never_mixed_with_other_weights_at_the_same_path(tmp_path):
    path = tmp_path / "model.pt"
    torch.save(resolve_variant(Spec.parse("protonet")).build((1, 24, 24), seed=1).state_dict(), path)
    flags = tiny_run_flags(tmp_path, methods=[f"protonet[weights={path}]"], shots=[1], train_episodes=0,
                           test_episodes=2)
    first = _cells(run(merge(None, flags)))
    assert _cells(run(merge(None, flags))) == first  # the same file: the finished cell is kept
    torch.save(resolve_variant(Spec.parse("protonet")).build((1, 24, 24), seed=2).state_dict(), path)
    with pytest.raises(ConfigError, match="now holds other weights; start a new --run-id"):
        run(merge(None, flags))
    assert _cells(run(merge(None, {**flags, "run_id": "new"})))[0]["initial_weights"]["sha256"] != \
        first[0]["initial_weights"]["sha256"]
