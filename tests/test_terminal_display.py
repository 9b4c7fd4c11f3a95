"""The live display in a real terminal: `bench run` inside tmux (a pseudo-terminal of 100×30), its screen read
back with capture-pane. Before one console was shared, the per-cell result lines were lost, finished bars stayed
on screen and the caption was wrapped mid-word."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

import apt_packages
from fewshot_bench.report import BEST_NOTE, PLAIN_BEST_NOTE

BENCH = str(Path(sys.executable).with_name("bench"))
SIZE = ("100", "30")


def _tmux() -> str:
    found = shutil.which("tmux")
    if found:
        return found
    failed = apt_packages.install(["tmux"])
    if failed:
        pytest.skip(f"tmux is missing and could not be installed: {failed}")
    found = shutil.which("tmux")
    if not found:
        pytest.skip("tmux was installed, yet it is not on PATH")
    return found


@pytest.fixture
def terminal():
    """Runs a command in a detached tmux session of its own server; returns the whole screen and scroll-back
    once the command has printed its exit marker."""
    tmux, socket = _tmux(), f"bench-test-{uuid.uuid4().hex[:8]}"

    def screen(command: str, timeout: float = 240) -> str:
        marker = "EXIT-STATUS="
        shell = f"{command}; echo {marker}$?; sleep 600"
        # The terminal's own size, not a COLUMNS/LINES that pytest or a CI shell may have exported.
        environment = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
        environment["TERM"] = "xterm-256color"
        subprocess.run([tmux, "-L", socket, "new-session", "-d", "-s", "t", "-x", SIZE[0], "-y", SIZE[1], shell],
                       check=True, env=environment)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = subprocess.run([tmux, "-L", socket, "capture-pane", "-p", "-S", "-", "-t", "t"],
                                  capture_output=True, text=True).stdout
            if marker in text:
                return text
            time.sleep(0.5)
        raise AssertionError(f"the command did not finish in {timeout} s; its screen:\n{text}")

    yield screen
    subprocess.run([tmux, "-L", socket, "kill-server"], capture_output=True)


def test_a_run_in_a_terminal_keeps_every_cell_line_no_stale_bar_and_whole_words(terminal, tmp_path):
    flags = ["--methods", "protonet,relationnet", "--shots", "1", "--train-episodes", "4", "--test-episodes", "6",
             "--image-size", "24", "--query", "3", "--dataset-option", "total=500", "--dataset-option",
             "identities=20", "--context", "none", "--output-dir", str(tmp_path / "runs"), "--run-id", "tty",
             "--log-interval", "2", "--device", "cpu"]
    text = terminal("OMP_NUM_THREADS=1 " + shlex.join([BENCH, "run", *flags]))
    assert "EXIT-STATUS=0" in text, text
    # One result line per cell, printed above the bars rather than erased with them.
    for label in ("protonet", "relationnet"):
        assert any(label in line and "1-shot seed 0:" in line for line in text.splitlines()), text
    # The bars are transient: nothing of them stays once the run ends.
    bars = [line for line in text.splitlines() if line.startswith(("cells ", "train ", "test  "))]
    assert not bars, text
    # The caption wraps at words: the screen's lines, joined, give back the caption a pipe prints unbroken.
    piped = subprocess.run([BENCH, "table", "tty", "--output-dir", str(tmp_path / "runs")], capture_output=True,
                           text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    caption = next(line for line in piped.stdout.splitlines() if line.startswith("synthetic-fer, split paper."))
    shown = text[text.index("synthetic-fer, split paper."):text.index("results:")]
    # (The one difference: a terminal shows the best entry in bold, a pipe stars it, and each caption says so.)
    assert PLAIN_BEST_NOTE in caption and BEST_NOTE in shown
    assert " ".join(shown.split()) == " ".join(caption.replace(PLAIN_BEST_NOTE, BEST_NOTE).split()), (shown, caption)
    assert all(len(line) <= int(SIZE[0]) for line in shown.splitlines())
