"""Linear layers of a bf16 model on a CPU through weights prepacked for oneDNN, for the engine's own decoding.

torch's bf16 `F.linear` on a CPU hands oneDNN a plain weight at every call, and the skinny matmuls
of decoding (1 to 64 rows) then read the weights at 7–12 GB/s. Packed once in oneDNN's layout
(`mkldnn._reorder_linear_weight`, what inductor's freezing pass does for CPU inference) the same
matmuls read them at 13–22 GB/s, with bitwise-equal results. 100 layers of 576 x 1536 on a 2-core
AVX-512 BF16 CPU (2026-12-02): 1 row 18.0 -> 10.7 ms, 16 rows 24.3 -> 14.7 ms, 64 rows 40.0 ->
32.9 ms, 512 rows 237 -> 235 ms. Packing them took 0.10 s.

The packed copies cost as much memory as the layers' weights, so an engine keeps them only while
that is under a quarter of the memory available, and packs again if a weight changes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch

_ROWS_HINT = 16  # the decoding batch oneDNN lays the weights out for; other row counts run as fast or faster


class PackedLinears:
    """A model's bf16 `nn.Linear` weights packed for oneDNN, kept across calls while the weights stay the same."""

    def __init__(self):
        self._packed: dict[torch.nn.Linear, tuple[tuple[int, int], torch.Tensor]] = {}

    @contextmanager
    def applied(self, model) -> Iterator[bool]:
        """Inside the block `model`'s linear layers run on packed weights; yields whether they do."""
        layers = _packable_layers(model)
        if not layers or not _fits_in_memory(layers):
            self._packed.clear()
            yield False
            return
        patched = []
        try:
            for layer in layers:
                layer.forward = _packed_forward(self._packed_weight(layer), layer.bias)
                patched.append(layer)
            yield True
        finally:
            for layer in patched:
                del layer.forward  # the class's own forward again

    def _packed_weight(self, layer: torch.nn.Linear) -> torch.Tensor:
        key = (layer.weight.data_ptr(), layer.weight._version)
        known = self._packed.get(layer)
        if known is None or known[0] != key:
            known = (key, torch.ops.mkldnn._reorder_linear_weight(layer.weight.detach(), _ROWS_HINT))
            self._packed[layer] = known
        return known[1]


def _packed_forward(packed: torch.Tensor, bias: torch.Tensor | None):
    def forward(hidden: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(hidden, packed, bias, "none", [], "")
    return forward


def _packable_layers(model) -> list[torch.nn.Linear]:
    """Plain bf16 linear layers on a CPU that oneDNN computes natively; none elsewhere."""
    from harness.models import cpu_has_native_bf16

    if not torch.backends.mkldnn.is_available() or not cpu_has_native_bf16():
        return []
    return [module for module in model.modules()
            if type(module) is torch.nn.Linear and type(module.weight) is torch.nn.Parameter
            and type(module.weight.data) is torch.Tensor and module.weight.dtype == torch.bfloat16
            and module.weight.device.type == "cpu"
            and (module.bias is None or module.bias.dtype == torch.bfloat16)]


def _fits_in_memory(layers: list[torch.nn.Linear]) -> bool:
    weights = sum(layer.weight.numel() * layer.weight.element_size() for layer in layers)
    return weights < _available_memory() / 4


def _available_memory() -> int:
    """Bytes the kernel says a new allocation can have (MemAvailable, page cache included), else free pages."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return 0
