"""Declared, typed options of methods and datasets, and the ``name[key=value,...]`` spec syntax."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from fewshot_bench.errors import ConfigError, did_you_mean

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


@dataclass(frozen=True)
class Option:
    """One declared option: its name, type (bool, int, float or str), default, help, allowed values and
    (for numbers) the smallest allowed value. An option with ``omitted_at_default`` (one added after results were
    published) is carried by a variant only when it differs from its default, so variants that do not use it keep
    their resolved options, labels, records and behavioural fingerprints."""

    name: str
    type: type
    default: Any
    help: str
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    omitted_at_default: bool = False

    def coerce(self, value: Any, owner: str) -> Any:
        """Convert ``value`` (a YAML value or a command-line string) to this option's type, or raise."""
        where = f"option '{self.name}' of {owner}"
        if value is None and self.default is None:
            return None
        try:
            if self.type is bool:
                if isinstance(value, bool):
                    result: Any = value
                elif isinstance(value, (int, float)) and value in (0, 1):
                    result = bool(value)
                elif isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
                    result = value.strip().lower() in _TRUE
                else:
                    raise ValueError
            elif self.type is int:
                if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                    raise ValueError
                result = int(value)
            elif self.type is float:
                if isinstance(value, bool):
                    raise ValueError
                result = float(value)
            else:
                if not isinstance(value, (str, int, float)):
                    raise ValueError
                result = str(value)
        except (TypeError, ValueError):
            raise ConfigError(
                f"{where} must be of type {self.type.__name__}, got {value!r}"
            ) from None
        if self.choices is not None and result not in self.choices:
            allowed = ", ".join(map(str, self.choices))
            raise ConfigError(f"{where} must be one of {allowed}, got {result!r}")
        if self.minimum is not None and result is not None and result < self.minimum:
            raise ConfigError(f"{where} must be at least {self.minimum:g}, got {result!r}")
        return result


def resolve_options(
    declared: Sequence[Option], given: Mapping[str, Any], owner: str
) -> dict[str, Any]:
    """Validate ``given`` against ``declared`` options and fill in defaults; unknown keys are errors."""
    by_name = {opt.name: opt for opt in declared}
    unknown = sorted(set(given) - set(by_name))
    if unknown:
        known = ", ".join(sorted(by_name)) or "none"
        raise ConfigError(f"unknown option '{unknown[0]}' for {owner}; {did_you_mean(unknown[0], by_name)}available: "
                          f"{known}")
    return {
        name: opt.coerce(given[name], owner) if name in given else opt.default
        for name, opt in by_name.items()
    }


_SPEC = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*(?:\[(.*)\])?\s*$")


@dataclass(frozen=True)
class Spec:
    """A name with raw option overrides, parsed from ``name[key=value,...]`` or a YAML mapping."""

    name: str
    options: tuple[tuple[str, Any], ...] = field(default_factory=tuple)

    @property
    def option_dict(self) -> dict[str, Any]:
        return dict(self.options)

    @classmethod
    def parse(cls, text: str) -> "Spec":
        match = _SPEC.match(text)
        if not match:
            raise ConfigError(
                f"cannot parse '{text}'; write a name optionally followed by [key=value,...], "
                "e.g. crn[js_weight=0]"
            )
        name, body = match.group(1), match.group(2)
        options: list[tuple[str, Any]] = []
        if body and body.strip():
            for part in body.split(","):
                if "=" not in part:
                    raise ConfigError(f"option '{part.strip()}' in '{text}' needs the form key=value")
                key, value = part.split("=", 1)
                options.append((key.strip(), value.strip()))
        return cls(name, tuple(options))

    @classmethod
    def from_config(cls, value: Any) -> "Spec":
        """Accept ``"crn[dap=false]"`` or ``{"name": "crn", "dap": False}``."""
        if isinstance(value, str):
            return cls.parse(value)
        if isinstance(value, Mapping) and isinstance(value.get("name"), str):
            options = tuple((str(k), v) for k, v in value.items() if k != "name")
            return cls(value["name"], options)
        raise ConfigError(
            f"a method entry must be a string like 'crn[dap=false]' or a mapping with 'name', got {value!r}"
        )


def format_label(name: str, resolved: Mapping[str, Any], declared: Sequence[Option]) -> str:
    """Readable label of a variant: the name plus every option that differs from its default."""
    changed = [
        f"{opt.name}={_format_value(resolved[opt.name])}"
        for opt in declared
        if opt.name in resolved and resolved[opt.name] != opt.default
    ]
    return f"{name}[{','.join(changed)}]" if changed else name


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
