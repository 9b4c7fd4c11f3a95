"""Trained cells as models (``engine.reuse``): a finished cell's weights classify new images against a support set,
through the Python API and ``bench predict``, from the run folder and from a record published with ``--weights``
(which needs no data), giving exactly the scores the run's own evaluation gave."""

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from fewshot_bench.cli.main import main
from fewshot_bench.config import merge
from fewshot_bench.engine.reuse import load_cell
from fewshot_bench.episodic.episodes import EpisodeSet
from fewshot_bench.episodic.protocol import load_dataset

RUN = ["--dataset-option", "total=400", "--dataset-option", "identities=20", "--shots", "2", "--query", "3",
       "--train-episodes", "3", "--test-episodes", "4", "--image-size", "24", "--device", "cpu", "--threads", "1",
       "--context", "none"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("reuse")
    assert main(["run", "--methods", "protonet,maml[inner_steps=1]", *RUN, "--output-dir", str(root),
                 "--run-id", "r"]) == 0
    return root / "r"


@pytest.mark.parametrize("label", ["protonet", "maml[inner_steps=1]"])
def test_a_loaded_cell_scores_the_runs_test_episodes_as_the_run_did(trained, label):
    cell_id = next(p.stem for p in (trained / "cells").glob("*.json")
                   if json.loads(p.read_text())["label"] == label)
    record = json.loads((trained / "cells" / f"{cell_id}.json").read_text())
    model = load_cell(trained, cell_id)
    data = load_dataset(merge(trained / "config.yaml", {}))
    episodes = EpisodeSet.load(trained / record["test_episodes_file"])
    for episode, accuracy in zip(episodes, record["accuracies"]):
        support_labels = data.labels[episode.support].tolist()
        result = model.classify(data.images[episode.support], support_labels, data.images[episode.query])
        truth = data.labels[episode.query].tolist()
        assert np.mean([p == t for p, t in zip(result.predictions, truth)]) == pytest.approx(accuracy, abs=1e-6)
        assert result.scores.shape == (len(episode.query), episode.n_way)


def test_published_weights_classify_folders_of_images_without_the_data(trained, tmp_path, capsys):
    record = tmp_path / "record"
    assert main(["publish", str(trained), "--out", str(record), "--weights", "protonet-*"]) == 0
    assert [p.name for p in (record / "weights").iterdir()] == [next((record / "cells").glob("protonet-*")).stem + ".pt"]
    data = load_dataset(merge(trained / "config.yaml", {}))
    names = data.class_names
    for part, count in (("support", 2), ("query", 3)):
        for c in (0, 1, 2):  # angry, disgust, fear: unseen classes, files named as a user's
            folder = tmp_path / part / names[c]
            folder.mkdir(parents=True)
            chosen = np.flatnonzero(data.labels.numpy() == c)[(0 if part == "support" else 10):][:count]
            for i in chosen:
                Image.fromarray(data.images[i, 0].numpy()).save(folder / f"{i}.png")
    capsys.readouterr()
    assert main(["predict", str(record), "protonet-*", "--support", str(tmp_path / "support"), "--query",
                 str(tmp_path / "query"), "--format", "csv"]) == 0
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert lines[0].startswith("image,predicted,score angry") and len(lines) == 1 + 9
    assert main(["predict", str(record), "protonet-*", "--support", str(tmp_path / "support"), "--query",
                 str(tmp_path / "query"), "--format", "markdown"]) == 0
    assert "accuracy on the labelled queries" in " ".join(capsys.readouterr().out.split())
    # The same through the API, from the files: identical to classifying the decoded pixels.
    model = load_cell(record, "protonet-*")
    files = sorted((tmp_path / "query").rglob("*.png"))
    support = sorted((tmp_path / "support").rglob("*.png"))
    by_file = model.classify(support, [p.parent.name for p in support], files)
    pixels = model.classify(torch.stack([torch.from_numpy(np.array(Image.open(p)))[None] for p in support]),
                            [p.parent.name for p in support],
                            torch.stack([torch.from_numpy(np.array(Image.open(p)))[None] for p in files]))
    assert torch.equal(by_file.scores, pixels.scores) and by_file.classes == ["angry", "disgust", "fear"]
    # A record without weights, an unknown cell and an unequal support are one-line errors.
    assert main(["predict", str(record), "maml*", "--support", str(tmp_path / "support"), "--query",
                 str(tmp_path / "query")]) == 3
    assert "has no saved weights" in capsys.readouterr().err
    assert main(["predict", str(record), "nope", "--support", str(tmp_path / "support"), "--query",
                 str(tmp_path / "query")]) == 3
    assert "matches no finished cell" in capsys.readouterr().err
    shutil.copy(next((tmp_path / "support" / "fear").glob("*.png")), tmp_path / "support" / "fear" / "extra.png")
    assert main(["predict", str(record), "protonet-*", "--support", str(tmp_path / "support"), "--query",
                 str(tmp_path / "query")]) == 3
    assert "same number of images" in capsys.readouterr().err
