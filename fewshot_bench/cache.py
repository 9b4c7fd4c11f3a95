"""An on-disk cache of decoded datasets, keyed by the source files and the preprocessing.

Decoding tens of thousands of images must not dominate a run: the first load decodes and stores the
uint8 arrays; later loads read them back. The key covers every source file's path, size and modification
time plus the decoding options, so any change to the data or the options produces a new entry.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from fewshot_bench.console import logger
from fewshot_bench.fileio import atomic_write_bytes


def cache_dir() -> Path:
    """``$FEWSHOT_BENCH_CACHE``, or ``~/.cache/fewshot-bench``."""
    return Path(os.environ.get("FEWSHOT_BENCH_CACHE", Path.home() / ".cache" / "fewshot-bench"))


def source_key(files: Iterable[Path], options: Any) -> str:
    """A hash of the files' paths, sizes and modification times, and the options."""
    digest = hashlib.sha256(repr(options).encode())
    for path in files:
        stat = path.stat()
        # os.fsencode: a file name need not be UTF-8 (its bytes are what the file system holds).
        digest.update(os.fsencode(path) + f"|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:20]


def cached_arrays(name: str, key: str, build: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Arrays stored under ``name-key``, built with ``build()`` and stored on a miss (or a damaged entry)."""
    path = cache_dir() / f"{name}-{key}.npz"
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
            logger.debug(f"{name}: decoded arrays read from the cache ({path})")
            return arrays
        except Exception:
            logger.debug(f"{name}: cache entry {path} is damaged; building it again")
    logger.debug(f"{name}: building the decoded arrays (cached afterwards in {path})")
    arrays = build()
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())
    return arrays
