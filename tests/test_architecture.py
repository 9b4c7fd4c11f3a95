"""The package's folders are its layers: a module imports only from its own layer and those above it, and
plugins (methods/, datasets/, and so the docs' examples) use only the top-level plugin API."""

import ast
from pathlib import Path

from conftest import REPO

# Top to bottom; a layer may import from itself and from any layer before it.
LAYERS = {"": 0, "episodic": 1, "results": 2, "engine": 3, "stages": 3, "context": 3, "fingerprint": 4, "reporting": 4,
          "formats": 4, "cli": 5}
# Top-level modules that sit on the whole harness, like the CLI: the conformance kit runs cells.
FRONT_DOORS = {"testing.py": "cli"}


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
    return [n for n in names if n.startswith("fewshot_bench.")]


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 and parts[1] in LAYERS else ""


def test_no_module_imports_from_a_layer_below_its_own():
    upward = []
    for path in sorted((REPO / "fewshot_bench").rglob("*.py")):
        if path.name == "__main__.py":  # the entry point runs the CLI
            continue
        rel = path.relative_to(REPO / "fewshot_bench")
        mine = rel.parts[0] if len(rel.parts) > 1 else FRONT_DOORS.get(rel.name, "")
        for name in _imports(path):
            if name.startswith(("fewshot_bench.methods", "fewshot_bench.datasets")):
                continue
            if LAYERS[_layer(name)] > LAYERS[mine]:
                upward.append(f"{rel} ({mine or 'top'}) imports {name}")
    assert not upward, upward


def test_plugins_use_only_the_top_level_plugin_api():
    deep = [f"{path.relative_to(REPO)} imports {name}"
            for folder in ("methods", "datasets") for path in sorted((REPO / folder).glob("*.py"))
            for name in _imports(path)
            if _layer(name) and not name.startswith(("fewshot_bench.methods", "fewshot_bench.datasets"))]
    assert not deep, deep


def test_the_engine_and_reporting_never_probe_a_method_for_attributes():
    """Capabilities are declared on FewShotMethod; nothing in engine/, stages/ or reporting/ asks a method (or
    its class) whether it has something (getattr/hasattr/issubclass on methods)."""
    probes = []
    for folder in ("engine", "stages", "reporting"):
        for path in sorted((REPO / "fewshot_bench" / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                        and node.func.id in ("getattr", "hasattr", "issubclass") and node.args):
                    subject = ast.unparse(node.args[0])
                    if any(word in subject.lower() for word in ("method", "variant", "model", "cls")):
                        probes.append(f"{path.relative_to(REPO)}:{node.lineno} {ast.unparse(node)}")
    assert not probes, probes
