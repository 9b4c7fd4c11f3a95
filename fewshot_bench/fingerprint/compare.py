"""How two behavioural fingerprints of one variant differ, within a numeric tolerance.

A fingerprint is the probe's per-variant dict: ``{"A": {...observables...}, "B": {...}}`` (other keys, such as
``probe_label`` or ``code_version``, are compared too when both sides have them; pass only the geometries to
compare behaviour alone). Numbers agree when ``|a - b| <= atol + rtol * |b|`` (``b`` is ``now``'s); texts,
integers, booleans and None must be equal.
"""

from __future__ import annotations

from typing import Any

DEFAULT_TOLERANCE = {"rtol": 1e-4, "atol": 1e-5}

# Shown per difference: long lists would otherwise flood a report.
_MAX_TEXT = 60


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (dict, list)):
        text = repr(value)
        return text if len(text) <= _MAX_TEXT else text[:_MAX_TEXT - 3] + "..."
    return repr(value)


def _is_float(value: Any) -> bool:
    return isinstance(value, float)


def _walk(then: Any, now: Any, path: str, rtol: float, atol: float, out: list[str]) -> None:
    if isinstance(then, dict) and isinstance(now, dict):
        for key in sorted(set(then) | set(now), key=str):
            where = f"{path}.{key}" if path else str(key)
            if key not in now:
                out.append(f"{where}: {_show(then[key])} vs (missing)")
            elif key not in then:
                out.append(f"{where}: (missing) vs {_show(now[key])}")
            else:
                _walk(then[key], now[key], where, rtol, atol, out)
        return
    if isinstance(then, list) and isinstance(now, list):
        if len(then) != len(now):
            out.append(f"{path}: length {len(then)} vs {len(now)}")
        for i, (a, b) in enumerate(zip(then, now)):
            _walk(a, b, f"{path}[{i}]", rtol, atol, out)
        return
    # A float on either side (an int on the other, e.g. 0 vs 0.0 after JSON) is compared as a number.
    numbers = (int, float)
    if (_is_float(then) or _is_float(now)) and isinstance(then, numbers) and isinstance(now, numbers) \
            and not isinstance(then, bool) and not isinstance(now, bool):
        if then != then and now != now:  # both NaN: the same behaviour
            return
        if not abs(then - now) <= atol + rtol * abs(now):
            out.append(f"{path}: {_show(then)} vs {_show(now)}")
        return
    if type(then) is not type(now) or then != now:
        out.append(f"{path}: {_show(then)} vs {_show(now)}")


def compare(then: dict, now: dict, rtol: float = DEFAULT_TOLERANCE["rtol"],
            atol: float = DEFAULT_TOLERANCE["atol"]) -> list[str]:
    """Every difference between two fingerprints of a variant, one short line each (e.g.
    ``A.losses[3]: 1.2345 vs 1.3``); an empty list means the same behaviour within the tolerance."""
    out: list[str] = []
    _walk(then, now, "", rtol, atol, out)
    return out
