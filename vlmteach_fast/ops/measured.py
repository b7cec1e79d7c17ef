"""Backend choice for CUDA tensors from measurements: a small table that ``bench/gpu_check.sh`` step 3 writes
(``bench/lora_table.py``) and the package ships as ``lora_backends.json``.

A row is one (device name, shape, dtype, backend) with its fwd+bwd median in ms. For a call the op takes this GPU's
rows at the nearest measured shape (same dtype; log distance in tokens, features and rank) and runs the fastest
usable backend there, but only one measured faster than the reference at that shape. No rows for this GPU, or no
reference row at the shape: the reference (cuBLAS matmuls), the default on CUDA. Comparison-only rows (``compile``:
torch.compile of the reference) are kept for the report and never chosen: the op cannot run them.
Design and the gate the kernels must pass: docs/kernels.md.
"""

import json
import math
import os
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Optional, Sequence, Tuple

TABLE_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lora_backends.json")


@dataclass(frozen=True)
class Row:
    device: str  # torch.cuda.get_device_name(), e.g. "NVIDIA H200"
    tokens: int
    in_features: int
    out_features: int
    rank: int
    dtype: str  # "bfloat16" | "float16" | "float32"
    backend: str  # an op backend (triton | cuda | reference) or a comparison row (compile)
    ms: float  # fwd+bwd median


def parse_rows(data: dict) -> Tuple[Row, ...]:
    """Rows of a table document ``{"rows": [{...}, ...]}``; raises ValueError naming the bad row."""
    rows = []
    for i, item in enumerate(data.get("rows", [])):
        try:
            rows.append(Row(str(item["device"]), int(item["tokens"]), int(item["in_features"]),
                            int(item["out_features"]), int(item["rank"]), str(item["dtype"]), str(item["backend"]),
                            float(item["ms"])))
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"LoRA backend table row {i} is malformed ({err!r}): {item!r}") from None
    return tuple(rows)


@lru_cache(maxsize=None)
def load_table(path: str = TABLE_PATH) -> Tuple[Row, ...]:
    """The shipped table (cached); a missing file is an empty table."""
    if not os.path.exists(path):
        return ()
    with open(path, encoding="utf-8") as f:
        return parse_rows(json.load(f))


def _distance(row: Row, tokens: int, k: int, n: int, r: int) -> float:
    return sum(abs(math.log(max(a, 1) / max(b, 1))) for a, b in
               ((row.tokens, tokens), (row.in_features, k), (row.out_features, n), (row.rank, r)))


def choose(rows: Sequence[Row], device: str, tokens: int, k: int, n: int, r: int, dtype: str,
           usable: Callable[[str], bool]) -> Tuple[str, str]:
    """(backend, reason) for one call shape: tokens x k -> n at rank r in ``dtype`` on GPU ``device``.
    ``usable(backend)`` says whether a backend can run here (built, loadable)."""
    mine = [row for row in rows if row.device == device and row.dtype == dtype]
    if not mine:
        return "reference", f"no measurements for {device} {dtype} in the shipped table: cuBLAS reference by default"
    near = min(mine, key=lambda row: _distance(row, tokens, k, n, r))
    at = [row for row in mine if (row.tokens, row.in_features, row.out_features, row.rank)
          == (near.tokens, near.in_features, near.out_features, near.rank)]
    shape = f"{near.tokens}x{near.in_features}->{near.out_features} r{near.rank} {dtype}"
    ref = [row.ms for row in at if row.backend == "reference"]
    if not ref:
        return "reference", f"{device} at {shape}: the reference was not measured, so nothing is known faster"
    ref_ms = min(ref)
    faster = sorted((row.ms, row.backend) for row in at
                    if row.backend in ("triton", "cuda") and row.ms < ref_ms and usable(row.backend))
    if not faster:
        timed = ", ".join(f"{row.backend} {row.ms:.3g} ms" for row in sorted(at, key=lambda row: row.ms))
        return "reference", f"measured on {device} at {shape}: no usable kernel faster than the reference ({timed})"
    ms, backend = faster[0]
    return backend, f"measured on {device} at {shape}: {backend} {ms:.3g} ms < reference {ref_ms:.3g} ms"


def describe(rows: Sequence[Row], device: Optional[str], usable: Callable[[str], bool]) -> list:
    """Lines for ``vlmteach-fast doctor``: what the table holds and, for this GPU, the choice at each measured shape."""
    devices = sorted({row.device for row in rows})
    lines = [f"measured LoRA table ({len(rows)} rows): " + (", ".join(devices) if devices else "empty")]
    if device is None:
        lines.append("  no GPU here: the table is not consulted (CPU tensors: the CPU extension, then the reference)")
        return lines
    shapes = sorted({(row.tokens, row.in_features, row.out_features, row.rank, row.dtype)
                     for row in rows if row.device == device})
    if not shapes:
        lines.append(f"  {device}: no measurements; CUDA tensors use the cuBLAS reference")
    for t, k, n, r, dt in shapes:
        backend, why = choose(rows, device, t, k, n, r, dt, usable)
        lines.append(f"  {t}x{k}->{n} r{r} {dt}: {backend} ({why})")
    return lines
