"""Data is checked before it trains (issue 27, item 6): every case is a one-line error before any training, or an
explicit, recorded option — a file under two classes, labels outside the declared classes, channel counts other
than 1 and 3, out-of-range image sizes, non-UTF-8 manifests, classes too small for the episodes, validation asked
of a split without (enough) validation classes, and backbone weights files kept out of the settings hash."""

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import tiny_run_flags
from fewshot_bench.backbones import (Conv4, backbone_weights_digest, backbone_weights_settings,
                                     declared_weights_files, loads_weights)
from fewshot_bench.cli.main import main
from fewshot_bench.config import merge
from fewshot_bench.episodic.protocol import load_dataset, prepare
from fewshot_bench.errors import ConfigError, DatasetError, EpisodeError
from fewshot_bench.registry import BACKBONES

SPLIT = {"train": ["a", "b"], "test": ["c", "d"]}


def picture(seed, size=16):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size), dtype=np.uint8), "L")


def folders(root, per_class=3, classes="abcd"):
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            picture(c * 100 + i).save(root / name / f"{i}.png")
    return root


def config(dataset, root, **values):
    flags = {"dataset": dataset, "data_root": str(root), "split": SPLIT, "way": 2, "shots": [1], "query": 1,
             **values}
    return merge(None, flags)


def one_line_exit_3(args, capsys):
    assert main(args) == 3
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


# ------------------------------------------------------------------------------- one image under two classes
def test_a_copy_of_a_test_image_in_a_training_class_is_refused_unless_dedup_drops_it(tmp_path, capsys):
    root = folders(tmp_path / "faces")
    shutil.copy(root / "c" / "0.png", root / "a" / "copy.png")
    with pytest.raises(DatasetError, match=r"'.*a/copy.png' \(training class 'a'\) and '.*c/0.png' \(test class "
                                           r"'c'\) are identical images \(a test image seen in meta-training\)"
                                           r".*--dedup true"):
        prepare(config("image-folder", root))
    protocol = prepare(config("image-folder", root, dedup=True))  # the explicit, recorded option
    assert protocol.dataset.metadata["dedup"] == {"same_class_copies": 0, "cross_class_images": 2}
    err = one_line_exit_3(["run", "--dataset", "image-folder", "--data-root", str(root), "--split",
                           "{train: [a, b], test: [c, d]}", "--way", "2", "--shots", "1", "--query", "1",
                           "--output-dir", str(tmp_path / "runs"), "--device", "cpu"], capsys)
    assert "are identical images" in err and not list((tmp_path / "runs").glob("*/cells/*.json"))


def test_a_copy_within_one_part_and_outside_the_split(tmp_path):
    root = folders(tmp_path / "faces", classes="abcde")
    shutil.copy(root / "a" / "0.png", root / "b" / "copy.png")
    with pytest.raises(DatasetError, match=r"training class 'a'\) and .* \(training class 'b'\) are identical "
                                           r"images \(its label is ambiguous\)"):
        prepare(config("image-folder", root))
    (root / "b" / "copy.png").unlink()
    shutil.copy(root / "a" / "0.png", root / "e" / "copy.png")  # 'e' is in no part of the split: no effect
    assert prepare(config("image-folder", root)).split.train == ("a", "b")


def test_one_file_linked_into_two_class_folders_is_refused_at_load(tmp_path):
    root = folders(tmp_path / "faces")
    (root / "c" / "link.png").symlink_to(root / "a" / "0.png")
    with pytest.raises(DatasetError, match=r"image '.*c/link.png' is listed under two classes, 'a' and 'c'"):
        load_dataset(config("image-folder", root))


def manifest(tmp_path, rows, name="m.csv", encoding="utf-8"):
    folders(tmp_path / "imgs")
    path = tmp_path / name
    path.write_bytes(("path,label\n" + "\n".join(rows) + "\n").encode(encoding))
    return path


ROWS = [f"imgs/{c}/{i}.png,{c}" for c in "abcd" for i in range(3)]


def test_a_manifest_listing_one_file_under_two_classes_or_twice_is_refused(tmp_path):
    path = manifest(tmp_path, ROWS + ["imgs/c/0.png,a"])
    with pytest.raises(DatasetError, match=r"image '.*imgs/c/0.png' is listed under class 'c' \(line 8\) and class "
                                           r"'a' \(line 14\): one image with two labels"):
        load_dataset(config("csv-manifest", path))
    path = manifest(tmp_path, ROWS + ["imgs/./a/1.png,a"])
    with pytest.raises(DatasetError, match=r"listed twice under class 'a' \(lines 3 and 14\)"):
        load_dataset(config("csv-manifest", path))


# ---------------------------------------------------------------------------------- labels outside the classes
def test_a_label_typo_in_a_manifest_is_refused_with_the_row_and_the_nearest_names(tmp_path, capsys):
    path = manifest(tmp_path, ROWS[:5] + ["imgs/b/2.png,bb"] + ROWS[6:])
    with pytest.raises(DatasetError, match=r"m.csv' line 7: label 'bb' is not a class of split 'custom' "
                                           r"\(nearest: b\);.*--dataset-option classes="):
        prepare(config("csv-manifest", path))
    err = one_line_exit_3(["run", "--dataset", "csv-manifest", "--data-root", str(path), "--split",
                           "{train: [a, b], test: [c, d]}", "--way", "2", "--shots", "1", "--query", "1",
                           "--output-dir", str(tmp_path / "runs"), "--device", "cpu"], capsys)
    assert "label 'bb'" in err


def test_declared_classes_allow_unused_ones_and_refuse_others(tmp_path):
    path = manifest(tmp_path, ROWS)
    declared = {"dataset_options": {"classes": "a,b,c,d,spare"}}
    protocol = prepare(config("csv-manifest", path, **declared))  # 'spare' has no rows, and no part uses it
    assert protocol.dataset.class_names == ["a", "b", "c", "d", "spare"]
    assert prepare(config("csv-manifest", path, split={"train": ["a"], "test": ["c", "d"]}, **declared))
    with pytest.raises(DatasetError, match=r"m.csv' line 5: label 'b' is not a class of split 'custom' \(the "
                                           r"split's classes: a, c, d\)"):
        prepare(config("csv-manifest", path, split={"train": ["a"], "test": ["c", "d"]}))
    path = manifest(tmp_path, ROWS + ["imgs/d/2.png,dd"], name="n.csv")
    with pytest.raises(DatasetError, match=r"n.csv' line 14: label 'dd' is not one of the declared classes "
                                           r"\(nearest: d\)"):
        load_dataset(config("csv-manifest", path, **declared))


# ------------------------------------------------------------------------------------------------ channels
@pytest.mark.parametrize("channels", [2, 4])
def test_two_and_four_channel_arrays_are_refused_or_lose_alpha_when_channels_are_given(tmp_path, channels):
    path = tmp_path / "d.npz"
    images = np.random.default_rng(0).integers(0, 256, (12, 10, 10, channels), dtype=np.uint8)
    np.savez(path, images=images, labels=np.repeat(np.arange(4), 3), class_names=np.array(list("abcd")))
    with pytest.raises(DatasetError, match=rf"has {channels}-channel images, but images must be grayscale \(1 "
                                           r"channel\) or RGB \(3\): .*drop the alpha channel.*--channels 3"):
        load_dataset(config("array", path))
    for wanted in (1, 3):
        data = load_dataset(config("array", path, channels=wanted))
        assert data.images.shape[1] == wanted
    if channels == 4:
        np.testing.assert_array_equal(load_dataset(config("array", path, channels=3)).images.numpy(),
                                      images[..., :3].transpose(0, 3, 1, 2))


def test_channels_other_than_1_and_3_and_image_sizes_out_of_range_are_refused(capsys):
    with pytest.raises(ConfigError, match=r"'channels' must be 1 \(grayscale\) or 3 \(RGB\), got 2"):
        merge(None, {"channels": 2})
    with pytest.raises(ConfigError, match=r"'image_size' must be at most 1024, got 100000"):
        merge(None, {"image_size": 100000})
    with pytest.raises(ConfigError, match=r"'image_size' must be at least 8, got 4"):
        merge(None, {"image_size": 4})
    assert merge(None, {"image_size": 8, "channels": 3}).image_size == 8
    assert "got 2" in one_line_exit_3(["run", "--channels", "2"], capsys)
    assert "at most 1024" in one_line_exit_3(["run", "--image-size", "100000"], capsys)


# --------------------------------------------------------------------------------------------- encodings
def test_a_latin1_manifest_is_read_correctly_or_refused_with_the_encoding_fix(tmp_path):
    rows = [row.replace(",a", ",café") for row in ROWS]
    path = manifest(tmp_path, rows, encoding="latin-1")
    split = {"train": ["café", "b"], "test": ["c", "d"]}
    assert "café" in prepare(config("csv-manifest", path, split=split)).dataset.class_names
    assert "café" in load_dataset(config("csv-manifest", path, dataset_options={"encoding": "latin-1"})).class_names
    with pytest.raises(DatasetError, match=r"m.csv' line 2 is not utf-8-sig text; give its encoding with "
                                           r"--dataset-option encoding="):
        load_dataset(config("csv-manifest", path, dataset_options={"encoding": "utf-8"}))
    with pytest.raises(DatasetError, match="unknown encoding 'klingon'"):
        load_dataset(config("csv-manifest", path, dataset_options={"encoding": "klingon"}))
    bom = manifest(tmp_path, ROWS, name="bom.csv", encoding="utf-8-sig")
    assert load_dataset(config("csv-manifest", bom)).class_names == list("abcd")


# ------------------------------------------------------------------------------ empty and one-image classes
def test_empty_and_one_image_classes_are_named_before_training(tmp_path, capsys):
    path = tmp_path / "d.npz"
    images = np.random.default_rng(0).integers(0, 256, (7, 10, 10), dtype=np.uint8)
    np.savez(path, images=images, labels=np.array([0, 0, 0, 1, 1, 1, 2]), class_names=np.array(list("abcd")))
    with pytest.raises(EpisodeError, match=r"test: class 'c' has 1 items but 1-shot 1-query episodes need 2"):
        prepare(config("array", path))
    with pytest.raises(EpisodeError, match=r"test: class 'd' has 0 items but 1-shot 1-query episodes need 2"):
        prepare(config("array", path, split={"train": ["a"], "test": ["b", "d"]}))
    err = one_line_exit_3(["run", "--dataset", "array", "--data-root", str(path), "--split",
                           "{train: [a, b], test: [c, d]}", "--way", "2", "--shots", "1", "--query", "1",
                           "--output-dir", str(tmp_path / "runs"), "--device", "cpu"], capsys)
    assert "class 'c' has 1 items" in err


# ---------------------------------------------------------------------------------------------- validation
def test_validation_asked_of_a_split_without_two_validation_classes_is_refused(tmp_path):
    root = folders(tmp_path / "faces", classes="abcdef")
    with pytest.raises(ConfigError, match=r"--val-episodes 4 asks for model selection on validation classes, but "
                                          r"split 'custom' has none; add a val part"):
        prepare(config("image-folder", root, val_episodes=4))
    one = {**SPLIT, "val": ["e"]}
    with pytest.raises(ConfigError, match=r"split 'custom' has one validation class \('e'\), so every validation "
                                          r"episode would be 1-way and score 100 %"):
        prepare(config("image-folder", root, split=one, val_episodes=4))
    assert prepare(config("image-folder", root, split=one)).val_ids  # not asked for: allowed
    assert prepare(config("image-folder", root, split={**SPLIT, "val": ["e", "f"]}, val_episodes=4)).val_ids
    with pytest.raises(ConfigError, match="'val_episodes' must be at least 0"):
        merge(None, {"val_episodes": -1})


# --------------------------------------------------------------------------------------- backbone weights
@loads_weights("weights-test.pt")
def weights_backbone(in_channels):
    return Conv4(in_channels, 8)


if "weights-test" not in BACKBONES:
    BACKBONES.add("weights-test", weights_backbone, source="tests")


def test_backbone_weights_files_enter_the_settings(tmp_path, monkeypatch):
    assert backbone_weights_digest("conv4") is None and backbone_weights_settings(["conv4", "resnet12"]) == {}
    assert declared_weights_files("weights-test") == [Path(__file__).resolve().parent / "weights-test.pt"]
    weights = tmp_path / "w.pt"
    monkeypatch.setattr(weights_backbone, "weights_files", (str(weights),))
    with pytest.raises(ConfigError, match=r"backbone 'weights-test' loads weights file '.*w.pt', which does not exist"):
        backbone_weights_digest("weights-test")
    weights.write_bytes(b"first weights")
    first = backbone_weights_settings(["conv4", "weights-test"])
    assert list(first["backbone_weights"]) == ["weights-test"]
    weights.write_bytes(b"other weights")
    second = backbone_weights_settings(["weights-test"])
    assert first != second
    moved = tmp_path / "elsewhere.pt"
    moved.write_bytes(b"other weights")
    monkeypatch.setattr(weights_backbone, "weights_files", lambda: [moved])  # a callable: a path known at run time
    assert backbone_weights_settings(["weights-test"]) == second  # the content counts, not where it lies


def test_two_runs_with_different_weights_get_different_settings_hashes(tmp_path, monkeypatch):
    from fewshot_bench.engine.runner import result_settings, settings_hash

    weights = tmp_path / "w.pt"
    monkeypatch.setattr(weights_backbone, "weights_files", (str(weights),))
    run_config = merge(None, tiny_run_flags(tmp_path, methods=["protonet[backbone=weights-test]"], shots=[1]))
    protocol = prepare(run_config)
    weights.write_bytes(b"first weights")
    first = settings_hash(result_settings(run_config, protocol))
    weights.write_bytes(b"other weights")
    assert settings_hash(result_settings(run_config, protocol)) != first
    plain = merge(None, tiny_run_flags(tmp_path, methods=["protonet"], shots=[1]))
    assert "backbone_weights" not in result_settings(plain, protocol)  # hashes of runs without weights unchanged
