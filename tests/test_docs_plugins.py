"""Executes every command of docs/plugins.md, in order, in an empty folder (so the tutorial cannot rot),
and exercises the example external package in examples/plugin-package.

The tutorial adds files where the harness is installed (a plugin in its ``methods/`` folder, a package beside
it), so it runs in a throwaway virtual environment with a non-editable copy of this project: it never writes into
the source tree or into the environment running the tests."""

import importlib.metadata
import os
import re
import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from conftest import REPO

DOC = REPO / "docs" / "plugins.md"
# What building the project reads (pyproject.toml's packages and package-dir, its readme).
PROJECT_FILES = ("pyproject.toml", "README.md", "fewshot_bench", "methods", "datasets")
# pip's own console script, for the venv's Python (the venv has no pip of its own).
PIP_SCRIPT = "#!{python}\nimport sys\nfrom pip._internal.cli.main import main\nsys.exit(main())\n"


def bash_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def throwaway_environment(root: Path) -> dict[str, str]:
    """A virtual environment under ``root`` with its own non-editable copy of the project; returns a process
    environment that puts its ``bin`` first on PATH.

    The venv has no packages of its own besides the project, but a ``.pth`` file naming the test interpreter's
    site-packages folders, which gives it torch and the rest. A path line of a ``.pth`` only appends its folder
    to ``sys.path``: the venv's own site-packages (with the copy of fewshot_bench) comes first, and the ``.pth``
    files inside the appended folders (such as the finder of an editable install) never run. ``pip`` is the
    test interpreter's pip run by the venv's Python, so it installs into and uninstalls from the venv only."""
    venv, source = root / "venv", root / "source"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=root, check=True)
    python = venv / "bin" / "python"
    own = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         cwd=root, check=True, capture_output=True, text=True).stdout.strip()
    paths = sysconfig.get_paths()
    parents = [p for p in dict.fromkeys([*site.getsitepackages(), paths["purelib"], paths["platlib"]])
               if os.path.isdir(p)]
    (Path(own) / "_test_interpreter.pth").write_text("".join(f"{p}\n" for p in parents))
    (venv / "bin" / "pip").write_text(PIP_SCRIPT.format(python=python))
    (venv / "bin" / "pip").chmod(0o755)
    # Built from a copy: building a folder writes build/ and *.egg-info into it.
    source.mkdir()
    for name in PROJECT_FILES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(REPO / name, source / name)
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}", VIRTUAL_ENV=str(venv), PYTHONNOUSERSITE="1")
    built = subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                            str(source)], cwd=root, env=env, capture_output=True, text=True)
    assert built.returncode == 0, f"installing the project into the throwaway environment failed:\n{built.stderr}"
    where = subprocess.run([str(python), "-c", "import fewshot_bench.methods as m; print(m.__file__)"],
                           cwd=root, check=True, env=env, capture_output=True, text=True).stdout.strip()
    assert Path(where).is_relative_to(venv), f"the throwaway environment imports fewshot_bench from {where}"
    return env


def test_tutorial_commands_all_succeed(tmp_path):
    blocks = bash_blocks(DOC.read_text())
    assert len(blocks) >= 6
    env = throwaway_environment(tmp_path)
    folder = tmp_path / "tutorial"
    folder.mkdir()
    outputs = []
    for block in blocks:
        result = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=folder, env=env,
                                capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"block failed:\n{block}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
        outputs.append(result.stdout)
    joined = "\n".join(outputs)
    assert "| cosine-proto |" in joined and "| crn |" in joined  # the table of step 3
    assert "package fewshot-bench-cosine-proto 0.1.0" in joined
    assert '"query_census": {' in joined  # the stage added in "The cell pipeline, and adding a stage"
    # Nothing reached the source tree or the environment running the tests.
    assert not (REPO / "methods" / "cosine_proto.py").exists()
    with pytest.raises(importlib.metadata.PackageNotFoundError):
        importlib.metadata.distribution("fewshot-bench-cosine-proto")


def test_example_plugin_package_is_installed_and_runs(tmp_path, capsys):
    from importlib.metadata import PackageNotFoundError, version

    try:
        version("fewshot-bench-cosine")
    except PackageNotFoundError:
        if os.environ.get("CI"):
            raise AssertionError("scripts/setup.sh --dev must install examples/plugin-package")
        pytest.skip("examples/plugin-package is not installed (scripts/setup.sh --dev installs it)")
    from fewshot_bench.cli.main import main

    assert main(["list", "methods"]) == 0
    assert re.search(r"cosine\s.*package fewshot-bench-cosine 0.1.0", capsys.readouterr().out)
    args = ["run", "--methods", "cosine,protonet", "--shots", "1", "--train-episodes", "3", "--test-episodes", "5",
            "--query", "3", "--dataset-option", "total=400", "--image-size", "24", "--device", "cpu",
            "--output-dir", str(tmp_path), "--run-id", "example"]
    assert main(args) == 0
    import json

    cells = [json.loads(p.read_text()) for p in (tmp_path / "example" / "cells").glob("*.json")]
    cosine = next(c for c in cells if c["method"] == "cosine")
    assert cosine["method_source"] == "package fewshot-bench-cosine 0.1.0" and cosine["method_version"] == "0.1.0"
