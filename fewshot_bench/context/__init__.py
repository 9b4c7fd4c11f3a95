"""Context rows: what a run's method rows are worth, measured beside them on the same data.

A method's accuracy on unseen classes means little alone: 38 % at 3-way is 5 points above chance, but is it above
what an untrained network gets, and below what the data allows? Three references answer that, computed by the
runner next to the methods (``--context``):

* ``floor`` — nearest class mean on the run's own test episodes, on raw (normalised) pixels and on a randomly
  initialised copy of each backbone the run uses (``fewshot_bench.context.floor``). No training, no labels
  beyond each episode's support set: what a method must clear to have learnt anything that transfers.
* ``seen`` — every method also evaluated on episodes of the *training* classes, drawn from a seeded, recorded
  image-level hold-out that meta-training and pre-training never see (``fewshot_bench.episodic.holdout`` and the
  ``evaluate_seen`` stage): whether the code learns at all, apart from whether what it learns transfers.
* ``ceiling`` — a backbone trained, supervised, on a seeded 75 % of the test classes' images, reported as
  balanced accuracy on the other 25 % and as few-shot accuracy (nearest class mean in those features) on episodes
  drawn from them (``fewshot_bench.context.ceiling``). It uses test-class labels: a reference for what the
  images allow, never a result.

Context rows are stored apart from the cells (``context/`` in the run folder), shown in their own block of every
table, marked in the leaderboard, and never ranked, bolded or pooled with methods.
"""

from __future__ import annotations

from fewshot_bench.config import CONTEXT_KINDS  # noqa: F401  (declared with the settings, re-exported here)
# What a reader is told about each kind (table captions, the card, the leaderboard's note).
KIND_NOTES = {
    "floor": "nearest class mean on the test episodes with no training (raw pixels, randomly initialised backbones)",
    "seen": "the same method on episodes of held-out images of its training classes (not the unseen test classes)",
    "ceiling": ("uses test-class labels: a backbone trained on 75 % of the test classes' images; balanced accuracy "
                "and nearest-class-mean accuracy on episodes of the other 25 %, not the run's test episodes"),
}

