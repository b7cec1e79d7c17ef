"""The denoiser's forward and forward+backward under each attention backend of diffusers' dispatcher, at the
Wan2.2-TI2V-5B shape (bench/gpu_check.sh step 6).

    python bench/gpu_attention.py --out step6.json [--geometry 480p49] [--rounds 3]
    python bench/gpu_attention.py --dry-run --out step6.json     # tiny shapes on the CPU

Backends: "native" (torch SDPA; always), "xformers" and "flash" (flash-attn) where their packages are installed, and
on CUDA torch's own SDPA kernels forced one at a time ("_native_flash", "_native_efficient", "_native_cudnn") and
flash-attn 3 ("_flash_3") where installed. A backend that is missing, or fails on this device, is recorded with its
reason. What is timed is ``Reasoner.predict(one_step)`` (one transformer evaluation with the LoRA) without
gradient, and the same followed by the backward of a scalar of its output (gradients reach the LoRA): the
optimization step's denoiser part. Median of ``--rounds`` after one warm-up; peak memory per backend.
The fastest backend whose forward+backward ran is reported as ``best``: the candidate for the default of
``SamplingConfig.attention_backend`` (docs/gpu_check.md).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gpu_shapes as shapes  # noqa: E402  (sets TRITON_INTERPRET before triton can be imported)
import torch  # noqa: E402

PORTABLE = ("native", "xformers", "flash")
CUDA_ONLY = ("_native_flash", "_native_efficient", "_native_cudnn", "_flash_3")


def _time(fn, rounds: int, cuda: bool) -> tuple[float, int]:
    """(median seconds, peak bytes) of ``fn`` after one warm-up call."""
    from vlmteach_fast.reasoner import TensorMemoryTracker

    fn()
    times, peak = [], 0
    for _ in range(rounds):
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
            fn()
            torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
            peak = max(peak, torch.cuda.max_memory_allocated())
        else:
            with TensorMemoryTracker() as mem:
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
            peak = max(peak, mem.peak_bytes)
    return statistics.median(times), peak


def measure(reasoner, prepared, backend: str, rounds: int, cuda: bool) -> dict:
    from vlmteach_fast.reasoner.attention import attention_backend_available

    ok, why = attention_backend_available(backend)
    if not ok:
        return {"backend": backend, "status": "unavailable", "reason": why}
    reasoner.set_attention_backend(backend)

    def fwd():
        with torch.no_grad():
            reasoner.predict(prepared)

    def fwd_bwd():
        for p in reasoner.lora_parameters():
            p.grad = None
        reasoner.predict(prepared).latents.float().square().mean().backward()

    try:
        fwd_s, fwd_peak = _time(fwd, rounds, cuda)
        full_s, full_peak = _time(fwd_bwd, rounds, cuda)
    except Exception as err:  # noqa: BLE001 - e.g. xformers has no CPU kernels: a result, not a crash
        return {"backend": backend, "status": "failed", "reason": f"{type(err).__name__}: {err}"[:1000]}
    finally:
        reasoner.set_attention_backend("native")
        if cuda:
            torch.cuda.empty_cache()
    return {"backend": backend, "status": "ok", "fwd_seconds": fwd_s, "fwd_peak_bytes": fwd_peak,
            "fwd_bwd_seconds": full_s, "fwd_bwd_peak_bytes": full_peak}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="result JSON file")
    ap.add_argument("--dry-run", action="store_true", help="tiny shapes on the CPU (checks the path, measures nothing)")
    ap.add_argument("--geometry", default="480p49", choices=sorted(shapes.GEOMETRIES))
    ap.add_argument("--rounds", type=int, default=3, help="timed rounds per backend (default 3)")
    args = ap.parse_args(argv)
    if args.rounds < 1:
        ap.error(f"--rounds must be >= 1, got {args.rounds}")

    from vlmteach_fast.reasoner import LoRASpec, Reasoner

    device, dtype = shapes.device_and_dtype(args.dry_run)
    cuda = device.type == "cuda"
    num_frames, height, width = shapes.DRY_GEOMETRY if args.dry_run else shapes.GEOMETRIES[args.geometry]
    reasoner = Reasoner.from_pipeline(shapes.wan_ti2v_pipeline(args.dry_run, device, dtype), LoRASpec(rank=16))
    prepared = reasoner.prepare("a red ball rolls onto the green square", shapes.first_frame(height, width),
                                num_frames=num_frames, height=height, width=width, seed=0,
                                max_sequence_length=shapes.wan_configs(args.dry_run)[2])
    backends = list(PORTABLE) + (list(CUDA_ONLY) if cuda else [])
    result = {"dry_run": args.dry_run, "environment": shapes.environment(device), "dtype": str(dtype),
              "geometry": dict(name=args.geometry, num_frames=num_frames, height=height, width=width),
              "peak_kind": "cuda_max_memory_allocated" if cuda else "tensors_created_cpu", "backends": []}
    for b in backends:
        row = measure(reasoner, prepared, b, args.rounds, cuda)
        result["backends"].append(row)
        detail = (f"fwd {row['fwd_seconds'] * 1e3:.1f} ms, fwd+bwd {row['fwd_bwd_seconds'] * 1e3:.1f} ms, "
                  f"peak {row['fwd_bwd_peak_bytes'] / 2**30:.2f} GiB") if row["status"] == "ok" else row["reason"]
        print(f"[gpu_attention] {b}: {row['status']}: {detail}", flush=True)
    ran = [r for r in result["backends"] if r["status"] == "ok"]
    result["best"] = min(ran, key=lambda r: r["fwd_bwd_seconds"])["backend"] if ran else None
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    return 0 if any(r["backend"] == "native" for r in ran) else 1


if __name__ == "__main__":
    sys.exit(main())
