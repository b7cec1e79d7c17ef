"""One ``optimize`` step and one Best-of-N candidate at Wan2.2-TI2V-5B / Qwen2.5-VL-7B shape: seconds and peak
memory per phase (bench/gpu_check.sh steps 4 and 5).

    python bench/gpu_step.py --out step4.json --variants one_step --geometries 480p49,704p121
    python bench/gpu_step.py --out step5.json --variants block_checkpointing,k_step2 --geometries 480p49
    python bench/gpu_step.py --dry-run --out step4.json      # tiny shapes on the CPU, seconds

The step is ``optimize``'s loop body (vlmteach_fast/optimization.py) cut into timed phases: predict -> light decode
-> reward forward -> reward backward (to the frames) -> denoiser backward (light decode + denoiser, checkpoint
recomputation included) -> AdamW step. The candidate is ``best_of_n``'s (vlmteach_fast/baselines.py): 4-step
sample -> full VAE decode -> reward forward. Each is run once untimed (warm-up: kernel selection, Triton
compilation) and then timed. Variants: ``one_step`` (the paper's), ``block_checkpointing`` (the same with every
transformer block checkpointed), ``k_step2`` (T = 4 steps, the last K = 2 carry gradient).
Models: bench/gpu_shapes.py (random weights, bf16). Results are written after every run, so a timeout keeps the
runs that finished.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gpu_shapes as shapes  # noqa: E402  (sets TRITON_INTERPRET before triton can be imported)
import torch  # noqa: E402

from vlmteach_fast.plan.phases import (  # noqa: E402
    CANDIDATE_PHASES, STEP_PHASES, VARIANTS, candidate as _candidate, optimize_step as _optimize_step,
)

BEST_OF = 5
CARD_BYTES = 80 * 10**9  # "fits one 80 GB card"
PROMPT = "move the red ball onto the green square without touching the walls"


def _write(path: str, data: dict) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, path)


def derive(step: dict, candidate: dict, cuda: bool, judge: bool = True, step_equiv: float | None = None,
           candidate_equiv: float | None = None) -> dict:
    """Totals, the ratio to a candidate, and the steps a ``best_of_n:5`` budget allows.

    ``optimize(budget="best_of_n:5")`` spends 5 candidates on: the plain sample it scores first (one candidate),
    the steps, and the final sample (one candidate); it stops at whichever of its two caps binds first: seconds,
    floor(3 c / s) steps, or denoiser forward-equivalents (``vlmteach_fast.cost``), floor(3 e_c / e_s) with
    ``step_equiv`` e_s and ``candidate_equiv`` e_c. The paper's target compares 16 steps + the final sample with
    Best-of-5: 16 s + c <= 5 c. ``judge=False`` (dry runs: tiny models, where the cost ratios are not those of
    real ones) leaves the targets unjudged (None)."""
    s = sum(step["seconds"][p] for p in STEP_PHASES)
    c = sum(candidate["seconds"][p] for p in CANDIDATE_PHASES)
    peak = max(list(step["peak_bytes"].values()) + list(candidate["peak_bytes"].values()))
    by_time = math.floor((BEST_OF - 2) * c / s) if s > 0 else None
    by_evals = (math.floor((BEST_OF - 2) * candidate_equiv / step_equiv)
                if step_equiv and candidate_equiv is not None else None)
    out = {"step_seconds": s, "candidate_seconds": c, "step_over_candidate": s / c if c > 0 else None,
           "steps_best_of_5_seconds_cap": by_time, "steps_best_of_5_evals_cap": by_evals,
           "steps_best_of_5_budget": min(v for v in (by_time, by_evals) if v is not None)
           if (by_time, by_evals) != (None, None) else None,
           "steps_within_best_of_5_plus_final": math.floor((BEST_OF - 1) * c / s) if s > 0 else None,
           "peak_bytes": peak}
    ratio = out["step_over_candidate"]
    out["target_step_le_third_candidate"] = (ratio is not None and ratio <= 1 / 3) if judge else None
    out["target_16_steps_plus_final_le_best_of_5"] = (16 * s + c <= BEST_OF * c) if judge else None
    out["target_fits_80GB"] = (peak <= CARD_BYTES) if (judge and cuda) else None
    return out


def run_one(reasoner, decoder, teacher, geometry, variant_name: str, device, text_tokens: int) -> dict:
    from vlmteach_fast.teacher import as_queries

    num_frames, height, width = geometry
    variant = VARIANTS[variant_name]
    prepared = reasoner.prepare(PROMPT, shapes.first_frame(height, width), num_frames=num_frames, height=height,
                                width=width, seed=0, max_sequence_length=text_tokens)
    queries = as_queries(shapes.QUESTIONS)
    reasoner.reset_lora()
    opt = torch.optim.AdamW(reasoner.lora_parameters(), lr=1e-3)
    args = (reasoner, decoder, teacher, prepared, queries, opt, variant)
    _optimize_step(shapes.PhaseClock(device), *args)  # warm-up
    step = shapes.PhaseClock(device)
    _optimize_step(step, *args)
    _candidate(shapes.PhaseClock(device), reasoner, teacher, prepared, queries)  # warm-up
    cand = shapes.PhaseClock(device)
    _candidate(cand, reasoner, teacher, prepared, queries)
    a = reasoner.family  # the family's own compression factors: 4x in time, 16x VAE x 2x2 patch in space
    lat_f = (num_frames - 1) // a.temporal + 1
    tokens = lat_f * (height // (a.spatial * a.patch[1])) * (width // (a.spatial * a.patch[2]))
    run = {"geometry": dict(num_frames=num_frames, height=height, width=width, latent_frames=lat_f,
                            denoiser_tokens=tokens),
           "variant": variant_name, "variant_args": variant, "step": step.report(), "candidate": cand.report()}
    from vlmteach_fast.cost import denoiser_cost

    k_step = variant["mode"] == "k_step"
    step_equiv = reasoner.planned_cost(variant["steps"] if k_step else 1, variant["grad_steps"] if k_step else 1,
                                       prepared.guidance_scale).equiv
    candidate_equiv = denoiser_cost(4, prepared.guidance_scale).equiv
    run.update(derive(run["step"], run["candidate"], device.type == "cuda", judge=device.type == "cuda",
                      step_equiv=step_equiv, candidate_equiv=candidate_equiv))
    return run


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="result JSON file")
    ap.add_argument("--dry-run", action="store_true", help="tiny shapes on the CPU (checks the path, measures nothing)")
    ap.add_argument("--variants", default="one_step", help=f"comma-separated, of {sorted(VARIANTS)}")
    ap.add_argument("--geometries", default="480p49", help=f"comma-separated, of {sorted(shapes.GEOMETRIES)}")
    ap.add_argument("--rank", type=int, default=16, help="LoRA rank (default 16)")
    ap.add_argument("--teacher-checkpointing", action="store_true",
                    help="RewardConfig(checkpoint_layers=True): the teacher's layers recomputed in backward")
    ap.add_argument("--last-blocks", type=int, default=None, help="LoRASpec.last_blocks (default: every block)")
    args = ap.parse_args(argv)
    variants = [v for v in args.variants.split(",") if v]
    geometries = [g for g in args.geometries.split(",") if g]
    for v in variants:
        if v not in VARIANTS:
            ap.error(f"--variants: {v!r} is not one of {sorted(VARIANTS)}")
    for g in geometries:
        if g not in shapes.GEOMETRIES:
            ap.error(f"--geometries: {g!r} is not one of {sorted(shapes.GEOMETRIES)}")

    from vlmteach_fast.reasoner import LightDecoderConfig, LoRASpec, Reasoner
    from vlmteach_fast.teacher import RewardConfig

    torch.manual_seed(0)
    device, dtype = shapes.device_and_dtype(args.dry_run)
    result = {"dry_run": args.dry_run, "environment": shapes.environment(device), "dtype": str(dtype),
              "models": {"transformer": shapes.wan_configs(args.dry_run)[0],
                         "teacher": dict(zip(("text", "vision"), shapes.qwen_configs(args.dry_run)))},
              "runs": []}
    t0 = time.perf_counter()
    pipe = shapes.wan_ti2v_pipeline(args.dry_run, device, dtype)
    reasoner = Reasoner.from_pipeline(pipe, LoRASpec(rank=args.rank, last_blocks=args.last_blocks))
    teacher = shapes.qwen25_vl_teacher(args.dry_run, device, dtype,
                                       reward_config=RewardConfig(checkpoint_layers=args.teacher_checkpointing))
    result["build_seconds"] = time.perf_counter() - t0
    result["lora"] = {"rank": args.rank, "fused": reasoner.fuse_report is not None, "last_blocks": args.last_blocks}
    result["teacher_checkpointing"] = args.teacher_checkpointing
    t0 = time.perf_counter()
    decoder_cfg = LightDecoderConfig(cache_dir=os.path.join(os.path.dirname(os.path.abspath(args.out)), "ldc"),
                                     **(dict(fit_samples=1, fit_latent_size=4) if args.dry_run else {}))
    decoder = reasoner.light_decoder(decoder_cfg)  # the one optimize uses for this config
    decoder(torch.zeros(1, reasoner.family.latent_channels, 1, 2, 2, device=device))  # fits on first use
    result["light_decoder_fit_seconds"] = time.perf_counter() - t0
    _write(args.out, result)
    text_tokens = shapes.wan_configs(args.dry_run)[2]
    failed = 0
    for g in geometries:
        geometry = shapes.DRY_GEOMETRY if args.dry_run else shapes.GEOMETRIES[g]
        for v in variants:
            t0 = time.perf_counter()
            try:
                run = run_one(reasoner, decoder, teacher, geometry, v, device, text_tokens)
            except Exception as err:  # noqa: BLE001 - record it (OOM at 704p is a result) and go on
                failed += 1
                run = {"geometry_name": g, "variant": v, "error": f"{type(err).__name__}: {err}"[:2000]}
            run["geometry_name"] = g
            run["wall_seconds"] = time.perf_counter() - t0
            result["runs"].append(run)
            _write(args.out, result)
            if device.type == "cuda":
                torch.cuda.empty_cache()
            msg = run.get("error") or (f"step {run['step_seconds']:.3f} s, candidate {run['candidate_seconds']:.3f} s,"
                                       f" peak {run['peak_bytes'] / 2**20:.1f} MiB")
            print(f"[gpu_step] {g} {v}: {msg}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
