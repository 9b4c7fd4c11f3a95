"""The one episode sampler: seeded N-way K-shot Q-query episodes drawn from a split's classes.

Episodes are index sets into a dataset. Support items are class-major (all K shots of the episode's
class 0, then class 1, ...), and so are queries; the label of an item is its class's position in
``class_ids``. The sampler owns its own ``numpy.random.Generator``: it never touches global random state.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from fewshot_bench.errors import EpisodeError, LeakageError


@dataclass(frozen=True)
class Episode:
    """One episode as dataset indices.

    Attributes:
        class_ids: (n_way,) dataset class ids, in the order that defines episode labels 0..n_way-1.
        support: (n_way * n_shot,) dataset indices, class-major.
        query: (n_way * n_query,) dataset indices, class-major.
    """

    class_ids: np.ndarray
    support: np.ndarray
    query: np.ndarray

    @property
    def n_way(self) -> int:
        return len(self.class_ids)

    @property
    def n_shot(self) -> int:
        return len(self.support) // len(self.class_ids)

    @property
    def n_query(self) -> int:
        return len(self.query) // len(self.class_ids)


@dataclass(frozen=True)
class EpisodeSet:
    """A fixed, stacked list of episodes (the test episodes of one setting), saved with the run.

    Attributes:
        class_ids: (n_episodes, n_way); support: (n_episodes, n_way * n_shot);
        query: (n_episodes, n_way * n_query).
    """

    class_ids: np.ndarray
    support: np.ndarray
    query: np.ndarray

    def __len__(self) -> int:
        return len(self.class_ids)

    def __getitem__(self, i: int) -> Episode:
        return Episode(self.class_ids[i], self.support[i], self.query[i])

    def __iter__(self) -> Iterator[Episode]:
        for i in range(len(self)):
            yield self[i]

    def save(self, path: Path) -> None:
        np.savez_compressed(path, class_ids=self.class_ids, support=self.support, query=self.query)

    @classmethod
    def load(cls, path: Path) -> "EpisodeSet":
        with np.load(path) as data:
            return cls(data["class_ids"], data["support"], data["query"])

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for array in (self.class_ids, self.support, self.query):
            digest.update(np.ascontiguousarray(array, dtype=np.int64).tobytes())
        return digest.hexdigest()[:16]


class EpisodeSampler:
    """Draws N-way K-shot Q-query episodes from the given classes only, with its own seeded generator.

    Every impossible request is refused at construction, before any training, with a message naming the
    problem: more ways than classes, or a class with fewer than K + Q items.
    """

    def __init__(
        self,
        labels: np.ndarray,
        class_ids: Sequence[int],
        n_way: int,
        n_shot: int,
        n_query: int,
        seed: int | np.random.SeedSequence,
        class_names: Sequence[str] | None = None,
        purpose: str = "episodes",
        groups: np.ndarray | None = None,
    ) -> None:
        labels = np.asarray(labels)
        self.class_ids = np.asarray(sorted(set(int(c) for c in class_ids)), dtype=np.int64)
        self.n_way, self.n_shot, self.n_query = int(n_way), int(n_shot), int(n_query)
        names = list(class_names) if class_names is not None else [str(i) for i in range(labels.max() + 1)]
        for value, what in ((n_way, "N-way"), (n_shot, "K-shot"), (n_query, "queries per class")):
            if int(value) < 1:
                raise EpisodeError(f"{purpose}: {what} must be at least 1, got {value}")
        if self.n_way > len(self.class_ids):
            raise EpisodeError(
                f"{purpose}: {n_way}-way episodes need {n_way} classes but the split has only "
                f"{len(self.class_ids)} ({', '.join(names[c] for c in self.class_ids)}); lower the way"
            )
        order = np.argsort(labels, kind="stable")
        bounds = np.searchsorted(labels[order], np.arange(len(names) + 1))
        self._items = {int(c): order[bounds[c]:bounds[c + 1]] for c in self.class_ids}
        need = self.n_shot + self.n_query
        for c in self.class_ids:
            have = len(self._items[int(c)])
            if have < need:
                raise EpisodeError(
                    f"{purpose}: class '{names[c]}' has {have} items but {self.n_shot}-shot "
                    f"{self.n_query}-query episodes need {need}; lower the shot or query count, or "
                    "remove the class from the split"
                )
        # Each item's group (subject or sequence; ``episodic.groups``): when given, no query shares a group with any
        # support item of its episode. Without it the draws are exactly those of earlier versions.
        self.groups = None if groups is None else np.asarray(groups)
        self.purpose, self.names = purpose, names
        if self.groups is not None:
            for c in self.class_ids:
                if len(np.unique(self.groups[self._items[int(c)]])) < 2:
                    raise EpisodeError(
                        f"{purpose}: class '{names[c]}' holds images of one group (subject or sequence) only, so "
                        "no query can come from another group than its support; add images of other groups, "
                        "remove the class from the split, or use --group-separation none")
        self.rng = np.random.default_rng(seed)

    # Draws of one episode before a group-separated request is declared impossible.
    GROUP_ATTEMPTS = 200

    def sample(self) -> Episode:
        if self.groups is not None:
            return self._sample_separated()
        chosen = self.rng.choice(self.class_ids, size=self.n_way, replace=False)
        k, q = self.n_shot, self.n_query
        support = np.empty((self.n_way, k), dtype=np.int64)
        query = np.empty((self.n_way, q), dtype=np.int64)
        for row, c in enumerate(chosen):
            items = self._items[int(c)]
            picked = items[self.rng.choice(len(items), size=k + q, replace=False)]
            support[row], query[row] = picked[:k], picked[k:]
        return Episode(chosen.astype(np.int64), support.reshape(-1), query.reshape(-1))

    def _sample_separated(self) -> Episode:
        """An episode whose queries share no group with any of its support items: support drawn as usual, then
        each class's queries from its items outside the support's groups; an episode where some class has too
        few such items is drawn again (seeded, so the same episodes every time)."""
        k, q = self.n_shot, self.n_query
        groups = self.groups
        assert groups is not None
        for _ in range(self.GROUP_ATTEMPTS):
            chosen = self.rng.choice(self.class_ids, size=self.n_way, replace=False)
            support = np.empty((self.n_way, k), dtype=np.int64)
            for row, c in enumerate(chosen):
                items = self._items[int(c)]
                support[row] = items[self.rng.choice(len(items), size=k, replace=False)]
            banned = np.unique(groups[support])
            query = np.empty((self.n_way, q), dtype=np.int64)
            for row, c in enumerate(chosen):
                items = self._items[int(c)]
                eligible = items[~np.isin(groups[items], banned)]
                if len(eligible) < q:
                    break
                query[row] = eligible[self.rng.choice(len(eligible), size=q, replace=False)]
            else:
                return Episode(chosen.astype(np.int64), support.reshape(-1), query.reshape(-1))
        raise EpisodeError(
            f"{self.purpose}: no {self.n_shot}-shot {self.n_query}-query episode with support and queries from "
            f"different groups was found in {self.GROUP_ATTEMPTS} draws (too few images outside the support's "
            "groups, e.g. class '" + self.names[int(c)] + "'); lower the shot or query count, separate by sub-group "
            "(--group-separation subgroup), or use --group-separation none")

    def sample_set(self, n_episodes: int) -> EpisodeSet:
        episodes = [self.sample() for _ in range(n_episodes)]
        return EpisodeSet(
            np.stack([e.class_ids for e in episodes]),
            np.stack([e.support for e in episodes]),
            np.stack([e.query for e in episodes]),
        )

    def state(self) -> dict:
        return self.rng.bit_generator.state

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state


def check_episodes(
    episodes: EpisodeSet | Episode,
    labels: np.ndarray,
    allowed_class_ids: Sequence[int],
    class_names: Sequence[str],
    purpose: str,
) -> None:
    """Verify that every class and every item of the episodes belongs to the allowed split classes.

    This is the run-time guarantee against leakage whatever produced the episodes (our sampler, a file,
    a third-party sampler): a test episode containing a meta-training class is rejected.
    """
    if isinstance(episodes, Episode):
        class_ids, support, query = episodes.class_ids[None], episodes.support[None], episodes.query[None]
    else:
        class_ids, support, query = episodes.class_ids, episodes.support, episodes.query
    allowed = np.asarray(sorted(set(int(c) for c in allowed_class_ids)))
    for what, ids in (("class", class_ids), ("support item", labels[support]), ("query item", labels[query])):
        bad = ~np.isin(ids, allowed)
        if bad.any():
            episode, _ = np.argwhere(bad)[0]
            if int(ids[bad][0]) < 0:  # labelled -1: an image held out of this purpose (the seen-class hold-out)
                raise LeakageError(f"{purpose} episode {episode} contains a {what} that is held out of {purpose} "
                                   "(the seen-class hold-out); the episode source ignores the hold-out")
            offender = class_names[int(ids[bad][0])]
            raise LeakageError(
                f"{purpose} episode {episode} contains a {what} of class '{offender}', which is not in "
                f"the split's {purpose} classes; the episode source leaks classes across the split"
            )
    n_way = class_ids.shape[1]
    expected_support = np.repeat(class_ids, support.shape[1] // n_way, axis=1)
    expected_query = np.repeat(class_ids, query.shape[1] // n_way, axis=1)
    if not (np.array_equal(labels[support], expected_support) and np.array_equal(labels[query], expected_query)):
        raise LeakageError(f"{purpose} episodes have items whose labels do not match their episode classes")


def derive_seed(seed: int, *parts: object) -> np.random.SeedSequence:
    """A seed sequence for ``seed`` specialised by ``parts`` (stable across processes and platforms)."""
    text = "|".join(str(p) for p in parts).encode()
    words = np.frombuffer(hashlib.sha256(text).digest()[:16], dtype=np.uint32)
    return np.random.SeedSequence([int(seed), *map(int, words)])
