"""CUDA-graph capture of a static-shape step (a meta-training step, or one evaluation episode).

On a GPU an episode of a small few-shot model is a few hundred tiny kernels: launching them from Python
costs far more than running them (measured on an H100 before this module: ~100 training episodes/s for
ProtoNet, 9 for second-order MAML). A cell's episodes all have the same shapes, so the device work of one
step can be recorded once as a CUDA graph and replayed with one call per episode; only the step's inputs
(the staged image indices and augmentation draws) change, and they are copied into the graph's static
input buffers before each replay.

``CapturedStep`` runs the first ``warmup`` calls eagerly (on a side stream, as PyTorch's graph docs
require: cuDNN picks its algorithms and the optimiser creates its state there), captures the next call and
replays it from then on. A step that cannot be captured (a method that synchronises with the host inside
its step, say) falls back to eager calls; ``fallback_reason`` says why, and the cell's record keeps it.
"""

from __future__ import annotations

from typing import Callable, Generic, Hashable, Sequence, TypeVar

import torch

Outputs = TypeVar("Outputs")


class CapturedStep(Generic[Outputs]):
    """Calls ``step(buffers, key)`` eagerly for the first ``warmup`` calls, then captures it as a CUDA graph
    once and replays the graph for every later call with the same ``key``.

    ``step`` must read its tensor inputs only from ``buffers`` and do device work only; ``key`` is the
    hashable static part of its input (the episodes' shapes). Its outputs are the graph's static tensors:
    each replay overwrites them, so consume them before the next call. Calls with another key (the last,
    smaller meta-batch of a cell) run eagerly.
    """

    def __init__(self, step: Callable[[list[torch.Tensor], Hashable], Outputs], enabled: bool = True,
                 warmup: int = 2) -> None:
        self.step = step
        self.enabled = enabled
        self.warmup = warmup
        self.calls = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.buffers: list[torch.Tensor] | None = None
        self.key: Hashable = None
        self.outputs: Outputs | None = None
        self.fallback_reason: str | None = None
        self.side_stream: torch.cuda.Stream | None = None

    @property
    def captured(self) -> bool:
        """Whether later calls replay a graph."""
        return self.graph is not None

    def __call__(self, inputs: Sequence[torch.Tensor], key: Hashable) -> Outputs:
        inputs = list(inputs)
        if not self.enabled or self.fallback_reason is not None or not inputs or inputs[0].device.type != "cuda":
            return self.step(inputs, key)
        if self.buffers is None:
            self.buffers, self.key = [t.clone() for t in inputs], key
        elif key != self.key or [b.shape for b in self.buffers] != [t.shape for t in inputs]:
            return self.step(inputs, key)
        else:
            for buffer, tensor in zip(self.buffers, inputs):
                buffer.copy_(tensor, non_blocking=True)
        self.calls += 1
        if self.graph is not None:
            self.graph.replay()
            return self.outputs  # type: ignore[return-value]
        if self.calls <= self.warmup:
            return self._on_side_stream()
        return self._capture()

    def _side(self) -> torch.cuda.Stream:
        # One stream of its own for warm-up and capture: a capture that fails can leave the allocator routing
        # that stream's allocations to the abandoned graph's pool, so no other work should share it.
        self.side_stream = self.side_stream or torch.cuda.Stream()
        return self.side_stream

    def _on_side_stream(self) -> Outputs:
        side = self._side()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            outputs = self.step(self.buffers, self.key)  # type: ignore[arg-type]
        torch.cuda.current_stream().wait_stream(side)
        return outputs

    def _capture(self) -> Outputs:
        graph = torch.cuda.CUDAGraph()
        try:
            # thread_local: only this thread's unsafe calls (a host sync inside the step) end the capture.
            with torch.cuda.graph(graph, stream=self._side(), capture_error_mode="thread_local"):
                outputs = self.step(self.buffers, self.key)  # type: ignore[arg-type]
        except Exception as exc:  # the step stays correct, only slower
            self.fallback_reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
            torch.cuda.synchronize()
            return self.step(self.buffers, self.key)  # type: ignore[arg-type]
        self.graph, self.outputs = graph, outputs
        graph.replay()  # capturing records the work without doing it
        return outputs

    def describe(self) -> str:
        """'graph', 'eager' (not enabled or not on CUDA) or 'eager (why capture failed)', for the cell record."""
        if self.graph is not None:
            return "graph"
        return f"eager ({self.fallback_reason})" if self.fallback_reason else "eager"
