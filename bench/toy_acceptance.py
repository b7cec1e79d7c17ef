"""Acceptance benchmark of the built-in toy world: plain vs Best-of-5 vs optimize at Best-of-5's budget.

Usage: python bench/toy_acceptance.py [--instances 51] [--seed 0] [--out bench/toy_acceptance]

Runs ``vlmteach_fast.demo.run_demo`` on held-out instances spread over the task types (no media), prints the
markdown table recorded in bench/RESULTS.md and README, and writes results.json (every row) to --out.
Target: optimize's mean rule-score gain over the plain model >= 3x Best-of-5's gain, at no more than its wall time.
"""

import argparse
import platform
import time

import torch

from vlmteach_fast.demo import DemoConfig, format_table, run_demo


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--instances", type=int, default=51, help="held-out instances (default 51: 17 per task type)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="bench/toy_acceptance")
    ap.add_argument("--unbudgeted", action="store_true", help="optimize runs up to 16 steps, no Best-of-5 cap")
    args = ap.parse_args()
    t0 = time.perf_counter()
    result = run_demo(DemoConfig(instances=args.instances, seed=args.seed, out=args.out, write_media=False,
                                 budgeted=not args.unbudgeted))
    s = result["summary"]
    print(f"\nmachine: {platform.machine()}, 1 torch thread (run_demo sets it), torch {torch.__version__}; "
          f"{args.instances} held-out instances, seed {args.seed}, {time.perf_counter() - t0:.0f} s in all\n")
    print(format_table(s))
    if {"plain", "best_of_5", "optimize"} <= s.keys():
        g_opt, g_bon = s["optimize"]["gain"], s["best_of_5"]["gain"]
        ratio = g_opt / g_bon if g_bon > 0 else float("inf") if g_opt > 0 else float("nan")
        t_ratio = s["optimize"]["seconds"] / s["best_of_5"]["seconds"]
        print(f"\noptimize gain / Best-of-5 gain = {ratio:.2f} (target >= 3); "
              f"optimize time / Best-of-5 time = {t_ratio:.2f} (target <= 1)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
