"""tieredImageNet, CIFAR-FS, FC100 and CUB in the file layouts learn2learn reads, with their standard splits."""

import io
import os
import pickle
import shutil

import numpy as np
import pytest
from PIL import Image

from fewshot_bench.cli.main import main
from fewshot_bench.episodic.protocol import resolve_split
from fewshot_bench.errors import DatasetError
from test_datasets import load

SHORT = ("train", "val", "test")


@pytest.fixture(autouse=True)
def _learn2learn():
    if not os.environ.get("CI"):  # CI installs learn2learn and must run these
        pytest.importorskip("learn2learn")


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def write_tiered(root, rng, classes=(3, 2, 2), per_class=4):
    folder = root / "tiered-imagenet"
    folder.mkdir(parents=True)
    for mode, n in zip(SHORT, classes):
        labels = np.repeat(np.arange(n) * 5 + 1, per_class)  # sparse ids, as in the real files
        images = [png_bytes(rng.integers(0, 256, (84, 84, 3), dtype=np.uint8)) for _ in labels]
        if mode == "test":  # the released pickles hold uint8 arrays of the PNG bytes
            images = [np.frombuffer(b, dtype=np.uint8) for b in images]
        (folder / f"{mode}_images_png.pkl").write_bytes(pickle.dumps(images))
        (folder / f"{mode}_labels.pkl").write_bytes(pickle.dumps({"label_specific": labels}))


def test_tiered_imagenet_reads_the_png_pickles_with_disjoint_parts(tmp_path):
    rng = np.random.default_rng(0)
    write_tiered(tmp_path, rng)
    data, config = load("tiered-imagenet", tmp_path)
    assert data.images.shape == (28, 3, 84, 84)
    split = resolve_split(config, data)
    assert (len(split.train), len(split.val), len(split.test)) == (3, 2, 2)
    assert split.train == ("train-001", "train-006", "train-011") and split.test == ("test-001", "test-006")
    first = np.asarray(Image.open(io.BytesIO(pickle.loads(
        (tmp_path / "tiered-imagenet" / "train_images_png.pkl").read_bytes())[0])))
    assert np.array_equal(data.images[0].permute(1, 2, 0).numpy(), first)
    (tmp_path / "tiered-imagenet" / "val_labels.pkl").unlink()
    with pytest.raises(DatasetError, match="val_labels.pkl' not found"):
        load("tiered-imagenet", tmp_path)


def test_tiered_imagenet_corrupt_png_is_a_one_line_error(tmp_path):
    write_tiered(tmp_path, np.random.default_rng(1))
    path = tmp_path / "tiered-imagenet" / "test_images_png.pkl"
    images = pickle.loads(path.read_bytes())
    images[2] = images[2][:60]
    path.write_bytes(pickle.dumps(images))
    with pytest.raises(DatasetError, match="tieredImageNet test images: image 2 cannot be decoded"):
        load("tiered-imagenet", tmp_path)


def test_cifar_fs_reads_cifar100_folders_with_the_bertinetto_split(tmp_path):
    rng = np.random.default_rng(2)
    base = tmp_path / "cifarfs" / "cifar100"
    names = {"train": ["apple", "bear", "bus"], "val": ["cloud", "fox"], "test": ["lion", "rose"]}
    (base / "splits" / "bertinetto").mkdir(parents=True)
    for mode, classes in names.items():
        (base / "splits" / "bertinetto" / f"{mode}.txt").write_text("\n".join(classes) + "\n")
        for name in classes:
            (base / "data" / name).mkdir(parents=True)
            for i in range(3):
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(base / "data" / name / f"{i}.png")
    data, config = load("cifar-fs", tmp_path)
    assert data.images.shape == (21, 3, 32, 32)
    split = resolve_split(config, data)
    assert split.train == ("apple", "bear", "bus") and split.val == ("cloud", "fox") and split.test == ("lion", "rose")
    (base / "data" / "rose" / "1.png").write_bytes(b"not a png")
    shutil.rmtree(tmp_path / "cifarfs" / "processed")
    with pytest.raises(DatasetError, match=r"cannot decode image '.*rose/1.png'.*skip_corrupt=true"):
        load("cifar-fs", tmp_path)
    data, _ = load("cifar-fs", tmp_path, skip_corrupt=True)
    assert len(data.images) == 20


def test_fc100_reads_the_pickles_with_superclass_disjoint_parts(tmp_path):
    rng = np.random.default_rng(3)
    ids = {"train": [0, 7, 9], "val": [2, 4], "test": [5, 8]}
    for mode, classes in ids.items():
        labels = np.repeat(classes, 2)
        archive = {"data": rng.integers(0, 256, (len(labels), 32, 32, 3), dtype=np.uint8), "labels": list(labels)}
        (tmp_path / f"FC100_{mode}.pickle").write_bytes(pickle.dumps(archive))
    data, config = load("fc100", tmp_path)
    assert data.images.shape == (14, 3, 32, 32)
    split = resolve_split(config, data)
    assert split.test == ("cifar100-05", "cifar100-08") and split.val == ("cifar100-02", "cifar100-04")
    archive = pickle.loads((tmp_path / "FC100_test.pickle").read_bytes())
    test_id = data.class_names.index("cifar100-08")
    assert np.array_equal(data.images[data.labels == test_id][0].permute(1, 2, 0).numpy(), archive["data"][2])


def test_cub_uses_learn2learns_class_split_and_resizes(tmp_path):
    from learn2learn.vision.datasets.cu_birds200 import SPLITS

    rng = np.random.default_rng(4)
    images = tmp_path / "cubirds200" / "CUB_200_2011" / "images"
    for mode in ("train", "validation", "test"):
        for name in SPLITS[mode]:
            (images / name).mkdir(parents=True)
    for name in sum(SPLITS.values(), []):
        size = (int(rng.integers(30, 60)), int(rng.integers(30, 60)), 3)
        Image.fromarray(rng.integers(0, 256, size, dtype=np.uint8)).save(images / name / f"{name}_0.jpg")
    data, config = load("cub", tmp_path, size=40)
    assert data.images.shape == (200, 3, 40, 40) and set(data.class_counts().values()) == {1}
    split = resolve_split(config, data)
    assert (len(split.train), len(split.val), len(split.test)) == (140, 30, 30)
    assert set(split.test) == set(SPLITS["test"]) and set(split.val) == set(SPLITS["validation"])
    (images / SPLITS["test"][4] / f"{SPLITS['test'][4]}_0.jpg").unlink()
    with pytest.raises(DatasetError, match=f"CUB class folder '.*{SPLITS['test'][4]}' contains no images"):
        load("cub", tmp_path, size=40)
    shutil.rmtree(images / SPLITS["test"][5])
    with pytest.raises(DatasetError, match=f"CUB class folder '.*{SPLITS['test'][5]}' not found"):
        load("cub", tmp_path, size=40)


def test_missing_learn2learn_files_give_one_line_errors(tmp_path, capsys):
    for dataset, expected in [("tiered-imagenet", "tiered-imagenet/train_images_png.pkl' not found"),
                              ("fc100", "FC100_train.pickle' not found"),
                              ("cifar-fs", "cifarfs/cifar100/data' not found"),
                              ("cub", "cubirds200/CUB_200_2011/images' not found")]:
        assert main(["run", "--dataset", dataset, "--data-root", str(tmp_path), "--methods", "protonet"]) == 3
        err = capsys.readouterr().err.strip()
        assert expected in err and len(err.splitlines()) == 1 and "Traceback" not in err, err
