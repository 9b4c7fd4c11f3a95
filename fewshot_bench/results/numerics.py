"""A cell's effective numerics: the kind of device it ran on and the precision its arithmetic ran in.

Both change the numbers. A seed trained and evaluated under bf16 autocast on a GPU does not compute what
the same seed computes in float32 on a CPU (other rounding, other kernels, other reduction orders), so
their accuracies are not samples of one quantity. They are therefore part of a result's identity, beside
the settings hash: every grouping that pools seeds into one row (a run's summary, the leaderboard) keys on
``device_kind`` and ``precision`` too, and cells that differ in either are never pooled across.

They are not in the settings hash itself, which would change every existing run's hash: the config key
``amp`` is, but it only asks for bf16 autocast, which ``fewshot_bench.device.autocast`` applies on CUDA
alone (on CPU and MPS it is a no-op, and the cell runs in float32).

New cell records carry a ``numerics`` block; records written before it existed are migrated when read
(``record_numerics``), from their ``device`` and ``settings["amp"]`` (missing: the default, true). Record
files are never rewritten.
"""

from __future__ import annotations

from typing import Any, Mapping

BF16_AUTOCAST = "bf16-autocast"
FP32 = "fp32"
UNKNOWN = "unknown"
AMP_DEFAULT = True  # RunConfig.amp's default: a record without settings.amp ran with it


def device_kind(device: Any) -> str:
    """The device type of a torch device or its text (``cuda:1`` -> ``cuda``); ``unknown`` when missing."""
    kind = getattr(device, "type", None) or str(device or "").split(":")[0].strip().lower()
    return kind or UNKNOWN


def effective_numerics(device: Any, amp: bool) -> dict[str, str]:
    """``{"device_kind": ..., "precision": ...}`` of a cell run on ``device`` (``cuda``, ``cuda:0``, ``cpu``,
    ``mps`` or a ``torch.device``) with the config key ``amp``: bf16 autocast only when amp is on and the
    device is CUDA (as ``device.autocast`` does), float32 otherwise. A missing device with amp on has an
    ``unknown`` precision: it may have been either."""
    kind = device_kind(device)
    if kind == "cuda" and amp:
        precision = BF16_AUTOCAST
    elif kind == UNKNOWN and amp:
        precision = UNKNOWN
    else:
        precision = FP32
    return {"device_kind": kind, "precision": precision}


def record_numerics(record: Mapping[str, Any]) -> dict[str, str]:
    """The cell record's own ``numerics`` block when it has one, else the numerics derived from its ``device``
    and ``settings["amp"]`` (true when the record has no such setting, the default)."""
    block = record.get("numerics")
    if isinstance(block, Mapping) and block.get("device_kind") and block.get("precision"):
        return {"device_kind": str(block["device_kind"]), "precision": str(block["precision"])}
    settings = record.get("settings")
    amp = settings.get("amp", AMP_DEFAULT) if isinstance(settings, Mapping) else AMP_DEFAULT
    return effective_numerics(record.get("device"), bool(AMP_DEFAULT if amp is None else amp))
