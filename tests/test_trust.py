"""Nothing in a run folder executes code unless trusted: checkpoints load as tensors only, and every dataset
that unpickles files (a top-level one, or any part of a ``combined`` one) is confirmed first."""

import pathlib
import pickle
import re
import shutil

import pytest
import torch
import yaml

from conftest import REPO
from fewshot_bench.cli.main import main
from fewshot_bench.config import dump, merge

TINY = ["--dataset-option", "total=300", "--dataset-option", "identities=20", "--image-size", "20",
        "--train-episodes", "2", "--test-episodes", "3", "--threads", "1", "--shots", "1", "--query", "3",
        "--device", "cpu", "--checkpoint-interval", "1"]


class Payload:
    """A pickle that, once unpickled, creates ``marker`` (what an attacker's file would do, harmlessly)."""

    def __init__(self, marker):
        self.marker = pathlib.Path(marker)

    def __reduce__(self):
        return pathlib.Path.touch, (self.marker,)


def plant(path, marker, kind):
    """Replace ``path`` by a pickle payload: a bare pickle, or one inside torch's zip format."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "torch":
        torch.save(Payload(marker), path)
    else:
        path.write_bytes(pickle.dumps(Payload(marker), protocol=2))


def test_no_checkpoint_load_can_unpickle_code():
    """Every torch.load in the package and its plugins loads tensors only; nothing turns that off."""
    offenders = []
    for folder in ("fewshot_bench", "methods", "datasets", "benchmarks", "scripts", "examples"):
        for path in (REPO / folder).rglob("*.py"):
            text = path.read_text()
            offenders += [f"{path}: weights_only=False" for _ in re.finditer(r"weights_only\s*=\s*False", text)]
            for call in re.finditer(r"torch\.load\(", text):
                line = text[call.start():text.find("\n", call.start())]
                if "weights_only=True" not in line:
                    offenders.append(f"{path}: {line}")
    assert not offenders


def test_the_planted_payload_is_live(tmp_path):
    """The payload of the tests below really runs when unpickled (so their 'never ran' means something)."""
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(Payload(marker)))
    assert marker.exists()


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished run with every kind of checkpoint: a meta-trained cell's and a pre-trained backbone."""
    runs = tmp_path_factory.mktemp("runs")
    assert main(["run", "--methods", "protonet,simpleshot[pretrain_epochs=1]", *TINY, "--output-dir", str(runs),
                 "--run-id", "base"]) == 0
    return runs / "base"


@pytest.mark.parametrize("kind", ["pickle", "torch"])
def test_a_pickle_planted_in_every_checkpoint_location_never_runs_on_resume(tmp_path, finished_run, capsys, kind):
    folder = tmp_path / "runs" / "planted"
    shutil.copytree(finished_run, folder)
    (backbone,) = (folder / "pretrained").glob("*.pt")
    locations = [backbone, backbone.with_name(backbone.name.replace(".pt", ".partial.pt")),
                 *sorted((folder / "checkpoints").glob("*.pt"))]
    assert len(locations) == 4  # pretrained/<key>.pt, <key>.partial.pt, checkpoints/<cell>.pt for both cells
    marker = tmp_path / "payload-ran"
    for path in locations:
        plant(path, marker, kind)
    shutil.rmtree(folder / "cells")  # the cells are computed again, reading every checkpoint of the run
    capsys.readouterr()
    code = main(["run", "--resume", str(folder)])
    err = " ".join(capsys.readouterr().err.split())
    assert not marker.exists(), "a pickle in the run folder ran on resume"
    assert code == 0, err
    assert "Traceback" not in err
    # The planted files were read, found unsafe, and their work recomputed (a cell checkpoint is read by the
    # meta-trained cell, which resumes training from it).
    for path in [*locations[:2], *(p for p in locations if p.name.startswith("protonet"))]:
        assert f"checkpoint '{path}' is unreadable" in err, err
    assert len(list((folder / "cells").glob("*.json"))) == 2


@pytest.mark.parametrize("parts", ["mini=mini-imagenet:{data};faces=synthetic-fer:",
                                   "faces=synthetic-fer:;mini-imagenet={data}"])
def test_a_combined_run_with_a_pickle_reading_part_needs_trust(tmp_path, capsys, parts):
    """Each part of a ``combined`` dataset is checked as a top-level dataset would be: resuming a run whose
    config has a mini-imagenet part is refused without --trust, and its pickles are not read."""
    data, marker = tmp_path / "mini", tmp_path / "payload-ran"
    for mode in ("train", "validation", "test"):
        plant(data / f"mini-imagenet-cache-{mode}.pkl", marker, "pickle")
    folder = tmp_path / "runs" / "shared"
    folder.mkdir(parents=True)
    config = merge(None, {"dataset": "combined", "dataset_options": {"parts": parts.format(data=data)},
                          "output_dir": str(tmp_path / "runs"), "run_id": "shared", "device": "cpu"})
    (folder / "config.yaml").write_text(dump(config))
    capsys.readouterr()
    assert main(["run", "--resume", str(folder)]) == 3
    err = capsys.readouterr().err
    assert not marker.exists()
    assert len(err.strip().splitlines()) == 1 and "part 'mini" in err and "unpickles files" in err \
        and "--trust" in err, err
    # Trusted, the part's reader runs (here: the payload, then a one-line error about the file).
    assert main(["run", "--resume", str(folder), "--trust"]) == 3
    assert marker.exists()
    assert "is not a mini-imagenet cache pickle" in capsys.readouterr().err


def test_feature_maps_of_a_run_with_a_pickle_reading_dataset_need_trust(tmp_path, finished_run, capsys):
    """`bench plot --feature-maps` reads the run's data with its saved config: the same check applies."""
    folder = tmp_path / "runs" / "mini"
    shutil.copytree(finished_run, folder)
    saved = yaml.safe_load((folder / "config.yaml").read_text())  # a checksum line is a comment
    saved.update(dataset="mini-imagenet", data_root=str(tmp_path / "data"), dataset_options={})
    (folder / "config.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))
    capsys.readouterr()
    assert main(["plot", str(folder), "--feature-maps"]) == 3
    err = capsys.readouterr().err
    assert "dataset 'mini-imagenet', which unpickles files" in err and "--trust" in err


def test_a_pre_trained_backbone_of_another_shape_is_recomputed_not_a_traceback(tmp_path):
    import numpy as np
    import torch

    from fewshot_bench.engine.pretraining import pretrain
    from fewshot_bench.recipes import PretrainRecipe
    from fewshot_bench.testing import _tiny_protocol
    from fewshot_bench.episodic.tasks import TaskBuilder, channel_statistics
    from fewshot_bench.options import Spec
    from fewshot_bench.pretraining import resolve

    protocol = _tiny_protocol((1, 28, 28))
    images = protocol.training_images()
    builder = TaskBuilder(protocol.dataset, torch.device("cpu"),
                          *channel_statistics(protocol.dataset.images, images.indices))
    method = resolve(Spec.parse("protonet")).build((1, 28, 28), seed=0)
    recipe = PretrainRecipe(epochs=1, batch=8)
    folder = tmp_path / "pretrained"
    folder.mkdir()
    wrong = {"0.0.weight": torch.zeros(3, 3)}  # another network's weights under the right key
    torch.save({"backbone": wrong, "result": {"key": "k"}}, folder / "k.pt")
    torch.save({"backbone": wrong, "head": {}, "optimiser": {}, "scheduler": {}, "order": {}, "result": {}},
               folder / "k.partial.pt")
    result = pretrain(method, builder, recipe, indices=images.indices, targets=images.targets, key="k",
                      folder=folder, seed=0)
    assert result.epochs == 1 and not result.reused and np.isfinite(result.losses).all()
