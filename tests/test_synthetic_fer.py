import numpy as np
import pytest

from fewshot_bench.config import merge
from fewshot_bench.datasets.synthetic_fer import CLASS_NAMES, RAF_DB_COUNTS, class_sizes, generate
from fewshot_bench.episodic.protocol import load_dataset, resolve_split


def test_same_seed_gives_identical_bytes_and_other_seeds_differ():
    a_images, a_labels, _ = generate(total=300, size=24, identities=10, seed=3)
    b_images, b_labels, _ = generate(total=300, size=24, identities=10, seed=3)
    c_images, _, _ = generate(total=300, size=24, identities=10, seed=4)
    assert a_images.tobytes() == b_images.tobytes() and np.array_equal(a_labels, b_labels)
    assert a_images.tobytes() != c_images.tobytes()
    assert a_images.dtype == np.uint8 and a_images.shape[1:] == (24, 24)


def test_class_sizes_follow_raf_db_and_never_drop_below_40():
    sizes = class_sizes(4000)
    total_raf = sum(RAF_DB_COUNTS.values())
    for name in CLASS_NAMES:
        expected = max(40, round(4000 * RAF_DB_COUNTS[name] / total_raf))
        assert sizes[name] == expected
    assert sizes["happy"] > sizes["neutral"] > sizes["sad"] > sizes["surprise"] > sizes["fear"]
    assert min(class_sizes(300).values()) == 40


def test_images_vary_within_a_class_and_classes_differ_on_average():
    images, labels, _ = generate(total=1500, size=32, identities=30, seed=0)
    images = images.astype(np.float64)
    means = np.stack([images[labels == c].mean(0) for c in range(7)])
    assert images[labels == 3].std(0).mean() > 10  # nuisances and identities vary the images
    # Class-mean faces differ (expression), e.g. surprise vs sad, more than two halves of one class do.
    happy = images[labels == 3]
    within = np.abs(happy[::2].mean(0) - happy[1::2].mean(0)).mean()
    between = np.abs(means[5] - means[4]).mean()
    assert between > within


def test_loaded_through_the_registry_with_the_paper_split_as_default():
    config = merge(None, {"dataset_options": {"total": 400}, "image_size": 20})
    dataset = load_dataset(config)
    assert dataset.class_names == CLASS_NAMES
    assert dataset.images.shape[1:] == (1, 20, 20)
    split = resolve_split(config, dataset)
    assert split.train == ("happy", "neutral", "sad", "surprise")
    assert split.test == ("angry", "disgust", "fear")
    # second load comes from the cache, byte-identical
    again = load_dataset(config)
    assert again.fingerprint == dataset.fingerprint
    assert bytes(again.images.numpy()) == bytes(dataset.images.numpy())


def test_contact_sheet_has_a_row_per_class(tmp_path):
    from fewshot_bench.reporting.contact_sheet import contact_sheet

    dataset = load_dataset(merge(None, {"dataset_options": {"total": 300}, "image_size": 24}))
    sheet = contact_sheet(dataset, per_class=5, scale=2)
    assert sheet.height == 7 * (48 + 2)
    assert np.asarray(sheet).std() > 20


def test_fingerprint_is_the_content_so_episodes_follow_the_images():
    config = merge(None, {"dataset_options": {"total": 300}, "image_size": 20})
    a = load_dataset(config)
    b = load_dataset(merge(None, {"dataset_options": {"total": 300, "seed": 1}, "image_size": 20}))
    assert a.fingerprint == load_dataset(config).fingerprint
    assert a.fingerprint != b.fingerprint
