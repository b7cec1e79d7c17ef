"""The planner's settings for one 80 GB card at the GPU check's shapes, and what it predicts for them:
bench/plan_predictions.json, which bench/gpu_check.sh step 7 measures and bench/gpu_summary.py sets side by side.

    python bench/plan_predictions.py --out bench/plan_predictions.json

The models as the GPU check builds them (its 1-layer text encoder), so prediction and measurement are comparable.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gpu_shapes as shapes  # noqa: E402

from vlmteach_fast.plan.planner import plan  # noqa: E402


def gpu_step_flags(settings: dict) -> str:
    """bench/gpu_step.py arguments that run ``settings``."""
    variant = "block_checkpointing" if settings["block_checkpointing"] else "one_step"
    return f"--variants {variant}" + (" --teacher-checkpointing" if settings["checkpoint_layers"] else "")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--geometries", default="480p49,704p121")
    ap.add_argument("--gpu-memory", default="80GiB")
    args = ap.parse_args(argv)
    out = {}
    for geo in args.geometries.split(","):
        frames, height, width = shapes.GEOMETRIES[geo]
        r = plan(num_frames=frames, height=height, width=width, gpu_memory=args.gpu_memory, device="h100",
                 text_encoder="measured")
        out[geo] = {k: r[k] for k in ("fits", "settings", "peak_gib", "peak_phase", "step_over_candidate",
                                      "steps_within_budget", "step_seconds", "candidate_seconds", "options")}
        out[geo]["phase_seconds_h100"] = {p: d["predicted_seconds"] for p, d in r["phases"].items()}
        out[geo]["gpu_step_flags"] = gpu_step_flags(r["settings"])
        print(geo, json.dumps(out[geo]["settings"]), f"{r['peak_gib']:.1f} GiB", f"{r['step_over_candidate']:.2f}",
              flush=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump({"gpu_memory": args.gpu_memory, "text_encoder": "measured", "device_for_seconds": "h100",
                   "geometries": out}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
