"""Initial weights from a file: a method's own state dict, or another code's checkpoint through an adapter the
method declares (``FewShotMethod.weight_layouts``), recorded by content hash."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch

from fewshot_bench.errors import ConfigError
from fewshot_bench.method import FewShotMethod, MethodVariant


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_initial_weights(method: FewShotMethod, path: str, layout: str, label: str) -> dict[str, Any]:
    """Load ``path`` into ``method`` (every tensor, nothing left at its initial value) and return what the cell
    records: the file, its sha256 and the layout. Any way this can fail is one ConfigError naming the file."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(f"weights file '{path}' of {label} does not exist; give the path of a .pt/.pth file")
    try:
        # weights_only: a checkpoint from elsewhere is data, never code that runs on loading.
        loaded = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises pickle, zip and runtime errors alike
        raise ConfigError(f"weights file '{path}' of {label} cannot be read as tensors ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0][:160]}); only state dicts load (weights_only=True)") from None
    if layout == "native":
        # A run's cell checkpoint holds the state dict under "model"; a plain torch.save(state_dict) is one.
        state = loaded.get("model", loaded) if isinstance(loaded, dict) else loaded
    else:
        try:
            state = type(method).weight_layouts[layout](loaded)
        except (KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(f"weights file '{path}' is not a {layout} checkpoint for {label} (missing {exc}); check "
                              "the file or the weights_layout") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"weights file '{path}' of {label} holds no state dict of tensors; save "
                          "model.state_dict(), or name the layout it was written in (weights_layout)")
    try:
        method.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        details = " ".join(line.strip() for line in str(exc).splitlines()[1:])[:300]
        raise ConfigError(f"weights file '{path}' ({layout} layout) does not fit {label} on "
                          f"{method.image_shape[0]}×{method.image_shape[1]}×{method.image_shape[2]} images: {details}; "
                          "was it trained at another image size or channel count (--image-size, --channels)?") from None
    return {"file": str(file), "sha256": file_sha256(file), "layout": layout, "tensors": len(state)}


def check_weights(variant: MethodVariant, image_shape: tuple[int, int, int]) -> None:
    """Before any training: the variant's weights file loads into its method for these images (or one ConfigError)."""
    options = variant.option_dict
    if options.get("weights"):
        load_initial_weights(variant.build(image_shape), options["weights"], options.get("weights_layout", "native"),
                             variant.label)
