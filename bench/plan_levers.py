"""Each memory / time lever at real shapes, by the shape-only account and the fitted roofline (no GPU).

    python bench/plan_levers.py --out plan_levers.json [--geometries 480p49,704p121] [--device h100]

Wan2.2-TI2V-5B with the real UMT5-XXL text encoder's shape (held unless offloaded), Qwen2.5-VL-7B, LoRA rank 16,
one-step mode. Rows: the default, then the levers one by one and combined: teacher layer checkpointing, block
checkpointing, the text encoder offloaded after the prompt, the adapter on the last n blocks, fewer teacher pixels.
Per row: peak GiB and its phase, step / candidate, and the steps best_of_n:5 buys.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gpu_shapes as shapes  # noqa: E402,F401  (sets TRITON_INTERPRET before triton can be imported)

from vlmteach_fast.cost import UnitCosts  # noqa: E402
from vlmteach_fast.plan import account_run  # noqa: E402
from vlmteach_fast.plan.phases import CANDIDATE_PHASES, STEP_PHASES  # noqa: E402
from vlmteach_fast.plan.roofline import DEVICES, EFFICIENCY, phase_seconds  # noqa: E402
from vlmteach_fast.teacher import RewardConfig  # noqa: E402

GIB = 2**30
DEVICE_ONLY = dataclasses.replace(EFFICIENCY, host_seconds_per_kernel=0.0)  # were kernel launches free
CK = dict(reward_config=RewardConfig(checkpoint_layers=True))
LEVERS = {
    "default": dict(variant="one_step"),
    "teacher checkpointing": dict(variant="one_step", **CK),
    "block checkpointing": dict(variant="block_checkpointing"),
    "text encoder offloaded": dict(variant="one_step", offload_text_encoder=True),
    "block + teacher checkpointing": dict(variant="block_checkpointing", **CK),
    "block + teacher ckpt + offload": dict(variant="block_checkpointing", offload_text_encoder=True, **CK),
    "+ adapter on last 10 blocks": dict(variant="block_checkpointing", offload_text_encoder=True, last_blocks=10,
                                        **CK),
    "+ last 10 blocks without block ckpt": dict(variant="one_step", offload_text_encoder=True, last_blocks=10, **CK),
    "+ teacher max_pixels 200k": dict(variant="block_checkpointing", offload_text_encoder=True,
                                      reward_config=RewardConfig(checkpoint_layers=True, max_pixels=200_000)),
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--geometries", default="480p49,704p121")
    ap.add_argument("--levers", default=",".join(LEVERS), help="comma-separated row names")
    ap.add_argument("--append", action="store_true", help="keep the rows already in --out")
    ap.add_argument("--device", default="h100", choices=sorted(DEVICES))
    args = ap.parse_args(argv)
    device = DEVICES[args.device]
    rows = []
    if args.append and os.path.exists(args.out):
        with open(args.out, encoding="utf-8") as f:
            rows = json.load(f)["rows"]
    for geo in args.geometries.split(","):
        for name in args.levers.split(","):
            kw = dict(LEVERS[name])
            t0 = time.perf_counter()
            acc = account_run(shapes.GEOMETRIES[geo], kw.pop("variant"), text_encoder="umt5-xxl", keep_ops=True,
                              **kw)
            ops = {p: d.pop("ops") for p, d in acc["phases"].items()}
            sec = {p: phase_seconds(o, device) for p, o in ops.items()}
            dev = {p: phase_seconds(o, device, DEVICE_ONLY) for p, o in ops.items()}
            step, cand = sum(sec[p] for p in STEP_PHASES), sum(sec[p] for p in CANDIDATE_PHASES)
            row = {"geometry": geo, "lever": name, "peak_gib": acc["peak_bytes"] / GIB, "peak_phase": acc["peak_phase"],
                   "step_seconds": step, "candidate_seconds": cand, "step_over_candidate": step / cand,
                   "steps_best_of_5": UnitCosts(candidate=cand, step=step).steps_within(5, 1),
                   "step_over_candidate_device_only": sum(dev[p] for p in STEP_PHASES) / sum(
                       dev[p] for p in CANDIDATE_PHASES),
                   "phase_seconds": sec, "phase_peak_gib": {p: d["peak_bytes"] / GIB for p, d in acc["phases"].items()},
                   "account_seconds": time.perf_counter() - t0}
            rows.append(row)
            print(f"| {geo} | {name} | {row['peak_gib']:.1f} ({row['peak_phase']}) | {row['step_over_candidate']:.2f} |"
                  f" {row['steps_best_of_5']} |", flush=True)
            with open(args.out, "w", encoding="utf-8") as f:
                json.dump({"device": device.name, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
