"""Every dataset family read from tiny fixtures in its real on-disk format, and every bad input."""

import csv
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fewshot_bench.cli.main import main
from fewshot_bench.config import merge
from fewshot_bench.episodic.protocol import load_dataset, resolve_split
from fewshot_bench.errors import ConfigError, DatasetError, SplitError

FER = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]


def load(dataset, root, dedup=False, size=None, channels=None, **options):
    """A dataset as its reader gives it (duplicate removal, tested in test_duplicates.py, off by default),
    at image side ``size`` and ``channels`` (the run settings image_size and channels)."""
    config = merge(None, {"dataset": dataset, "data_root": str(root), "dataset_options": options or None,
                          "dedup": dedup, "image_size": size, "channels": channels})
    data = load_dataset(config)
    return data, config


def face(seed, size=48, mode="L"):
    rng = np.random.default_rng(seed)
    shape = (size, size) if mode == "L" else (size, size, 3)
    return Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode)


def write_fer_csv(path: Path, per_class=4, label_override=None, columns=("emotion", "pixels", "Usage")):
    rng = np.random.default_rng(0)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for label in range(7):
            for i in range(per_class):
                usage = ("Training", "PublicTest", "PrivateTest")[i % 3]
                pixels = " ".join(map(str, rng.integers(0, 256, 48 * 48)))
                writer.writerow([label if label_override is None else label_override, pixels, usage])
    return path


def write_class_folders(root: Path, names, per_class=3, suffix=".jpg", size=48, mode="L"):
    for c, name in enumerate(names):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            face(c * 100 + i, size, mode).save(root / name / f"{i:04d}{suffix}")


# ---------------------------------------------------------------------------------------------- FER2013
def test_fer2013_csv_labels_usage_and_default_paper_split(tmp_path):
    write_fer_csv(tmp_path / "fer2013.csv")
    data, config = load("fer2013", tmp_path)
    assert data.class_names == FER
    assert data.class_counts() == {name: 4 for name in FER}
    assert data.images.shape[1:] == (1, 48, 48)
    split = resolve_split(config, data)
    assert split.train == ("happy", "neutral", "sad", "surprise") and split.test == ("angry", "disgust", "fear")
    public, _ = load("fer2013", tmp_path / "fer2013.csv", usage="PublicTest")
    assert len(public.labels) == 7  # rows 1 of each class (i % 3 == 1)


def test_fer2013_kaggle_folders_train_and_test(tmp_path):
    write_class_folders(tmp_path / "train", FER, per_class=3)
    write_class_folders(tmp_path / "test", FER, per_class=2)
    data, _ = load("fer2013", tmp_path)
    assert data.class_counts() == {name: 5 for name in FER}
    train_only, _ = load("fer2013", tmp_path, usage="Training")
    assert len(train_only.labels) == 21
    with pytest.raises(DatasetError, match="merge PublicTest and PrivateTest into test/"):
        load("fer2013", tmp_path, usage="PublicTest")


def test_fer2013_decoding_is_cached(tmp_path, monkeypatch):
    write_class_folders(tmp_path / "train", FER, per_class=2)
    first, _ = load("fer2013", tmp_path)
    import fewshot_bench.imageio as imageio

    def refuse(*args, **kwargs):
        raise AssertionError("decoded again instead of reading the cache")

    monkeypatch.setattr(imageio, "decode_images", refuse)  # FER2013's folders use the generic decoder
    second, _ = load("fer2013", tmp_path)
    assert np.array_equal(first.images.numpy(), second.images.numpy())
    # touching the data invalidates the cache entry
    face(999).save(tmp_path / "train" / "angry" / "extra.jpg")
    with pytest.raises(AssertionError, match="decoded again"):
        load("fer2013", tmp_path)


def test_image_size_is_one_knob_decoded_once(tmp_path, monkeypatch):
    # FER2013's folders are decoded straight at --image-size (one resampling from the files); the stored
    # 48×48 .npz is resampled once by the harness; the old per-dataset option is refused with the fix.
    write_class_folders(tmp_path / "train", FER, per_class=2, size=48)
    import fewshot_bench.imageio as imageio

    sizes = []
    original = imageio.decode_images

    def recording(paths, size, channels, skip_corrupt):
        sizes.append((size, channels))
        return original(paths, size, channels, skip_corrupt)

    monkeypatch.setattr(imageio, "decode_images", recording)
    data, _ = load("fer2013", tmp_path, size=32, channels=3)
    assert sizes == [(32, 3)] and data.images.shape[1:] == (3, 32, 32)
    default, _ = load("fer2013", tmp_path)
    assert default.images.shape[1:] == (1, 48, 48)
    with pytest.raises(ConfigError, match="'size' is a run setting, not a dataset option: use --image-size"):
        load_dataset(merge(None, {"dataset": "fer2013", "data_root": str(tmp_path), "dataset_options": {"size": 32}}))


def test_fer2013_bad_inputs(tmp_path):
    bad_label = write_fer_csv(tmp_path / "a.csv", per_class=1, label_override=9)
    with pytest.raises(DatasetError, match=r"line 2: unknown emotion label 9; FER2013 labels are 0..6"):
        load("fer2013", bad_label)
    wrong_columns = write_fer_csv(tmp_path / "b.csv", per_class=1, columns=("label", "image", "split"))
    with pytest.raises(DatasetError, match=r"has columns label,image,split; FER2013's fer2013.csv needs emotion,pixels,Usage"):
        load("fer2013", wrong_columns)
    truncated = tmp_path / "c.csv"
    truncated.write_text("emotion,pixels,Usage\n3,1 2 3,Training\n")
    with pytest.raises(DatasetError, match="line 2: 3 pixel values, expected 2304"):
        load("fer2013", truncated)
    spaced = tmp_path / "d.csv"  # extra spaces are fine, a non-number is not
    spaced.write_text("emotion,pixels,Usage\n3,  " + "  ".join(["7"] * 2304) + " ,Training\n"
                      "4," + " ".join(["1"] * 2303) + " x,Training\n")
    with pytest.raises(DatasetError, match="d.csv' has non-numeric pixel values"):
        load("fer2013", spaced)
    spaced.write_text(spaced.read_text().splitlines()[0] + "\n" + spaced.read_text().splitlines()[1] + "\n")
    data, _ = load("fer2013", spaced)
    assert data.images.shape == (1, 1, 48, 48) and int(data.images.max()) == 7
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no FER2013 data found"):
        load("fer2013", tmp_path / "empty")


def test_unknown_class_folder_and_empty_class_folder(tmp_path):
    write_class_folders(tmp_path / "train", ["happy", "contempt"], per_class=1)
    with pytest.raises(DatasetError, match=r"unknown class folder '.*contempt'; expected one of: angry"):
        load("fer2013", tmp_path)
    (tmp_path / "train" / "contempt").rename(tmp_path / "train" / "sad")
    (tmp_path / "train" / "fear").mkdir()
    with pytest.raises(DatasetError, match=r"class folder '.*fear' contains no images"):
        load("fer2013", tmp_path)


def test_corrupt_image_is_named_or_skipped_and_reported(tmp_path, capsys):
    write_class_folders(tmp_path / "train", FER, per_class=2)
    (tmp_path / "train" / "fear" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(DatasetError, match=r"cannot decode image '.*broken.jpg'.*skip_corrupt=true"):
        load("fer2013", tmp_path)
    data, _ = load("fer2013", tmp_path, skip_corrupt=True)
    assert data.class_counts()["fear"] == 2
    assert "skipped 1 unreadable image(s)" in capsys.readouterr().err


def test_truncated_png_is_reported(tmp_path):
    write_class_folders(tmp_path / "Train", ["Angry", "Happy"], per_class=2, suffix=".png")
    target = tmp_path / "Train" / "Happy" / "0000.png"
    target.write_bytes(target.read_bytes()[:60])
    with pytest.raises(DatasetError, match=r"cannot decode image '.*0000.png'"):
        load("sfew", tmp_path)


# ---------------------------------------------------------------------------------------------- RAF-DB
def write_rafdb(root: Path, label_of=None):
    (root / "EmoLabel").mkdir(parents=True)
    (root / "Image" / "aligned").mkdir(parents=True)
    lines = []
    for label in range(1, 8):
        for i in range(3):
            for part in ("train", "test"):
                name = f"{part}_{label}{i:04d}.jpg"
                lines.append(f"{name} {label if label_of is None else label_of}")
                face(label * 10 + i, 100, "RGB").save(root / "Image" / "aligned" / name.replace(".jpg", "_aligned.jpg"))
    (root / "EmoLabel" / "list_patition_label.txt").write_text("\n".join(lines) + "\n")


def test_rafdb_labels_partitions_and_paper_split(tmp_path):
    write_rafdb(tmp_path)
    data, config = load("rafdb", tmp_path, size=32)
    assert data.class_names == ["surprise", "fear", "disgust", "happy", "sad", "angry", "neutral"]
    assert set(data.class_counts().values()) == {6}
    assert data.images.shape[1:] == (3, 32, 32)
    assert resolve_split(config, data).test == ("angry", "disgust", "fear")
    train, _ = load("rafdb", tmp_path, size=32, subset="train")
    assert len(train.labels) == 21


def test_rafdb_bad_label_and_missing_files(tmp_path):
    write_rafdb(tmp_path, label_of=8)
    with pytest.raises(DatasetError, match="line 1: unknown label 8; RAF-DB basic labels are 1..7"):
        load("rafdb", tmp_path)
    with pytest.raises(DatasetError, match="label file .* not found"):
        load("rafdb", tmp_path / "Image")
    (tmp_path / "EmoLabel" / "list_patition_label.txt").write_text("train_09999.jpg 1\n")
    with pytest.raises(DatasetError, match=r"image '.*train_09999_aligned.jpg' listed in .* is missing"):
        load("rafdb", tmp_path)


# ------------------------------------------------------------------------------------------------ SFEW
def test_sfew_train_val_folders(tmp_path):
    names = ["Angry", "Disgust", "Fear", "Happy", "Neutral", "Sad", "Surprise"]
    write_class_folders(tmp_path / "Train", names, per_class=2, suffix=".png", mode="RGB", size=40)
    write_class_folders(tmp_path / "Val", names, per_class=1, suffix=".png", mode="RGB", size=40)
    data, config = load("sfew", tmp_path, size=24)
    assert data.class_counts() == {n.lower(): 3 for n in names}
    assert resolve_split(config, data).train == ("happy", "neutral", "sad", "surprise")
    val_only, _ = load("sfew", tmp_path, size=24, parts="Val")
    assert len(val_only.labels) == 7


# ----------------------------------------------------------------------------- generic folder, CSV, npz
def test_image_folder_with_split_from_config(tmp_path):
    write_class_folders(tmp_path, ["a", "b", "c", "d"], per_class=3, suffix=".png", mode="RGB", size=30)
    config = merge(None, {"dataset": "image-folder", "data_root": str(tmp_path),
                          "split": {"train": ["a", "b"], "test": ["c", "d"]}, "image_size": 16})
    data = load_dataset(config)
    assert data.class_names == ["a", "b", "c", "d"] and data.images.shape[1:] == (3, 16, 16)
    assert resolve_split(config, data).test == ("c", "d")
    bad = merge(None, {"dataset": "image-folder", "data_root": str(tmp_path), "split": {"train": ["a"], "test": ["z"]}})
    with pytest.raises(SplitError, match="names test class 'z' that dataset 'image-folder' does not have"):
        resolve_split(bad, data)


def test_csv_manifest_and_its_errors(tmp_path):
    write_class_folders(tmp_path / "imgs", ["x", "y"], per_class=2, suffix=".png")
    manifest = tmp_path / "m.csv"
    rows = [f"imgs/{c}/{i:04d}.png,{c}" for c in "xy" for i in range(2)]
    manifest.write_text("path,label\n" + "\n".join(rows) + "\n")
    data, _ = load("csv-manifest", manifest, channels=1, size=20)
    assert data.class_counts() == {"x": 2, "y": 2}
    manifest.write_text("file,class\nimgs/x/0000.png,x\n")
    with pytest.raises(DatasetError, match="has columns file,class; a manifest needs 'path' and 'label' columns"):
        load("csv-manifest", manifest)
    manifest.write_text("path,label\nimgs/x/nope.png,x\n")
    with pytest.raises(DatasetError, match=r"line 2: image '.*nope.png' does not exist"):
        load("csv-manifest", manifest)


def test_array_file(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, images=np.zeros((6, 10, 10), np.uint8), labels=np.array([0, 0, 1, 1, 2, 2]),
             class_names=np.array(["p", "q", "r"]))
    data, _ = load("array", path)
    assert data.class_names == ["p", "q", "r"] and data.images.shape == (6, 1, 10, 10)
    np.savez(path, images=np.zeros((2, 10, 10), np.uint8), labels=np.array([0, 5]), class_names=np.array(["p", "q"]))
    with pytest.raises(DatasetError, match="label 5 has no class name"):
        load("array", path)
    path.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(DatasetError, match="cannot read array file"):
        load("array", path)


# -------------------------------------------------------------------------------------------- Omniglot
def write_omniglot(root: Path):
    for part, alphabets in (("background", ["Alpha", "Beta"]), ("evaluation", ["Gamma"])):
        for alphabet in alphabets:
            for ch in range(1, 3):
                folder = root / f"images_{part}" / alphabet / f"character{ch:02d}"
                folder.mkdir(parents=True)
                for drawer in range(1, 4):
                    image = np.full((105, 105), 255, np.uint8)
                    image[10 * ch:10 * ch + 30, 20:40] = 0  # black ink on white, as the official PNGs
                    Image.fromarray(image).save(folder / f"{ch:02d}_{drawer:02d}.png")


def test_omniglot_official_folders_rotations_and_lake_split(tmp_path):
    write_omniglot(tmp_path)
    data, config = load("omniglot", tmp_path)
    assert len(data.class_names) == 6 * 4 and data.images.shape[1:] == (1, 28, 28)
    assert data.class_names[0] == "Alpha/character01/rot0" and data.class_names[-1] == "Gamma/character02/rot270"
    assert data.images[0].float().mean() < 128  # ink inverted to 255 on a black background
    lake = merge(None, {"dataset": "omniglot", "data_root": str(tmp_path), "split": "lake"})
    split = resolve_split(lake, data)
    assert len(split.train) == 16 and len(split.test) == 8
    assert all(name.startswith("Gamma/") for name in split.test)


def test_missing_data_root_paths(tmp_path):
    assert main(["run", "--dataset", "fer2013", "--data-root", str(tmp_path / "absent")]) == 3
    with pytest.raises(DatasetError, match="no FER2013 data found"):
        load("fer2013", tmp_path)


# ---------------------------------------------------------------------- the shared real data (CI has it)
PUBLISHED_FER = {"angry": 4953, "disgust": 547, "fear": 5121, "happy": 8989, "sad": 6077, "surprise": 4002,
                 "neutral": 6198}


def test_real_fer2013_counts_and_a_protonet_episode(shared_data, tmp_path):
    raw, _ = load("fer2013", shared_data / "fer2013.npz")
    assert raw.class_counts() == PUBLISHED_FER
    data, _ = load("fer2013", shared_data / "fer2013.npz", dedup=None)  # FER2013 removes duplicates by default
    assert len(data.labels) == 35887 - 1750 - 160 and data.metadata["dedup"] == {
        "same_class_copies": 1750, "cross_class_images": 160}
    training, _ = load("fer2013", shared_data / "fer2013.npz", usage="Training")
    assert len(training.labels) == 28709


def test_real_omniglot_counts_and_standard_split(shared_data):
    data, config = load("omniglot", shared_data / "omniglot28.npz")
    assert len(data.class_names) == 1623 * 4 and len(data.labels) == 32460 * 4
    assert set(data.class_counts().values()) == {20}
    split = resolve_split(config, data)
    assert (len(split.train), len(split.test)) == (4800, 1692)
    train_chars = {n.rsplit("/", 1)[0] for n in split.train}
    test_chars = {n.rsplit("/", 1)[0] for n in split.test}
    assert len(train_chars) == 1200 and len(test_chars) == 423 and not train_chars & test_chars


def test_fer2013_official_csv_made_from_the_npz_runs_protonet_and_crn(shared_data, tmp_path, capsys):
    with np.load(shared_data / "fer2013.npz") as real:
        images, labels, usage = real["images"], real["labels"], real["usage"]
    rows = np.concatenate([np.flatnonzero(labels == c)[:25] for c in range(7)])
    with (tmp_path / "fer2013.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["emotion", "pixels", "Usage"])
        for i in rows:
            writer.writerow([int(labels[i]), " ".join(map(str, images[i].reshape(-1))), usage[i]])
    args = ["run", "--dataset", "fer2013", "--data-root", str(tmp_path), "--methods", "protonet,crn",
            "--shots", "1", "--query", "3", "--train-episodes", "3", "--test-episodes", "5",
            "--output-dir", str(tmp_path / "runs"), "--run-id", "fer", "--device", "cpu"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert re.search(r"protonet\s+│\s+\d+\.\d+ ± \d+\.\d+", out) and "crn" in out


def test_omniglot_standard_5_way_protocol_runs(shared_data, tmp_path, capsys):
    args = ["run", "--dataset", "omniglot", "--data-root", str(shared_data / "omniglot28.npz"), "--way", "5",
            "--methods", "protonet", "--shots", "1", "--query", "5", "--train-episodes", "5", "--train-way", "20",
            "--test-episodes", "10", "--output-dir", str(tmp_path / "runs"), "--run-id", "omni", "--device", "cpu"]
    assert main(args) == 0
    assert "5-way" in capsys.readouterr().out


def test_cross_dataset_split_trains_on_one_dataset_and_tests_on_another(tmp_path):
    (tmp_path / "fer").mkdir()
    write_fer_csv(tmp_path / "fer" / "fer2013.csv", per_class=25)
    write_rafdb(tmp_path / "raf")
    parts = f"fer2013={tmp_path / 'fer'};rafdb={tmp_path / 'raf'}"
    config = merge(None, {"dataset": "combined", "dataset_options": {"parts": parts}, "image_size": 32})
    data = load_dataset(config)
    assert "fer2013/happy" in data.class_names and "rafdb/angry" in data.class_names
    assert data.images.shape[1:] == (1, 32, 32)
    split = resolve_split(config, data)
    assert split.train == ("fer2013/happy", "fer2013/neutral", "fer2013/sad", "fer2013/surprise")
    assert split.test == ("rafdb/angry", "rafdb/disgust", "rafdb/fear")
    args = ["run", "--dataset", "combined", "--dataset-option", f"parts={parts}", "--image-size", "32",
            "--methods", "protonet", "--shots", "1", "--query", "2", "--train-episodes", "2", "--test-episodes", "3",
            "--output-dir", str(tmp_path / "runs"), "--run-id", "cross", "--device", "cpu"]
    assert main(args) == 0
    with pytest.raises(Exception, match="needs name=path entries"):
        load_dataset(merge(None, {"dataset": "combined", "dataset_options": {"parts": " ; "}}))
    # One part alone is the in-domain diagonal of `bench cross`: its own training and test emotions, prefixed.
    alone = merge(None, {"dataset": "combined", "dataset_options": {"parts": parts.split(";")[1]}, "image_size": 32})
    data = load_dataset(alone)
    assert resolve_split(alone, data).test == ("rafdb/angry", "rafdb/disgust", "rafdb/fear")


def test_mini_imagenet_from_the_cache_pickles_with_the_ravi_split_and_no_float_copy(tmp_path, monkeypatch):
    import pickle
    import sys

    monkeypatch.setitem(sys.modules, "learn2learn", None)  # read without learn2learn (and its float32 copy)
    rng = np.random.default_rng(0)
    counts = {"train": 5, "validation": 3, "test": 3}
    for mode, n_classes in counts.items():
        class_dict = {f"n{mode[:2]}{c:03d}": list(range(c * 4, c * 4 + 4)) for c in range(n_classes)}
        data = {"image_data": rng.integers(0, 256, (n_classes * 4, 84, 84, 3), dtype=np.uint8),
                "class_dict": class_dict}
        (tmp_path / f"mini-imagenet-cache-{mode}.pkl").write_bytes(pickle.dumps(data))
    data, config = load("mini-imagenet", tmp_path)
    assert data.images.shape == (44, 3, 84, 84) and len(data.class_names) == 11
    split = resolve_split(config, data)
    assert (len(split.train), len(split.val), len(split.test)) == (5, 3, 3)
    assert all(name.startswith("nte") for name in split.test)
    assert data.images.dtype == torch.uint8
    assert np.array_equal(data.images[0].permute(1, 2, 0).numpy(), pickle.loads(
        (tmp_path / "mini-imagenet-cache-train.pkl").read_bytes())["image_data"][0])
    (tmp_path / "mini-imagenet-cache-test.pkl").write_bytes(b"not a pickle")
    with pytest.raises(DatasetError, match="is not a mini-imagenet cache pickle"):
        load("mini-imagenet", tmp_path)
    (tmp_path / "mini-imagenet-cache-test.pkl").unlink()
    with pytest.raises(DatasetError, match="mini-imagenet-cache-test.pkl' not found"):
        load("mini-imagenet", tmp_path)


def test_image_folders_keep_their_own_size_and_channels_and_say_what_they_change(tmp_path, capsys):
    for c, name in enumerate(("angry", "happy", "sad")):
        (tmp_path / name).mkdir()
        for i in range(3):
            face(10 * c + i).save(tmp_path / name / f"{i}.png")
    data, _ = load("image-folder", tmp_path)
    assert tuple(data.images.shape) == (9, 1, 48, 48)  # 48×48 grayscale stays 48×48 grayscale
    assert "resized" not in capsys.readouterr().err
    deep = np.full((48, 48), 40000, dtype=np.uint16)  # a 16-bit PNG: 40000 / 65535 of full scale
    Image.fromarray(deep).save(tmp_path / "sad" / "deep.png")
    Image.fromarray(np.zeros((48, 60), dtype=np.uint8)).save(tmp_path / "sad" / "wide.png")
    data, _ = load("image-folder", tmp_path)
    sad = data.images[data.labels == data.class_id("sad")]
    assert any(int(img.max()) == 156 and int(img.min()) == 156 for img in sad)  # not clipped to white
    err = capsys.readouterr().err
    assert "image-folder: of 11 images, 1 resized to 48×48 (1 of them not square, stretched)" in err
    data, _ = load("image-folder", tmp_path, channels=3, size=32)
    assert tuple(data.images.shape) == (11, 3, 32, 32) and "11 converted to RGB" in capsys.readouterr().err


def test_file_and_folder_names_that_are_not_utf8(tmp_path):
    root = os.fsencode(tmp_path)
    for c, name in enumerate((b"angry", b"happy", b"sad")):
        os.makedirs(root + b"/" + name)
        for i in range(2):
            face(c + 10 * i).save(os.fsdecode(root + b"/" + name + (b"/\xfe%d.png" % i)))  # Latin-1 bytes
    data, _ = load("image-folder", tmp_path)
    assert len(data.labels) == 6  # such file names load
    os.makedirs(root + b"/angr\xff")
    face(99).save(os.fsdecode(root + b"/angr\xff/0.png"))
    with pytest.raises(DatasetError, match=r"class folder b'.*angr\\xff' has a name that is not UTF-8 text; rename"):
        load("image-folder", tmp_path)
