"""``bench`` commands run inside the test process.

Every ``python -m fewshot_bench`` pays seconds of interpreter start-up (importing torch, torchvision, scipy)
before doing anything; tests whose point is not the process itself (signals, a killed process, what a
process writes to its log file) run the command here instead, through the same ``main`` as the CLI.
"""

from __future__ import annotations

import torch

from fewshot_bench.cli.main import main
from fewshot_bench.console import setup_logging


def bench_here(*args) -> int:
    """The exit code of ``bench ARGS`` run in this process. What a command sets process-wide is undone
    afterwards: torch's thread count (``--threads``, a run's saved config) and the log level (``-q``/``-v``)."""
    threads = torch.get_num_threads()
    try:
        return main([str(arg) for arg in args])
    finally:
        torch.set_num_threads(threads)
        setup_logging(0)
