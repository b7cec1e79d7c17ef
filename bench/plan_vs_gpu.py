"""The shape-only account (vlmteach_fast.plan) against the H200 measurements of the GPU check, at the same shapes.

    python bench/plan_vs_gpu.py --out plan_vs_gpu.json            # accounts (about a minute each), fit, table
    python bench/plan_vs_gpu.py --out plan_vs_gpu.json --configs 480p49:one_step

Models as the GPU check built them (bench/gpu_shapes.py: Wan2.2-TI2V-5B with its 1-layer text encoder,
Qwen2.5-VL-7B, LoRA rank 16, bf16). Per measured configuration: predicted against measured peak memory, phase seconds
and step / candidate. The roofline's efficiencies are fitted here to the measured phase times (least squares on
log seconds) and printed; ``vlmteach_fast.plan.roofline.EFFICIENCY`` holds the fitted values.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import pickle
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gpu_shapes as shapes  # noqa: E402,F401  (sets TRITON_INTERPRET before triton can be imported)

from vlmteach_fast.plan import account_run  # noqa: E402
from vlmteach_fast.plan.phases import CANDIDATE_PHASES, STEP_PHASES  # noqa: E402
from vlmteach_fast.plan.roofline import DEVICES, Efficiency, phase_seconds  # noqa: E402

GIB = 2**30
# H200, 2026-11-29 (bench/gpu_check_h200.md; bench/RESULTS.md "GPU (real model shapes)"): peak GiB
# (max_memory_allocated over both units) and phase seconds; None = not measured. The 704p one-step run ran out of
# memory with 135.08 GiB allocated, asking for 1.88 GiB more.
MEASURED = {
    "480p49:one_step": dict(peak=84.98, seconds=dict(
        predict=0.220, light_decode=0.002, reward_fwd=0.580, reward_bwd=0.581, denoiser_bwd=0.230, optimizer=0.011,
        sample_4step=0.831, full_decode=1.085, reward_score=0.338)),
    "480p49:block_checkpointing": dict(peak=53.03, seconds=dict(
        predict=0.217, light_decode=0.001, reward_fwd=0.421, reward_bwd=0.501, denoiser_bwd=0.426, optimizer=0.014,
        sample_4step=0.834, full_decode=1.083, reward_score=0.378)),
    "480p49:k_step2": dict(peak=60.52, seconds=dict(
        predict=1.059, light_decode=0.001, reward_fwd=0.473, reward_bwd=0.614, denoiser_bwd=0.868, optimizer=0.013,
        sample_4step=0.831, full_decode=1.085, reward_score=0.481)),
    "704p121:block_checkpointing": dict(peak=89.9, seconds=dict(
        predict=1.61, reward_fwd=1.06, reward_bwd=1.00, denoiser_bwd=3.99, sample_4step=6.36, full_decode=5.87,
        reward_score=0.67)),
    "704p121:one_step": dict(peak=None, oom_above=135.08 + 1.88, seconds={}),
}


def fit(accounts: dict, device) -> tuple[Efficiency, float]:
    """The efficiencies minimizing the squared log error of predicted against measured phase seconds."""
    pairs = [(np.asarray(acc["phases"][p]["ops"], dtype=np.float64), s) for key, acc in accounts.items()
             for p, s in MEASURED[key]["seconds"].items() if s >= 0.01 and p != "optimizer"]
    # (the optimizer: a CPU account runs AdamW per parameter, a GPU runs it as a few multi-tensor kernels)
    best = None
    grid = itertools.product(np.arange(0.10, 1.001, 0.05), np.arange(0.10, 1.001, 0.05), np.arange(2, 100, 2) * 1e-6)
    for ef, eb, t0 in grid:
        eff = Efficiency(round(float(ef), 2), round(float(eb), 2), round(float(t0), 7))
        err = sum(math.log(phase_seconds(ops, device, eff) / s) ** 2 for ops, s in pairs)
        if best is None or err < best[1]:
            best = (eff, err)
    return best[0], math.sqrt(best[1] / len(pairs))


def table(accounts: dict, eff: Efficiency, device) -> list[str]:
    lines = ["| configuration | peak predicted / measured GiB | error | step / candidate predicted / measured | error |",
             "|---|---|---|---|---|"]
    for key, acc in accounts.items():
        m = MEASURED[key]
        peak = acc["peak_bytes"] / GIB
        if m["peak"] is None:
            peak_txt, peak_err = f"{peak:.1f} / out of memory (> {m['oom_above']:.1f})", (
                "predicted OOM" if peak > m["oom_above"] else "**missed**")
        else:
            peak_txt, peak_err = f"{peak:.1f} / {m['peak']:.1f}", f"{100 * (peak / m['peak'] - 1):+.1f}%"
        sec = {p: phase_seconds(acc["phases"][p]["ops"], device, eff) for p in acc["phases"]}
        ratio = sum(sec[p] for p in STEP_PHASES) / sum(sec[p] for p in CANDIDATE_PHASES)
        if m["seconds"]:
            ms = m["seconds"]
            meas = sum(ms.get(p, 0.0) for p in STEP_PHASES) / sum(ms[p] for p in CANDIDATE_PHASES)
            ratio_txt, ratio_err = f"{ratio:.2f} / {meas:.2f}", f"{100 * (ratio / meas - 1):+.1f}%"
        else:
            ratio_txt, ratio_err = f"{ratio:.2f} / -", "-"
        lines.append(f"| {key} | {peak_txt} | {peak_err} | {ratio_txt} | {ratio_err} |")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="result JSON (accounts without per-kernel lists, fit, table)")
    ap.add_argument("--configs", default=",".join(MEASURED), help="comma-separated GEOMETRY:VARIANT keys")
    ap.add_argument("--ops-cache", default=None, help="pickle of the accounts with their kernels: written after "
                                                      "accounting, read instead of accounting when it exists")
    args = ap.parse_args(argv)
    device = DEVICES["h200"]
    accounts, walls = {}, {}
    if args.ops_cache and os.path.exists(args.ops_cache):
        with open(args.ops_cache, "rb") as f:
            accounts, walls = pickle.load(f)
    for key in [k for k in args.configs.split(",") if k and k not in accounts]:
        if key not in MEASURED:
            ap.error(f"--configs: {key!r} is not one of {sorted(MEASURED)}")
        geo, variant = key.split(":")
        t0 = time.perf_counter()
        accounts[key] = account_run(shapes.GEOMETRIES[geo], variant, keep_ops=True)
        walls[key] = time.perf_counter() - t0
        print(f"[plan_vs_gpu] {key}: peak {accounts[key]['peak_bytes'] / GIB:.2f} GiB in "
              f"{accounts[key]['peak_phase']}, {walls[key]:.0f} s on this CPU", flush=True)
    if args.ops_cache:
        with open(args.ops_cache, "wb") as f:
            pickle.dump((accounts, walls), f)
    eff, rms = fit(accounts, device)
    lines = table(accounts, eff, device)
    print(f"fitted: {eff} (rms log error {rms:.3f} over the measured phases)")
    print("\n".join(lines))
    out = {"efficiency": vars(eff), "rms_log_error": rms, "account_seconds": walls, "table": lines,
           "accounts": {k: {**a, "phases": {p: {n: v for n, v in d.items() if n != "ops"}
                                             | {"predicted_seconds": phase_seconds(d["ops"], device, eff)}
                                             for p, d in a["phases"].items()}}
                        for k, a in accounts.items()}}
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
