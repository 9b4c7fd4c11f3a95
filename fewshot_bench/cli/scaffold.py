"""``bench new method|dataset NAME``: ready-to-edit plugin files (or small installable packages) with tests."""

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

from {package}.{module} import {cls}
from fewshot_bench.testing import {check}


def test_{module}_conforms():
    {check}({cls}{extra})
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
{name} = "{package}.{module}:{cls}"

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

    from fewshot_bench.registry import DATASETS, METHODS

    registry = METHODS if kind == "method" else DATASETS
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


def scaffold(kind: str, name: str, out: Path, package: bool = False) -> list[Path]:
    """Write a plugin of ``kind`` ('method' or 'dataset') called ``name`` into ``out``; return the files."""
    module, cls = _identifiers(name)
    _check_name_is_free(kind, name, f"fewshot-bench-{name}" if package else None)
    title = name.replace("-", " ").replace("_", " ").title()
    template = METHOD_TEMPLATE if kind == "method" else DATASET_TEMPLATE
    check = "check_method" if kind == "method" else "check_dataset"
    registry = "METHODS" if kind == "method" else "DATASETS"
    extra = "" if kind == "method" else ', root="TODO/path/to/a/small/copy"'
    fields = dict(name=name, module=module, cls=cls, title=title, check=check, registry=registry, extra=extra)
    written = []
    if not package:
        written.append(_write(out / f"{module}.py", template.format(**fields)))
        if kind == "dataset":
            written.append(_write(out / f"{module}.yaml", DATASET_PRESETS.format(**fields)))
        written.append(_write(out / f"test_{module}.py", FILE_TEST.format(**fields)))
        return written
    dist = f"fewshot-bench-{name}"
    package_name = f"fewshot_bench_{module}"
    root = out / dist
    fields.update(dist=dist, package=package_name, group=f"{kind}s")
    written.append(_write(root / "pyproject.toml", PYPROJECT.format(**fields)))
    written.append(_write(root / package_name / "__init__.py", f'"""{title} plugin for fewshot-bench."""\n'))
    # Inside a package the entry point registers the class; the decorator would register it a second time.
    body = template.format(**fields).replace(f'@register_{kind}("{name}")\n', "")
    body = body.replace(f"from fewshot_bench.registry import register_{kind}\n", "")
    written.append(_write(root / package_name / f"{module}.py", body))
    if kind == "dataset":
        written.append(_write(root / package_name / f"{module}.yaml", DATASET_PRESETS.format(**fields)))
    written.append(_write(root / "tests" / f"test_{module}.py", PACKAGE_TEST.format(**fields)))
    return written
