import numpy as np
import pytest

from fewshot_bench.episodic.episodes import Episode, EpisodeSampler, EpisodeSet, check_episodes
from fewshot_bench.errors import EpisodeError, LeakageError, SplitError
from fewshot_bench.splits import ClassSplit

NAMES = ["angry", "disgust", "fear", "happy", "sad"]


def make_labels(counts):
    return np.concatenate([np.full(n, c) for c, n in enumerate(counts)])


def test_episode_layout_and_classes():
    labels = make_labels([30, 30, 30, 30, 30])
    sampler = EpisodeSampler(labels, [0, 2, 4], 3, 2, 5, seed=1, class_names=NAMES)
    for _ in range(50):
        e = sampler.sample()
        assert sorted(e.class_ids) == [0, 2, 4]
        assert e.support.shape == (6,) and e.query.shape == (15,)
        assert np.array_equal(labels[e.support], np.repeat(e.class_ids, 2))
        assert np.array_equal(labels[e.query], np.repeat(e.class_ids, 5))
        assert not set(e.support) & set(e.query)


def test_same_seed_same_episodes_and_no_global_state():
    labels = make_labels([40] * 5)
    a = EpisodeSampler(labels, range(5), 3, 1, 4, seed=7).sample_set(20)
    np.random.seed(123)
    np.random.rand(10)
    b = EpisodeSampler(labels, range(5), 3, 1, 4, seed=7).sample_set(20)
    c = EpisodeSampler(labels, range(5), 3, 1, 4, seed=8).sample_set(20)
    assert a.fingerprint() == b.fingerprint()
    assert a.fingerprint() != c.fingerprint()


def test_refuses_more_ways_than_classes():
    with pytest.raises(EpisodeError, match="5-way episodes need 5 classes but the split has only 3"):
        EpisodeSampler(make_labels([30] * 5), [0, 1, 2], 5, 1, 1, seed=0, class_names=NAMES)


def test_refuses_class_with_too_few_items_naming_it():
    labels = make_labels([30, 30, 12, 30, 30])
    with pytest.raises(EpisodeError, match=r"class 'fear' has 12 items but 5-shot 15-query episodes need 20"):
        EpisodeSampler(labels, [0, 1, 2], 3, 5, 15, seed=0, class_names=NAMES)


def test_refuses_nonpositive_sizes():
    with pytest.raises(EpisodeError, match="K-shot must be at least 1"):
        EpisodeSampler(make_labels([30] * 5), [0, 1, 2], 3, 0, 15, seed=0)


def test_split_refuses_overlap_duplicates_and_unknown_classes():
    with pytest.raises(SplitError, match="puts class 'happy' in both 'train' and 'test'"):
        ClassSplit(("happy", "sad"), ("happy", "fear")).validate(NAMES, "d")
    with pytest.raises(SplitError, match="names test class 'contempt' that dataset 'd' does not have"):
        ClassSplit(("happy",), ("contempt",)).validate(NAMES, "d")
    with pytest.raises(SplitError, match="lists class 'sad' twice"):
        ClassSplit(("sad", "sad"), ("fear",)).validate(NAMES, "d")


def test_check_rejects_a_test_episode_containing_a_training_class():
    labels = make_labels([30] * 5)
    test_ids = [0, 1, 2]
    good = EpisodeSampler(labels, test_ids, 3, 1, 2, seed=0).sample_set(5)
    check_episodes(good, labels, test_ids, NAMES, "test")
    # A leaky source (like a sampler built on the unfiltered dataset) swaps in a training class.
    leaky = EpisodeSampler(labels, [0, 1, 3], 3, 1, 2, seed=0).sample_set(5)
    with pytest.raises(LeakageError, match="contains a class of class 'happy'|class 'happy'"):
        check_episodes(leaky, labels, test_ids, NAMES, "test")


def test_check_rejects_items_whose_labels_disagree_with_the_episode():
    labels = make_labels([30] * 5)
    e = EpisodeSampler(labels, [0, 1, 2], 3, 1, 2, seed=0).sample()
    wrong = Episode(e.class_ids, e.support, e.query[::-1].copy())
    with pytest.raises(LeakageError, match="do not match"):
        check_episodes(wrong, labels, [0, 1, 2], NAMES, "test")


def test_episode_set_round_trip(tmp_path):
    labels = make_labels([30] * 5)
    episodes = EpisodeSampler(labels, range(5), 3, 2, 3, seed=0).sample_set(4)
    episodes.save(tmp_path / "e.npz")
    again = EpisodeSet.load(tmp_path / "e.npz")
    assert again.fingerprint() == episodes.fingerprint()
