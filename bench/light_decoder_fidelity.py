"""How faithful each light decoder is on the shipped toy model, and what that does to the loop (bench/RESULTS.md).

Usage: python bench/light_decoder_fidelity.py [--instances 12] [--candidates 6] [--json out.json]

On held-out instances (``make_instances(n, seed=0, split="test")``), for each decoder (linear, the shipped tiny
decoder, full):
- PSNR against the full decode, on the model's one-step predictions (what the loop decodes) and on its 4-step samples,
  ``candidates`` noise seeds per instance;
- reward agreement: the shipped toy teacher's reward (its own queries) on the light vs the full decode of the
  2 x ``candidates`` latents of an instance, as a Spearman rank correlation, averaged over instances;
- the red-oracle run: ``optimize`` against ``RedOracle`` with the default ``OptimizeConfig`` except lr 2e-2, on test
  instance 0 with noise seeds 0 and 1: the loop's last P(yes) (on the light decode), the final video's P(yes) (full
  decode), the stop reason and the steps.
Decode timings are in bench/bench_light_decoder.py. One torch thread.
"""

import argparse
import json
import platform
import time

import torch

from vlmteach_fast.instance import SamplingConfig
from vlmteach_fast.optimization import OptimizeConfig, optimize
from vlmteach_fast.reasoner import LightDecoder, LightDecoderConfig, Reasoner
from vlmteach_fast.toy import NUM_FRAMES, SAMPLE_STEPS, SIZE, make_instances
from vlmteach_fast.toy.models import load_pipeline
from vlmteach_fast.toy.oracle import RedOracle
from vlmteach_fast.toy.teacher import load_teacher

KINDS = ("linear", "tiny", "full")
_CONFIGS = {"linear": LightDecoderConfig(kind="linear"), "tiny": LightDecoderConfig(kind="auto"),
            "full": LightDecoderConfig(kind="full")}


def model_latents(reasoner, inst, seeds):
    """(one-step predictions (S, C, F, h, w), 4-step samples (S, C, F, h, w)) of one instance."""
    one, few = [], []
    with torch.no_grad():
        for s in seeds:
            prep = reasoner.prepare(inst.prompt, inst.first_frame, num_frames=NUM_FRAMES, height=SIZE, width=SIZE,
                                    seed=s)
            one.append(reasoner.predict(prep).latents)
            few.append(reasoner.sample(prep, steps=SAMPLE_STEPS, decode=False).latents)
    return torch.cat(one), torch.cat(few)


def fidelity_table(n: int, candidates: int) -> dict:
    reasoner = Reasoner.from_pipeline(load_pipeline())
    teacher = load_teacher()
    decoders = {k: LightDecoder(reasoner, _CONFIGS[k]) for k in KINDS}
    assert decoders["tiny"].kind == "tiny", "the shipped tiny decoder was not found for the toy VAE"
    rows = {k: {"psnr_one_step": [], "psnr_sample": [], "spearman": []} for k in KINDS}
    for i, inst in enumerate(make_instances(n, seed=0, split="test")):
        one, few = model_latents(reasoner, inst, [1000 * i + c for c in range(candidates)])
        queries = teacher.synthesize_queries(inst.prompt)
        for k, d in decoders.items():
            f1 = d.measure_fidelity(one)
            f2 = d.measure_fidelity(few)
            both = d.measure_fidelity(torch.cat([one, few]), teacher, queries)
            rows[k]["psnr_one_step"].append(f1.psnr_db)
            rows[k]["psnr_sample"].append(f2.psnr_db)
            rows[k]["spearman"].append(both.reward_spearman)
        print(f"instance {i}: " + ", ".join(f"{k} {rows[k]['psnr_one_step'][-1]:.1f} dB / rho "
                                            f"{rows[k]['spearman'][-1]:+.2f}" for k in KINDS), flush=True)

    def mean(xs):
        xs = [x for x in xs if x == x and x != float("inf")]  # skip NaN (constant rewards) and inf (exact)
        return sum(xs) / len(xs) if xs else float("nan")

    return {k: {m: mean(v) for m, v in r.items()} | {"n_spearman": sum(x == x for x in r["spearman"])}
            for k, r in rows.items()}


def red_oracle_runs(seeds=(0, 1)) -> dict:
    inst = make_instances(1, seed=0, split="test")[0]
    out = {}
    for k in KINDS:
        for s in seeds:
            cfg = OptimizeConfig(lr=2e-2, decoder=_CONFIGS[k], progress=False,
                                 sampling=SamplingConfig(num_frames=NUM_FRAMES, height=SIZE, width=SIZE,
                                                         final_steps=SAMPLE_STEPS, seed=s))
            t0 = time.perf_counter()
            res = optimize(load_pipeline(), RedOracle(), inst.prompt, image=inst.first_frame, config=cfg)
            out[f"{k}/seed{s}"] = {"initial": res.initial_p_yes[0], "loop_last": res.history[-1].p_yes[0],
                                   "final": res.final_p_yes[0], "stop": res.stop_reason, "steps": len(res.history),
                                   "used_initial": res.used_initial, "seconds": time.perf_counter() - t0}
            print(k, s, out[f"{k}/seed{s}"], flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--instances", type=int, default=12)
    ap.add_argument("--candidates", type=int, default=6)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    table = fidelity_table(args.instances, args.candidates)
    red = red_oracle_runs()
    print(f"\nmachine: {platform.machine()}, 1 torch thread, torch {torch.__version__}; {args.instances} test "
          f"instances x {args.candidates} seeds; {time.perf_counter() - t0:.0f} s in all\n")
    print("| decoder | PSNR vs full, one-step predictions | PSNR vs full, 4-step samples | teacher-reward rank "
          "correlation (mean over instances) |\n|---|---|---|---|")
    for k in KINDS:
        r = table[k]
        db = (lambda v: "exact" if k == "full" else f"{v:.1f} dB")  # noqa: E731 (full vs itself: infinite PSNR)
        print(f"| {k} | {db(r['psnr_one_step'])} | {db(r['psnr_sample'])} | {r['spearman']:+.2f} "
              f"({r['n_spearman']} instances) |")
    print("\n| decoder | seed | P(yes) plain | loop's last P(yes) (light decode) | final video P(yes) | stop | steps |"
          "\n|---|---|---|---|---|---|---|")
    for key, r in red.items():
        k, s = key.split("/seed")
        print(f"| {k} | {s} | {r['initial']:.2f} | {r['loop_last']:.2f} | {r['final']:.2f} | {r['stop']} | "
              f"{r['steps']} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"table": table, "red_oracle": red}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
