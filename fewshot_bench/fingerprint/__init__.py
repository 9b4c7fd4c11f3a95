"""Behavioural fingerprints of method variants: what a variant's cells observably compute on a fixed, tiny,
seeded CPU problem (``probe``), and how two fingerprints differ within a tolerance (``compare``). A published
record goes stale when its variant's fingerprint changes, not when source bytes do.

Importing this package imports neither torch nor the harness; ``probe`` does, when it is imported itself.
"""
