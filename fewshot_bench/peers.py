"""Optional peer libraries (learn2learn, easyfsl), imported lazily and quietly.

The core never imports them; tests and benchmarks that compare against them do, through these helpers.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from types import ModuleType

from fewshot_bench.errors import BenchError


def import_learn2learn() -> ModuleType:
    """Import learn2learn without the "gym is unmaintained" notice its gym dependency prints on import."""
    try:
        with contextlib.redirect_stderr(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import learn2learn
    except ImportError:
        raise BenchError("learn2learn is not installed (it is the optional extra 'learn2learn': pip install "
                         "'fewshot-bench[learn2learn]' on Python < 3.11; on Python >= 3.11, which it has no wheel "
                         "for, bash scripts/setup.sh --learn2learn builds it into .venv)") from None
    return learn2learn
