"""Typed, lazily loaded registries of methods, datasets and backbones.

Three sources fill a registry, in this order, the first time it is consulted:

1. built-ins: every module of the registry's package (``fewshot_bench.methods`` for methods, ...), which
   registers its objects with a decorator such as ``@register_method("protonet")``; a file dropped into
   the ``methods/`` folder is therefore picked up without any change elsewhere;
2. installed packages, through the entry-point groups ``fewshot_bench.methods``,
   ``fewshot_bench.datasets`` and ``fewshot_bench.backbones``;
3. single files given with ``bench run --plugin path/to/file.py`` (:func:`load_plugin_file`).

A plugin that fails to import produces a one-line warning naming it and is skipped: it can never break
``bench --help`` or ``bench list``.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import pkgutil
import sys
from dataclasses import dataclass
from pathlib import Path
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, Any, Callable, Generic, Iterator, TypeVar

from fewshot_bench.console import logger, warn
from fewshot_bench.errors import BenchError, UnknownNameError, did_you_mean

if TYPE_CHECKING:  # for the registries' types only: those modules import this one
    from torch import nn

    from fewshot_bench.data import DatasetPlugin
    from fewshot_bench.method import FewShotMethod
    from fewshot_bench.report import ReportFormat
    from fewshot_bench.stages import Stage

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """A registered object with its name, one-line description and where it came from."""

    name: str
    obj: T
    description: str
    source: str
    version: str


def first_line(text: str | None) -> str:
    """The first sentence-paragraph of a docstring (its lines up to the first blank one, joined), or ""."""
    paragraph: list[str] = []
    for line in (text or "").strip().splitlines():
        if not line.strip():
            if paragraph:
                break
            continue
        paragraph.append(line.strip())
    return " ".join(paragraph)


class Registry(Generic[T]):
    """A name → object mapping for one kind of plugin (method, dataset or backbone)."""

    def __init__(self, kind: str, builtin_package: str, entry_point_group: str) -> None:
        self.kind = kind
        self.builtin_package = builtin_package
        self.entry_point_group = entry_point_group
        self._entries: dict[str, Entry[T]] = {}
        self._loaded = False
        self._loading = False
        # Set while a module is being imported, so decorators know where their objects come from.
        self._current_source: tuple[str, str] | None = None

    # -- registration -------------------------------------------------------------------------
    def register(self, name: str, *, description: str | None = None) -> Callable[[T], T]:
        """Decorator registering a class or factory under ``name``."""

        def decorator(obj: T) -> T:
            self.add(name, obj, description=description)
            return obj

        return decorator

    def add(self, name: str, obj: T, *, description: str | None = None, source: str | None = None,
            version: str | None = None) -> None:
        """Register ``obj`` under ``name``; a second, different object with the same name is an error."""
        default_source, default_version = self._current_source or (_module_source(obj), "")
        if default_source == "built-in" and not default_version:
            default_version = _package_version()
        existing = self._entries.get(name)
        if existing is not None:
            if _same_object(existing.obj, obj):
                return
            raise BenchError(
                f"duplicate {self.kind} name '{name}': registered by {existing.source} and again by "
                f"{source or default_source}; rename one of them"
            )
        if hasattr(obj, "__dict__") and isinstance(obj, type):
            obj.registered_name = name  # type: ignore[attr-defined]
        self._entries[name] = Entry(
            name=name,
            obj=obj,
            description=description or first_line(getattr(obj, "__doc__", "")),
            source=source or default_source,
            version=version or default_version,
        )

    # -- lookup -----------------------------------------------------------------------------------
    def get(self, name: str) -> T:
        """The object registered as ``name``; unknown names raise with the available ones."""
        return self.entry(name).obj

    def entry(self, name: str) -> Entry[T]:
        """The full :class:`Entry` registered as ``name``."""
        self.load()
        if name not in self._entries:
            available = ", ".join(self.names()) or "none"
            raise UnknownNameError(f"unknown {self.kind} '{name}'; {did_you_mean(name, self.names())}available: "
                                   f"{available}")
        return self._entries[name]

    def names(self) -> list[str]:
        self.load()
        return sorted(self._entries)

    def entries(self) -> list[Entry[T]]:
        self.load()
        return [self._entries[name] for name in sorted(self._entries)]

    def __contains__(self, name: str) -> bool:
        self.load()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    # -- loading ----------------------------------------------------------------------------------
    def load(self) -> None:
        """Import built-ins and entry points once; broken plugins are reported and skipped."""
        if self._loaded or self._loading:
            return
        self._loading = True
        try:
            self._load_builtins()
            self._load_entry_points()
        finally:
            self._loading = False
            self._loaded = True

    @contextmanager
    def attributed_to(self, source: str, version: str) -> Iterator[None]:
        """Attribute what is registered inside the block to ``source`` (e.g. ``file /x/my.py``) at ``version``:
        the origin `bench list` shows and every cell record keeps."""
        previous = self._current_source
        self._current_source = (source, version)
        try:
            yield
        finally:
            self._current_source = previous

    def _load_builtins(self) -> None:
        try:
            with self.attributed_to("built-in", _package_version()):
                package = importlib.import_module(self.builtin_package)
        except Exception as exc:  # pragma: no cover - the package ships with us
            warn(f"could not import built-in {self.kind}s from {self.builtin_package}: {exc}")
            return
        if not hasattr(package, "__path__"):  # a plain module registers its objects on import
            return
        for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
            if info.name.startswith("_"):
                continue
            module_name = f"{self.builtin_package}.{info.name}"
            self._import_as(module_name, "built-in", _package_version(), module_name)

    def _load_entry_points(self) -> None:
        for ep in importlib.metadata.entry_points(group=self.entry_point_group):
            dist = getattr(ep, "dist", None)
            dist_name = dist.metadata["Name"] if dist is not None else ep.value.split(":")[0]
            version = dist.version if dist is not None else ""
            source = f"package {dist_name} {version}".strip()
            try:
                with self.attributed_to(source, version):
                    obj = ep.load()
            except Exception as exc:
                warn(f"{self.kind} plugin '{ep.name}' ({ep.value}) failed to load and was skipped: "
                     f"{type(exc).__name__}: {exc}")
                continue
            if ep.name not in self._entries and not _is_module(obj):
                try:
                    self.add(ep.name, obj, source=source, version=version)
                except BenchError as exc:
                    warn(str(exc))

    def _import_as(self, module_name: str, source: str, version: str, label: str) -> None:
        try:
            with self.attributed_to(source, version):
                importlib.import_module(module_name)
        except BenchError as exc:
            warn(f"{self.kind} plugin '{label}' was skipped: {exc}")
        except Exception as exc:
            warn(f"{self.kind} plugin '{label}' failed to import and was skipped: "
                 f"{type(exc).__name__}: {exc}")


def _package_version() -> str:
    from fewshot_bench import __version__

    return __version__


def _is_module(obj: Any) -> bool:
    return type(obj).__name__ == "module"


def _same_object(a: Any, b: Any) -> bool:
    if a is b:
        return True
    # The same class imported twice under one qualified name (e.g. a module reloaded) is not a clash.
    return (getattr(a, "__module__", None), getattr(a, "__qualname__", None)) == (
        getattr(b, "__module__", object()), getattr(b, "__qualname__", object()))


def _module_source(obj: Any) -> str:
    module = getattr(obj, "__module__", "") or ""
    if module.startswith("fewshot_bench.") and not module.startswith("fewshot_bench_plugin_"):
        # Imported directly (e.g. `from fewshot_bench.methods.protonet import ProtoNet`) before the
        # registry loaded it: still one of ours.
        return "built-in"
    return f"module {module}" if module else "unknown"


METHODS: Registry[type[FewShotMethod]] = Registry("method", "fewshot_bench.methods", "fewshot_bench.methods")
DATASETS: Registry[type[DatasetPlugin]] = Registry("dataset", "fewshot_bench.datasets", "fewshot_bench.datasets")
# A backbone is a factory: input channels -> module returning feature maps.
BACKBONES: Registry[Callable[[int], nn.Module]] = Registry("backbone", "fewshot_bench.backbones",
                                                           "fewshot_bench.backbones")

FORMATS: Registry[type[ReportFormat]] = Registry("report format", "fewshot_bench.formats", "fewshot_bench.formats")
# The steps of a cell's pipeline (pre-training, meta-training, ...), each applied where a variant declares it.
STAGES: Registry[type[Stage]] = Registry("stage", "fewshot_bench.stages", "fewshot_bench.stages")

register_method = METHODS.register
register_dataset = DATASETS.register
register_backbone = BACKBONES.register
register_format = FORMATS.register
register_stage = STAGES.register
PLUGIN_REGISTRIES = (METHODS, DATASETS, BACKBONES, FORMATS, STAGES)

_loaded_files: dict[Path, str] = {}


def file_fingerprint(path: Path) -> str:
    """Short sha256 of a file's bytes: the version of a single-file plugin."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def load_plugin_file(path: str | Path) -> None:
    """Import a single plugin file; whatever it registers is attributed to that file.

    Unlike packaged plugins, a file the user names explicitly must work: errors are raised, not warned.
    """
    file = Path(path).expanduser().resolve()
    if file in _loaded_files:
        return
    if not file.is_file():
        raise BenchError(f"plugin file '{path}' does not exist; pass the path of a .py file")
    version = f"sha256:{file_fingerprint(file)}"
    module_name = f"fewshot_bench_plugin_{file.stem}_{version[7:]}"
    spec = importlib.util.spec_from_file_location(module_name, file)
    if spec is None or spec.loader is None:
        raise BenchError(f"plugin file '{path}' cannot be imported; it must be a Python (.py) file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    for registry in PLUGIN_REGISTRIES:
        registry.load()
    try:
        with ExitStack() as attribution:
            for registry in PLUGIN_REGISTRIES:
                attribution.enter_context(registry.attributed_to(f"file {file}", version))
            spec.loader.exec_module(module)
    except BenchError:
        raise
    except Exception as exc:
        raise BenchError(
            f"plugin file '{path}' failed to import: {type(exc).__name__}: {exc}"
        ) from None
    _loaded_files[file] = module_name
    logger.debug(f"plugin file {file} ({version}) loaded")
