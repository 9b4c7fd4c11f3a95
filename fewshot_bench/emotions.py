"""One emotion vocabulary: the canonical class names of facial-expression datasets and the spellings they use.

FER datasets name one emotion several ways (``anger``/``angry``, ``sadness``/``sad``, ``happiness``/``happy``,
JAFFE's and KDEF's two-letter codes ``AN``/``SA``); a split, a preset or a cross-dataset pair written with one
spelling must find a dataset's folder written with another. Names are compared case-insensitively after their
canonical form is taken; a name the vocabulary does not know stays what it is (Omniglot's characters, a lab's
own classes), so only emotion names are ever rewritten.

The canonical names are FER2013's and RAF-DB's: angry, disgust, fear, happy, neutral, sad, surprise, plus
contempt (CK+, AffectNet). Anything else (CK+'s numeric folders, a language other than English) is mapped
explicitly with ``--class-map`` (``class_map: {"1": angry}``).
"""

from __future__ import annotations

import difflib
from typing import Iterable, Mapping, Sequence

CANONICAL = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise", "contempt")

# Spellings found in the public FER datasets' folders, label files and papers (lower case): full words
# (FER2013, RAF-DB, SFEW, AffectNet, CK+, Oulu-CASIA, MMI), adjectives, and the two-letter codes of JAFFE
# (AN DI FE HA NE SA SU) and KDEF (AF AN DI HA NE SA SU).
SYNONYMS: dict[str, tuple[str, ...]] = {
    "angry": ("anger", "angry", "an", "ang", "mad"),
    "disgust": ("disgust", "disgusted", "disgusting", "di", "dis"),
    "fear": ("fear", "fearful", "afraid", "scared", "fe", "af"),
    "happy": ("happy", "happiness", "joy", "joyful", "ha", "hap"),
    "neutral": ("neutral", "neutrality", "ne", "neu"),
    "sad": ("sad", "sadness", "sa"),
    "surprise": ("surprise", "surprised", "su", "sur"),
    "contempt": ("contempt", "contemptuous", "co"),
}
_CANONICAL_OF = {spelling: name for name, spellings in SYNONYMS.items() for spelling in spellings}


def canonical(name: str) -> str:
    """The vocabulary's name for ``name`` (case-insensitive, surrounding spaces and ``_``/``-`` ignored), or
    ``name`` unchanged when it is no emotion the vocabulary knows."""
    key = name.strip().lower().replace("_", "").replace("-", "")
    return _CANONICAL_OF.get(key, name)


def is_emotion(name: str) -> bool:
    return canonical(name) in CANONICAL


def find(wanted: str, available: Sequence[str]) -> str | None:
    """The name among ``available`` that means ``wanted`` (the same text, else the same canonical emotion), or
    None. Two available names meaning one emotion are a one-line error for the caller (``ambiguous``)."""
    if wanted in available:
        return wanted
    target = canonical(wanted)
    matches = [name for name in available if canonical(name) == target]
    return matches[0] if len(matches) == 1 else None


def ambiguous(names: Iterable[str]) -> dict[str, list[str]]:
    """Canonical emotions that two or more of ``names`` stand for (e.g. both ``anger`` and ``angry``)."""
    seen: dict[str, list[str]] = {}
    for name in names:
        if is_emotion(name):
            seen.setdefault(canonical(name), []).append(name)
    return {emotion: spellings for emotion, spellings in seen.items() if len(spellings) > 1}


def nearest(name: str, available: Sequence[str], n: int = 3) -> list[str]:
    """Up to ``n`` names of ``available`` closest to ``name``, for error messages."""
    lowered = {candidate.lower(): candidate for candidate in available}
    close = difflib.get_close_matches(name.lower(), list(lowered), n=n, cutoff=0.4)
    return [lowered[c] for c in close]


def missing_class_message(wanted: str, available: Sequence[str], where: str) -> str:
    """One line: ``where`` has no class meaning ``wanted``; its class list and the nearest names."""
    close = nearest(wanted, available)
    listed = ", ".join(list(available)[:20]) + (f", ... ({len(available)} classes)" if len(available) > 20 else "")
    hint = f"; nearest: {', '.join(close)}" if close else ""
    return (f"{where} has no class '{wanted}' (nor a synonym of it: {', '.join(SYNONYMS.get(canonical(wanted), ()))})"
            f"{hint}; its classes: {listed}; map a class with --class-map NAME={wanted}"
            if is_emotion(wanted) else f"{where} has no class '{wanted}'{hint}; its classes: {listed}")


def apply_class_map(names: Sequence[str], mapping: Mapping[str, str]) -> list[str]:
    """``names`` renamed by ``mapping`` (exact names; unmapped names stay)."""
    return [str(mapping.get(name, name)) for name in names]
