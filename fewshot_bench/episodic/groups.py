"""Groups of images that are not independent: a subject (the person who posed) and a sub-group (one recording
or expression sequence of that person).

Lab FER datasets hold many frames of one sequence and many images of one poser. A query whose subject (or
sequence) also sits in its episode's support is recognised by who it is, not by its expression: accuracy is
inflated and says nothing about unseen people. A dataset plugin declares groups per image in its metadata
(``metadata["groups"]``, ``metadata["subgroups"]``: one text per image; a sub-group is qualified by its group);
``--group-separation`` then keeps them apart:

* ``subgroup``: no query of an episode shares a sub-group (sequence) with any support image of the episode;
* ``group``: no query shares a group (subject) with any support image;
* ``split``: as ``group``, and the groups are divided (seeded, ``--group-holdout`` of them for testing) so that
  no subject whose images train is ever in a test or validation episode, and the seen-class hold-out is whole
  subjects.

Whatever the setting, every cell records how many support/query pairs of its test episodes share a group and a
sub-group (``group_leak``), and tables warn when that is not 0.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fewshot_bench.errors import DatasetError

SEPARATIONS = ("none", "subgroup", "group", "split")
DEFAULT_GROUP_HOLDOUT = 0.5


def group_codes(metadata: dict[str, Any], level: str, n_images: int) -> np.ndarray | None:
    """(N,) int64 codes of each image's group (``level`` "group") or sub-group ("subgroup"), equal codes for
    equal texts; None when the dataset declares none. Sub-groups without groups are their own groups."""
    key = "subgroups" if level == "subgroup" else "groups"
    values = metadata.get(key)
    if values is None and level == "group":
        values = metadata.get("subgroups")  # a sequence belongs to one subject: without subjects, it is one
    if values is None:
        return None
    values = np.asarray(values, dtype=object)
    if len(values) != n_images:
        raise DatasetError(f"the dataset declares {len(values)} {key} for {n_images} images; a dataset plugin must "
                           f"give one {key[:-1]} per image")
    _, codes = np.unique(values.astype(str), return_inverse=True)
    return codes.reshape(-1).astype(np.int64)


def episode_group_leak(support: np.ndarray, query: np.ndarray, codes: np.ndarray | None) -> dict[str, int] | None:
    """For stacked episodes ((E, S) support and (E, Q) query dataset indices): how many (support, query) pairs
    of one episode share a code, how many queries share one with any support image of their episode, and in how
    many episodes that happens; None without codes."""
    if codes is None:
        return None
    s = codes[support]                    # (E, S)
    q = codes[query]                      # (E, Q)
    same = q[:, :, None] == s[:, None, :]  # (E, Q, S)
    queries = same.any(axis=2)
    return {"pairs": int(same.sum()), "queries": int(queries.sum()), "episodes": int(queries.any(axis=1).sum()),
            "query_total": int(q.size)}


def episode_pair_leak(support: np.ndarray, query: np.ndarray, pairs: np.ndarray, n_images: int) -> dict[str, int]:
    """Like ``episode_group_leak`` for an explicit list of (i, j) image pairs (near-duplicates): how many
    (support, query) pairs of one episode are such a pair, how many queries have one, in how many episodes."""
    e, k = support.shape
    found = np.zeros(query.shape, dtype=bool)
    total = 0
    if len(pairs):
        keys = np.unique(np.concatenate([pairs[:, 0] * n_images + pairs[:, 1], pairs[:, 1] * n_images + pairs[:, 0]]))
        combos = query[:, :, None].astype(np.int64) * n_images + support[:, None, :]  # (E, Q, S)
        hit = np.isin(combos, keys)
        found = hit.any(axis=2)
        total = int(hit.sum())
    return {"pairs": total, "queries": int(found.sum()), "episodes": int(found.any(axis=1).sum()),
            "query_total": int(query.size)}


def group_partition(codes: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    """(n_groups,) bool: which groups are for testing — ``round(share × groups)`` of them (at least one, and at
    least one left for training), drawn by ``rng``."""
    n = int(codes.max()) + 1 if len(codes) else 0
    if n < 2:
        raise DatasetError(f"--group-separation split needs at least 2 groups (subjects), the dataset has {n}; use "
                           "--group-separation group")
    count = min(n - 1, max(1, int(round(share * n))))
    test = np.zeros(n, dtype=bool)
    test[rng.choice(n, count, replace=False)] = True
    return test
