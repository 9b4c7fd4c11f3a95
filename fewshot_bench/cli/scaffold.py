"""``bench new method|dataset|backbone|format NAME``: ready-to-edit plugin files (or small installable packages)
with tests that run the conformance kit (``fewshot_bench.testing``)."""

from __future__ import annotations

import re
from pathlib import Path

from fewshot_bench.errors import ConfigError

METHOD_TEMPLATE = '''"""{title}: TODO describe the method in a paragraph (what it compares, what it learns).

The starting point below is a working cosine-similarity prototype classifier written as the harness
recommends: a head on backbone features (``predict_features``), so episodes can be batched and the step
captured as a CUDA graph. Replace the head with your method; override ``loss_features`` if your objective is
not cross-entropy on the scores, or ``predict``/``loss`` if your method does not embed images once (MAML).
The whole contract is in docs/plugins.md ("The method contract").

@article{{TODO,
  title  = {{TODO}},
  author = {{TODO}},
  year   = {{TODO}}
}}
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fewshot_bench.method import FewShotMethod
from fewshot_bench.options import Option
from fewshot_bench.registry import register_method


@register_method("{name}")
class {cls}(FewShotMethod):
    """{title}: TODO one line shown by `bench list methods`."""

    paper = "TODO authors, title, venue year"
    default_backbone = "conv4"  # see `bench list backbones`
    options = (
        Option("temperature", float, 10.0, "multiplier of the cosine similarities", minimum=0.0),
    )
    # What else the method does is declared here; the harness picks a cell's stages from these and never probes
    # for anything else. Uncomment what differs from these defaults (docs/plugins.md, "What a method declares").
    # optimisation = Optimisation(lr=1e-3, lr_step=2000, lr_gamma=0.5, grad_clip=0.0, source="TODO the paper")
    # pretraining = None              # PretrainRecipe(epochs=..., ...): the paper's supervised pre-training stage
    # meta_trained = True             # False: no episodic training (Baseline, SimpleShot)
    # fits_training_classes = False   # True: implement fit_training_classes(training), called once after training
    # class_map_figure = False        # True: implement episode_class_maps(task), drawn by the feature-map figure
    # transductive = False            # True: predict uses the query set as a whole
    # compilable = True               # False: --compile leaves the backbone alone (swapped-in weights)
    # episodes_per_prediction = 1     # >1: implement predict_episodes(...) for that many test episodes at once
    # weight_layouts = {{}}             # {{"name": adapter(checkpoint) -> state_dict}} for other code's checkpoints
    # code_modules = ()               # modules besides this file whose code computes the method's numbers
    # Hooks with defaults, to override when they differ: embedding(feature_maps) -> (N, D) (flattened maps; the
    # pre-training head uses it), parameter_groups() -> [ParameterGroup(params, lr_scale)] (one group at the
    # variant's learning rate), clip_groups() (the backbone, then the rest, clipped separately by grad_clip).
    # Optimisation, PretrainRecipe, ParameterGroup and TrainingClasses come from fewshot_bench.method.

    def predict_features(self, support_features: torch.Tensor, support_labels: torch.Tensor,
                         query_features: torch.Tensor, n_way: int) -> torch.Tensor:
        """Scores (n_query, n_way) from the backbone's feature maps of the support and query images."""
        support_vectors, query_vectors = support_features.flatten(1), query_features.flatten(1)
        # Class means as a matrix product: no data-dependent indexing, so the step stays graph-capturable.
        one_hot = F.one_hot(support_labels, n_way).to(support_vectors.dtype)
        prototypes = (one_hot.t() @ support_vectors) / one_hot.sum(0).unsqueeze(1)
        similarity = F.normalize(query_vectors, dim=1) @ F.normalize(prototypes, dim=1).t()
        return self.config["temperature"] * similarity
'''

DATASET_TEMPLATE = '''"""{title}: TODO describe the dataset, its licence and where users obtain it.

Expected layout under ``--data-root``: ``<class name>/<image files>`` (TODO: adapt ``load`` to the format
your dataset is distributed in). Split presets live in ``{module}.yaml`` beside this file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fewshot_bench.data import DatasetPlugin, ImageDataset
from fewshot_bench.imageio import class_folder_files, decoded_dataset
from fewshot_bench.options import Option
from fewshot_bench.registry import register_dataset


@register_dataset("{name}")
class {cls}(DatasetPlugin):
    """{title}: TODO one line shown by `bench list datasets`."""

    where_to_get = "TODO: where users download it"
    # The side and channels images are decoded to unless a run sets --image-size / --channels (None: the
    # images' own); load() receives the run's choice as options["size"] and options["channels"].
    image_size, image_channels = 48, 1
    options = (
        Option("skip_corrupt", bool, False, "skip unreadable image files (reported) instead of failing"),
    )

    def load(self, root: Path | None, options: dict[str, Any]) -> ImageDataset:
        # <root>/<class>/<images>, decoded (and cached) at options["size"] × options["size"]
        return decoded_dataset("{name}", class_folder_files(root), options)
'''

BACKBONE_TEMPLATE = '''"""{title}: TODO describe the feature extractor (its architecture and where it comes from).

A backbone is a factory ``(in_channels) -> nn.Module`` whose module maps (n, in_channels, H, W) images to feature
maps (n, C', h, w); methods flatten or pool them themselves (``fewshot_bench.backbones.feature_shape`` gives
C', h, w for an image shape). A backbone that loads pre-trained weights declares the files with
``@loads_weights(path)`` (from ``fewshot_bench.backbones``), so their content enters every cell's settings hash.
The whole contract is in docs/plugins.md ("The backbone contract"). Use it with ``--backbone {name}`` or
``mymethod[backbone={name}]``.
"""

from __future__ import annotations

from torch import nn

from fewshot_bench.registry import register_backbone


def _block(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.BatchNorm2d(out_channels),
                         nn.ReLU(inplace=True), nn.MaxPool2d(2))


@register_backbone("{name}")
def {module}(in_channels: int) -> nn.Module:
    """{title}: TODO one line shown by `bench list backbones` (three conv blocks of 32-64-64 filters here)."""
    return nn.Sequential(_block(in_channels, 32), _block(32, 64), _block(64, 64))
'''

FORMAT_TEMPLATE = '''"""{title}: TODO what the output format is for.

A format renders every command's ``Report`` (accuracy tables, comparisons, the cross-dataset matrix, status):
a title, ``columns`` (``name``, ``align``), ``rows`` of entries and a ``caption`` that says what was measured.
``report.values(row)`` gives each entry as a ``Value`` (``text`` for people, ``data`` for machines, ``mark``:
best or tied) or None for an empty one. A pasted table must say what it is: keep the caption. The whole
contract is in docs/plugins.md ("The output-format contract"). Use it with ``--format {name}``.
"""

from __future__ import annotations

from fewshot_bench.registry import register_format
from fewshot_bench.report import BEST, EMPTY, TIED, Report, ReportFormat


@register_format("{name}")
class {cls}(ReportFormat):
    """{title}: TODO one line shown by `bench list formats` (plain text, ' | ' between entries, here)."""

    def render(self, report: Report) -> str:
        lines = [f"# {{report.title}}"] if report.title else []
        lines.append(" | ".join(column.name for column in report.columns))
        for row in report.rows:
            texts = []
            for value in report.values(row):
                mark = {{BEST: " (best)", TIED: " (tied)"}}.get(value.mark, "") if value is not None else ""
                texts.append(EMPTY if value is None else value.text + mark)
            lines.append(" | ".join(texts))
        if report.caption:
            lines.append(f"# {{report.caption}}")
        return "\\n".join(lines) + "\\n"
'''

DATASET_PRESETS = '''# Class splits of {name}: TODO name your classes. Train and test classes must be disjoint.
default: default
splits:
  default:
    train: [TODO_train_class_a, TODO_train_class_b, TODO_train_class_c]
    test: [TODO_test_class_a, TODO_test_class_b, TODO_test_class_c]
'''

FILE_TEST = '''"""Conformance test of the {name} plugin (run with pytest)."""

from pathlib import Path

from fewshot_bench.registry import {registry}, load_plugin_file
from fewshot_bench.testing import {check}

load_plugin_file(Path(__file__).with_name("{module}.py"))


def test_{module}_conforms():
    {check}({registry}.get("{name}"){extra})
'''

PACKAGE_TEST = '''"""Conformance test of the {name} plugin (run with pytest)."""

from {package}.{module} import {obj}
from fewshot_bench.testing import {check}


def test_{module}_conforms():
    {check}({obj}{extra})
'''

# The dataset's test generates a few images per class of its split presets in the layout the template's load()
# reads, so the scaffold's test passes as written and fails when load() or the presets break; once load() reads
# the dataset's own format, the test points at a small copy of the real data instead.
DATASET_SAMPLE = '''

def sample_root(folder: Path, presets: Path) -> Path:
    """Four generated 32×32 images per class named in the split presets, as <class>/<image>.png (the layout the
    template's load() reads). When load() reads your dataset's own format, return a small copy of it instead."""
    splits = yaml.safe_load(presets.read_text())["splits"]
    classes = sorted({{name for split in splits.values() for part in split.values() for name in part}})
    rng = np.random.default_rng(0)
    for name in classes:
        (folder / name).mkdir(parents=True)
        for index in range(4):
            Image.fromarray(rng.integers(0, 256, (32, 32), dtype=np.uint8)).save(folder / name / f"{{index}}.png")
    return folder
'''

DATASET_FILE_TEST = '''"""Conformance test of the {name} plugin (run with pytest)."""

from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from fewshot_bench.registry import DATASETS, load_plugin_file
from fewshot_bench.testing import check_dataset

load_plugin_file(Path(__file__).with_name("{module}.py"))
''' + DATASET_SAMPLE + '''

def test_{module}_conforms(tmp_path):
    root = sample_root(tmp_path, Path(__file__).with_name("{module}.yaml"))
    check_dataset(DATASETS.get("{name}"), root=root)
'''

DATASET_PACKAGE_TEST = '''"""Conformance test of the {name} plugin (run with pytest)."""

from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from {package} import {module} as plugin_module
from fewshot_bench.testing import check_dataset
''' + DATASET_SAMPLE + '''

def test_{module}_conforms(tmp_path):
    root = sample_root(tmp_path, Path(plugin_module.__file__).with_name("{module}.yaml"))
    check_dataset(plugin_module.{cls}, root=root)
'''

PYPROJECT = '''[build-system]
requires = ["setuptools>=77"]
build-backend = "setuptools.build_meta"

[project]
name = "{dist}"
version = "0.1.0"
description = "{title} for fewshot-bench"
requires-python = ">=3.10"
dependencies = ["fewshot-bench"]

[project.entry-points."fewshot_bench.{group}"]
{name} = "{package}.{module}:{obj}"

[tool.setuptools]
packages = ["{package}"]

[tool.setuptools.package-data]
"{package}" = ["*.yaml"]
'''


def _identifiers(name: str) -> tuple[str, str]:
    if not re.fullmatch(r"[a-z][a-z0-9_-]*", name):
        raise ConfigError(f"plugin name '{name}' must start with a letter and use only a-z, 0-9, '-' and '_'")
    module = name.replace("-", "_")
    cls = "".join(part.capitalize() for part in re.split(r"[-_]", name))
    return module, cls


def _write(path: Path, text: str) -> Path:
    if path.exists():
        raise ConfigError(f"'{path}' already exists; choose another name or folder")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _check_name_is_free(kind: str, name: str, dist: str | None) -> None:
    """A plugin named like a registered one could not be registered beside it, and a package named like an
    installed one would replace it on ``pip install``: say so now rather than then."""
    import importlib.metadata

    from fewshot_bench.registry import BACKBONES, DATASETS, FORMATS, METHODS

    registry = {"method": METHODS, "dataset": DATASETS, "backbone": BACKBONES, "format": FORMATS}[kind]
    if name in registry:
        raise ConfigError(f"a {kind} named '{name}' is already registered ({registry.entry(name).source}); "
                          "choose another name")
    if dist is not None:
        try:
            installed = importlib.metadata.distribution(dist)
        except importlib.metadata.PackageNotFoundError:
            return
        raise ConfigError(f"a package named '{dist}' is already installed (version {installed.version}); "
                          "installing the new one would replace it: choose another name")


# Per kind: the template, the conformance check, the registry, the check's extra arguments, and the object the
# registry holds (a class, or the backbone's factory function).
KINDS = {
    "method": (METHOD_TEMPLATE, "check_method", "METHODS", "", "{cls}"),
    "dataset": (DATASET_TEMPLATE, "check_dataset", "DATASETS", "", "{cls}"),
    "backbone": (BACKBONE_TEMPLATE, "check_backbone", "BACKBONES", "", "{module}"),
    "format": (FORMAT_TEMPLATE, "check_format", "FORMATS", "", "{cls}"),
}


def scaffold(kind: str, name: str, out: Path, package: bool = False) -> list[Path]:
    """Write a plugin of ``kind`` (method, dataset, backbone or format) called ``name`` into ``out``; return the
    files."""
    module, cls = _identifiers(name)
    _check_name_is_free(kind, name, f"fewshot-bench-{name}" if package else None)
    title = name.replace("-", " ").replace("_", " ").title()
    template, check, registry, extra, obj = KINDS[kind]
    fields = dict(name=name, module=module, cls=cls, title=title, check=check, registry=registry, extra=extra)
    fields["obj"] = obj.format(**fields)
    written = []
    if not package:
        written.append(_write(out / f"{module}.py", template.format(**fields)))
        if kind == "dataset":
            written.append(_write(out / f"{module}.yaml", DATASET_PRESETS.format(**fields)))
        test = DATASET_FILE_TEST if kind == "dataset" else FILE_TEST
        written.append(_write(out / f"test_{module}.py", test.format(**fields)))
        return written
    dist = f"fewshot-bench-{name}"
    package_name = f"fewshot_bench_{module}"
    root = out / dist
    fields.update(dist=dist, package=package_name, group=f"{kind}s")
    written.append(_write(root / "pyproject.toml", PYPROJECT.format(**fields)))
    written.append(_write(root / package_name / "__init__.py", f'"""{title} plugin for fewshot-bench."""\n'))
    # Inside a package the entry point registers the object; the decorator would register it a second time.
    body = template.format(**fields).replace(f'@register_{kind}("{name}")\n', "")
    body = body.replace(f"from fewshot_bench.registry import register_{kind}\n", "")
    written.append(_write(root / package_name / f"{module}.py", body))
    if kind == "dataset":
        written.append(_write(root / package_name / f"{module}.yaml", DATASET_PRESETS.format(**fields)))
    test = DATASET_PACKAGE_TEST if kind == "dataset" else PACKAGE_TEST
    written.append(_write(root / "tests" / f"test_{module}.py", test.format(**fields)))
    return written
