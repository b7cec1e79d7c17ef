"""Take the toy teacher apart: does its in-loop reward rank videos like the rule scorer, and can the loop game it?

Usage:
  python scripts/toy_teacher_diagnostics.py pool --instances 12 --samples 16 [--view cells]
  python scripts/toy_teacher_diagnostics.py game --instances 12 --steps 16 [--view cells] [--lr 1e-2]
  python scripts/toy_teacher_diagnostics.py align --instances 12 --samples 16
  python scripts/toy_teacher_diagnostics.py trajectory --instances 48 [--anchor 10]
  python scripts/toy_teacher_diagnostics.py loopalign --instances 24 --units '<json>'

pool: for each held-out instance, ``--samples`` plain samples (seeds 0..S-1); the within-instance Spearman rank
      correlation of the teacher's reward (exactly as the loop computes it: all frames, the teacher's view) with the
      rule score, averaged over instances whose rule scores are not all equal.
game: the gaming test. ``optimize`` against the teacher, uncapped, k-step 4/4 with the full VAE in the loop, so the
      video the teacher scores at step t *is* the final sample of the adapter at step t. Per step: the teacher's
      mean P(yes) and the rule score of that same video (mean over instances), and on the last step the fooled rate
      (teacher says yes to every question, > 0.5, while the rule scorer fails the video), split into the fooled
      videos where some answered-yes question's rule part is < 0.5 (a wrong answer) and the reference rate of the
      parts themselves taken as P(yes) (what a teacher trained on the parts as soft labels, and perfectly calibrated,
      would score: every part > 0.5 and the video failed), and the fooled rate of the in-loop video at every step
      (how soon the loop games the teacher). ``--lr``, ``--lr-schedule``, ``--anchor``, ``--anchor-pixels``,
      ``--anchor-start``: the optimizer's limits; ``--lr-first``, ``--lora-targets``: the demo's other loop settings.
align: where the teacher's gradient points. For the same plain samples as ``pool``: the cosine between the gradient
      of the loop's reward with respect to the frames and solution - video (the ground-truth oracle's direction);
      0 is a gradient blind to the goal, negative one that points away from it.
trajectory: the demo's optimize at ``best_of_n:5`` with recorded unit costs (``--units``; default: the one-gradient-step
      setting's, 5 steps; ``--grad-steps`` overrides the demo's gradient steps) on any machine; every step's
      prediction decoded in full and judged: the mean rule-score gain of step k's video, of the step the loop keeps
      (the teacher on the light decode), of the step the teacher would keep on full decodes, and of the best step by
      the rule scorer. Tells a weak gradient (no good step on the path) from a weak choice (good steps not kept).
loopalign: the demo's optimize as in ``trajectory``; at every updating step, the cosine between the teacher's
      gradient and the ground-truth oracle's gradient on the same prediction, in three spaces: the light-decoded
      frames (what ``align`` measures, on the loop's own videos), the predicted latents (what the decoder lets the
      loop move) and the adapter's parameters (the direction the update actually takes). A teacher whose frame
      gradient points at the solution but whose parameter gradient does not cannot help the loop.
All write a JSON next to the printed table (``--out``). One torch thread (tiny models, overhead-bound).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch

from vlmteach_fast import toy
from vlmteach_fast.instance import SamplingConfig
from vlmteach_fast.toy.gaming import RecordingTeacher, verdict
from vlmteach_fast.toy.scorers import PARTS


def spearman(a: list[float], b: list[float]) -> float | None:
    """Spearman rank correlation (average ranks for ties); None when either side is constant."""
    ta, tb = torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)
    if ta.std() == 0 or tb.std() == 0:
        return None

    def ranks(t):
        order = t.argsort()
        r = torch.empty_like(t)
        r[order] = torch.arange(len(t), dtype=torch.float64)
        for v in t.unique():  # average ranks of ties
            m = t == v
            r[m] = r[m].mean()
        return r

    ra, rb = ranks(ta), ranks(tb)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / (ra.norm() * rb.norm()))


def load(args):
    pipe = toy.load_pipeline(args.pipeline)
    paths = args.teacher.split(",") if args.teacher else None
    teacher = toy.load_teacher(paths, view=args.view, reduce=args.reduce)
    return pipe, teacher


def sampling(i: int, seed: int) -> SamplingConfig:
    return SamplingConfig(num_frames=toy.NUM_FRAMES, height=toy.SIZE, width=toy.SIZE,
                          final_steps=toy.SAMPLE_STEPS, seed=seed * 1000 + i)


def pool_samples(pipe, teacher, args):
    """Per held-out instance: (index, instance, queries, ``--samples`` plain samples, each (1, F, 3, H, W))."""
    from vlmteach_fast.instance import setup_instance

    for i, inst in enumerate(toy.make_instances(args.instances, seed=args.seed)):
        queries = toy.queries_for(inst)
        setup = setup_instance(pipe, teacher, inst.prompt, inst.first_frame, queries, sampling(i, args.seed))
        setup.reasoner.reset_lora()
        videos = []
        for s in range(args.samples):
            prepared = setup.reasoner.prepare(inst.prompt, inst.first_frame, **_geometry(),
                                              seed=args.seed * 1000 + i + 7919 * s)
            with torch.no_grad():
                videos.append(setup.reasoner.sample(prepared, steps=toy.SAMPLE_STEPS).frames)
        yield i, inst, queries, videos


def run_pool(args) -> dict:
    pipe, teacher = load(args)
    rows = []
    for i, inst, queries, videos in pool_samples(pipe, teacher, args):
        rules, rewards, p_all = [], [], []
        for frames in videos:
            with torch.no_grad():
                rew = teacher.reward(frames, queries)
            rules.append(toy.score_video(inst, frames[0]).score)
            rewards.append(float(rew.reward[0]))
            p_all.append(rew.log_probs[0].exp().tolist())
        rho = spearman(rewards, rules)
        rows.append(dict(instance=i, task=inst.task_type, rho=rho, rules=rules, rewards=rewards, p_yes=p_all))
        print(f"[{i + 1}/{args.instances}] {inst.task_type:<5} rho {rho if rho is None else round(rho, 3)} "
              f"rule {sum(rules) / len(rules):.3f} (max {max(rules):.2f})", flush=True)
    rhos = [r["rho"] for r in rows if r["rho"] is not None]
    summary = dict(mean_rho=sum(rhos) / max(1, len(rhos)), instances_with_rho=len(rhos), instances=len(rows))
    print(f"\nwithin-instance Spearman(teacher reward, rule score) = {summary['mean_rho']:+.3f} "
          f"over {len(rhos)}/{len(rows)} instances (view={args.view})")
    return dict(summary=summary, rows=rows)


def run_align(args) -> dict:
    from vlmteach_fast.toy.gaming import gradient_alignment

    pipe, teacher = load(args)
    rows = []
    for i, inst, _, videos in pool_samples(pipe, teacher, args):  # the pool's samples
        cos = gradient_alignment(teacher, torch.cat(videos), [inst] * len(videos)).tolist()
        rows.append(dict(instance=i, task=inst.task_type, cos=cos))
        print(f"[{i + 1}/{args.instances}] {inst.task_type:<5} cos {sum(cos) / len(cos):+.3f}", flush=True)
    per_task = {t: [c for r in rows if r["task"] == t for c in r["cos"]] for t in toy.TASK_TYPES}
    every = [c for r in rows for c in r["cos"]]
    summary = dict(mean_cos=sum(every) / len(every), positive=sum(c > 0 for c in every) / len(every),
                   per_task={t: sum(v) / len(v) for t, v in per_task.items() if v})
    print(f"\nmean cos(reward gradient, solution - video) = {summary['mean_cos']:+.3f} "
          f"(> 0 in {100 * summary['positive']:.0f}% of {len(every)} videos); per task {summary['per_task']}")
    return dict(summary=summary, rows=rows)


# The one-gradient-step acceptance runs' units (docs/history/toy_optimize_vs_best_of_n.md).
RECORDED_UNITS = {"candidate": 0.10973441900023317, "step": 0.0967326870013494, "evaluation": 0.06668617899958917,
                  "finish": 0.055387727999914205}


def run_trajectory(args) -> dict:
    import dataclasses

    from vlmteach_fast.demo import demo_optimize_config
    from vlmteach_fast.instance import score_frames
    from vlmteach_fast.optimization import optimize
    from vlmteach_fast.reasoner import Reasoner

    pipe, teacher = load(args)
    base = demo_optimize_config()
    overrides = {k: v for k, v in (("anchor", args.anchor), ("grad_steps", args.grad_steps)) if v is not None}
    base = dataclasses.replace(base, **overrides)
    units = json.loads(args.units) if args.units else RECORDED_UNITS
    reasoner = Reasoner.from_pipeline(pipe, lora=base.lora)  # optimize runs on it: its predictions are recorded
    latents = []
    predict = reasoner.predict

    def recording_predict(*a, **kw):
        out = predict(*a, **kw)
        latents.append(out.latents.detach().clone())
        return out

    reasoner.predict = recording_predict
    rows = []
    for i, inst in enumerate(toy.make_instances(args.instances, seed=args.seed)):
        queries = toy.queries_for(inst)
        cfg = dataclasses.replace(base, budget={"best_of_n": 5, "unit_costs": units},
                                  sampling=sampling(i, args.seed))
        latents.clear()
        res = optimize(reasoner, teacher, inst.prompt, image=inst.first_frame, queries=queries, config=cfg)
        rule, full_reward, full_p = [], [], []
        for lat in latents:
            with torch.no_grad():
                frames = reasoner.decode(lat)
            rule.append(toy.score_video(inst, frames[0]).score)
            scored = score_frames(teacher, frames, queries)
            full_reward.append(float(scored[0].reward[0]))
            full_p.append(list(scored[1]))
        full_pick = max(range(len(rule)), key=full_reward.__getitem__)
        rows.append(dict(instance=i, task=inst.task_type, rule=rule, full_reward=full_reward, kept=res.best_step,
                         p_yes=[h.p_yes for h in res.history], loss=[h.loss for h in res.history], full_p_yes=full_p,
                         weights=list(queries.weights) if queries.weights else None,
                         final=toy.score_video(inst, res.frames[0]).score, full_pick=full_pick))
        print(f"[{i + 1}/{args.instances}] {inst.task_type:<5} rule per step " + " ".join(f"{r:.2f}" for r in rule)
              + f"  kept {res.best_step}, full-decode pick {full_pick}", flush=True)
    plain = [r["rule"][0] for r in rows]

    def gain(values):
        return sum(v - p for v, p in zip(values, plain)) / len(rows)

    steps = min(len(r["rule"]) for r in rows)
    summary = dict(per_step=[gain([r["rule"][k] for r in rows]) for k in range(steps)],
                   kept=gain([r["final"] for r in rows]),
                   full_decode_pick=gain([r["rule"][r["full_pick"]] for r in rows]),
                   best_step=gain([max(r["rule"]) for r in rows]))
    print("\nrule-score gain over the plain prediction: per step " +
          " / ".join(f"{g:+.3f}" for g in summary["per_step"]) +
          f"; kept {summary['kept']:+.3f}; teacher's pick on full decodes {summary['full_decode_pick']:+.3f}; "
          f"best step {summary['best_step']:+.3f}")
    return dict(summary=summary, rows=rows)


def _flat(grads) -> torch.Tensor:
    return torch.cat([g.flatten() for g in grads]).double()


class _AligningTeacher:
    """Teacher proxy for ``loopalign``: on every reward call with a graph, the gradients of the teacher's reward and
    of the ground-truth oracle's with respect to the frames, the recorded latents and the adapter's parameters."""

    def __init__(self, teacher, params, latents: list):
        self.teacher, self.params, self.latents, self.oracle, self.rows = teacher, params, latents, None, []
        self.oracle_values = []  # the oracle's reward of every scored video

    def reward(self, frames, queries, **kwargs):
        out = self.teacher.reward(frames, queries, **kwargs)
        if self.oracle is None:
            return out
        o = self.oracle.reward(frames, queries).reward.sum()
        self.oracle_values.append(float(o.detach()) / len(frames))
        if frames.requires_grad:
            wrt = [frames, self.latents[-1], *self.params]
            g_t = torch.autograd.grad(out.reward.sum(), wrt, retain_graph=True)
            g_o = torch.autograd.grad(o, wrt, retain_graph=True)

            def cos(a, b):
                a, b = _flat(a), _flat(b)
                return float(a @ b / (a.norm() * b.norm()).clamp_min(1e-30))

            # the oracle's first-order gain of a sign step along the teacher's gradient (AdamW's first step), as a
            # fraction of its gain along its own
            t, o_p = _flat(g_t[2:]), _flat(g_o[2:])
            sign = float((t.sign() * o_p).sum() / o_p.abs().sum().clamp_min(1e-30))
            self.rows.append(dict(frames=cos(g_t[:1], g_o[:1]), latents=cos(g_t[1:2], g_o[1:2]),
                                  params=cos(g_t[2:], g_o[2:]), sign=sign))
        return out

    def __getattr__(self, name):
        return getattr(self.teacher, name)


def plain_rule(reasoner, inst, latents) -> float:
    """Rule score of the full decode of the loop's first prediction (the fresh adapter acts as no adapter)."""
    with torch.no_grad():
        return toy.score_video(inst, reasoner.decode(latents.detach())[0]).score


def run_loopalign(args) -> dict:
    import dataclasses

    from vlmteach_fast.demo import demo_optimize_config
    from vlmteach_fast.optimization import optimize
    from vlmteach_fast.reasoner import Reasoner
    from vlmteach_fast.toy.oracle import GroundTruthOracle

    oracle_loop = args.teacher == "oracle"  # the oracle drives the loop too: the reference trajectory
    if oracle_loop:
        args.teacher = None
    pipe, teacher = load(args)
    base = demo_optimize_config()
    if oracle_loop:  # as in the acceptance benchmark: only the budget stops it, no trust region
        base = dataclasses.replace(base, yes_threshold=1.0, anchor=0.0)
    if args.anchor is not None:
        base = dataclasses.replace(base, anchor=args.anchor)
    units = json.loads(args.units) if args.units else RECORDED_UNITS
    reasoner = Reasoner.from_pipeline(pipe, lora=base.lora)
    latents = []
    predict = reasoner.predict

    def recording_predict(*a, **kw):
        out = predict(*a, **kw)
        latents.append(out.latents)
        return out

    reasoner.predict = recording_predict
    wrapped = _AligningTeacher(teacher, reasoner.lora_parameters(), latents)
    rows = []
    for i, inst in enumerate(toy.make_instances(args.instances, seed=args.seed)):
        cfg = dataclasses.replace(base, budget={"best_of_n": 5, "unit_costs": units}, sampling=sampling(i, args.seed))
        latents.clear()
        wrapped.rows, wrapped.oracle_values, wrapped.oracle = [], [], GroundTruthOracle(inst)
        if oracle_loop:
            wrapped.teacher = wrapped.oracle
        res = optimize(reasoner, wrapped, inst.prompt, image=inst.first_frame, queries=toy.queries_for(inst),
                       config=cfg)
        gain = toy.score_video(inst, res.frames[0]).score - plain_rule(reasoner, inst, latents[0])
        rows.append(dict(instance=i, task=inst.task_type, steps=wrapped.rows, oracle=wrapped.oracle_values,
                         rule_gain=gain))
        print(f"[{i + 1}/{args.instances}] {inst.task_type:<5} cos frames / latents / params per step: " +
              "  ".join(f"{r['frames']:+.2f}/{r['latents']:+.2f}/{r['params']:+.2f}" for r in wrapped.rows),
              flush=True)
    summary = {}
    for space in ("frames", "latents", "params", "sign"):
        every = [s[space] for r in rows for s in r["steps"]]
        first = [r["steps"][0][space] for r in rows if r["steps"]]
        summary[space] = dict(mean=sum(every) / len(every), first_step=sum(first) / len(first),
                              positive=sum(c > 0 for c in every) / len(every))
    n_steps = min(len(r["oracle"]) for r in rows)
    summary["oracle_reward"] = [sum(r["oracle"][k] for r in rows) / len(rows) for k in range(n_steps)]
    summary["rule_gain"] = sum(r["rule_gain"] for r in rows) / len(rows)
    print("oracle reward per step " + " / ".join(f"{v:.4f}" for v in summary["oracle_reward"]) +
          f"; final video's rule-score gain {summary['rule_gain']:+.3f}")
    print("\ncos(teacher gradient, oracle gradient) over every updating step: " + "; ".join(
        f"{k} {v['mean']:+.3f} (first step {v['first_step']:+.3f}, > 0 in {100 * v['positive']:.0f}%)"
        for k, v in summary.items() if isinstance(v, dict)))
    return dict(summary=summary, rows=rows)


def _geometry():
    return dict(num_frames=toy.NUM_FRAMES, height=toy.SIZE, width=toy.SIZE)


def run_game(args) -> dict:
    from vlmteach_fast.optimization import OptimizeConfig, optimize
    from vlmteach_fast.reasoner import LightDecoderConfig, LoRASpec

    pipe, teacher = load(args)
    judge = toy.load_teacher(args.judge) if args.judge else None
    targets = dict(target_modules=tuple(args.lora_targets.split(","))) if args.lora_targets else {}
    rows = []
    for i, inst in enumerate(toy.make_instances(args.instances, seed=args.seed)):
        queries = toy.queries_for(inst)
        rec = RecordingTeacher(teacher)
        cfg = OptimizeConfig(mode="k_step", steps=toy.SAMPLE_STEPS, grad_steps=toy.SAMPLE_STEPS, lr=args.lr,
                             max_steps=args.steps, patience=args.steps + 1, yes_threshold=1.0,
                             decoder=LightDecoderConfig(kind="full"),
                             lora=LoRASpec(rank=8, init_seed=args.init_seed, **targets),
                             lr_first=args.lr_first, lr_schedule=args.lr_schedule,
                             sampling=sampling(i, args.seed), keep_initial_if_better=False, progress=False,
                             anchor=args.anchor or 0.0, anchor_pixels=args.anchor_pixels or 0.0,
                             anchor_start=args.anchor_start)
        t0 = time.perf_counter()
        res = optimize(pipe, rec, inst.prompt, image=inst.first_frame, queries=queries, config=cfg, judge=judge)
        # rec.frames: [initial sample (scored), step 0..S-1 in-loop videos, final sample (scored)]
        loop_frames = rec.frames[1:1 + len(res.history)]
        loop_scores = [toy.score_video(inst, f[0]) for f in loop_frames]
        rule_curve = [r.score for r in loop_scores]
        fooled_curve = [verdict(h.p_yes, r).fooled for h, r in zip(res.history, loop_scores)]
        p_curve = [sum(h.p_yes) / len(h.p_yes) for h in res.history]
        final_rule = toy.score_video(inst, res.frames[0])
        v = verdict(res.final_p_yes, final_rule)
        rows.append(dict(instance=i, task=inst.task_type, rule_curve=rule_curve, p_curve=p_curve,
                         fooled_curve=fooled_curve,
                         final_rule=final_rule.score, final_passed=final_rule.passed, final_p_yes=res.final_p_yes,
                         final_parts=[final_rule.parts[k] for k in PARTS], wrong_yes=v.wrong_yes,
                         calibrated_fooled=v.calibrated_fooled,
                         steps=len(res.history), stop_reason=res.stop_reason,
                         fooled=v.fooled, seconds=time.perf_counter() - t0))
        print(f"[{i + 1}/{args.instances}] {inst.task_type:<5} rule {rule_curve[0]:.2f} -> {final_rule.score:.2f}  "
              f"p_yes {p_curve[0]:.2f} -> {sum(res.final_p_yes) / len(res.final_p_yes):.2f}"
              f"{'  FOOLED' if v.fooled else ''}", flush=True)
    n = len(rows)
    steps = min(len(r["rule_curve"]) for r in rows)
    rule_mean = [sum(r["rule_curve"][t] for r in rows) / n for t in range(steps)]
    p_mean = [sum(r["p_curve"][t] for r in rows) / n for t in range(steps)]
    traj_rho = [spearman(r["p_curve"], r["rule_curve"]) for r in rows]
    traj_rho = [x for x in traj_rho if x is not None]
    fooled_mean = [sum(r["fooled_curve"][t] for r in rows) / n for t in range(steps)]
    summary = dict(rule_curve=rule_mean, p_curve=p_mean, fooled_curve=fooled_mean,
                   fooled_rate=sum(r["fooled"] for r in rows) / n,
                   fooled_wrong_rate=sum(r["fooled"] and r["wrong_yes"] > 0 for r in rows) / n,
                   calibrated_fooled_rate=sum(r["calibrated_fooled"] for r in rows) / n,
                   rule_gain=sum(r["final_rule"] - r["rule_curve"][0] for r in rows) / n,
                   pass_rate=sum(r["final_passed"] for r in rows) / n,
                   traj_rho=sum(traj_rho) / max(1, len(traj_rho)),
                   mean_steps=sum(r["steps"] for r in rows) / n, seconds_per_instance=sum(r["seconds"] for r in rows) / n)
    print(f"\nview={args.view} lr={args.lr}: rule {rule_mean[0]:.3f} -> {rule_mean[-1]:.3f} (final-video gain "
          f"{summary['rule_gain']:+.3f}, pass {100 * summary['pass_rate']:.0f}%), teacher P(yes) {p_mean[0]:.3f} -> "
          f"{p_mean[-1]:.3f}, fooled {100 * summary['fooled_rate']:.0f}% (with a yes where the part is < 0.5: "
          f"{100 * summary['fooled_wrong_rate']:.0f}%; the parts themselves as P(yes) would be fooled on "
          f"{100 * summary['calibrated_fooled_rate']:.0f}%), trajectory rho {summary['traj_rho']:+.3f}, "
          f"{summary['mean_steps']:.1f} steps, {summary['seconds_per_instance']:.1f} s / instance")
    print("fooled by step (the in-loop video): " + " ".join(f"{100 * x:.0f}" for x in fooled_mean))
    return dict(summary=summary, rows=rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=("pool", "game", "align", "trajectory", "loopalign"))
    ap.add_argument("--instances", type=int, default=12)
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--init-seed", dest="init_seed", type=int, default=0, help="game: the LoRA's lora_A seed")
    ap.add_argument("--view", default=None, help="teacher input view (frames | cells | palette); default: trained")
    ap.add_argument("--pipeline", default=None)
    ap.add_argument("--teacher", default=None,
                    help="teacher folder; several comma-separated: an ensemble; loopalign: 'oracle' lets the "
                         "ground-truth oracle drive the loop (the reference trajectory)")
    ap.add_argument("--reduce", default="mean", choices=("mean", "min"), help="how an ensemble combines answers")
    ap.add_argument("--judge", default=None, help="game: a held-out judge teacher folder (optimize(..., judge=))")
    ap.add_argument("--anchor", type=float, default=None,
                    help="trajectory: override the demo's trust-region weight; game: the trust region (default 0)")
    ap.add_argument("--anchor-start", dest="anchor_start", type=int, default=0,
                    help="game: OptimizeConfig.anchor_start (the trust region counts from this step on)")
    ap.add_argument("--anchor-pixels", dest="anchor_pixels", type=float, default=None,
                    help="game: OptimizeConfig.anchor_pixels (an L1 hold on the decoded frames; default 0)")
    ap.add_argument("--lr-first", dest="lr_first", type=float, default=1.0, help="game: OptimizeConfig.lr_first")
    ap.add_argument("--lr-schedule", dest="lr_schedule", default="constant",
                    help="game: OptimizeConfig.lr_schedule (the decay runs over --steps updates)")
    ap.add_argument("--lora-targets", dest="lora_targets", default=None,
                    help="game: comma-separated LoRA target modules (default: LoRASpec's)")
    ap.add_argument("--grad-steps", dest="grad_steps", type=int, default=None,
                    help="trajectory: override the demo's gradient steps (k-step 4/K)")
    ap.add_argument("--units", default=None, help="trajectory: unit costs as JSON (bench/toy_acceptance.py --units)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    result = {"pool": run_pool, "game": run_game, "align": run_align, "trajectory": run_trajectory,
              "loopalign": run_loopalign}[args.what](args)
    result["args"] = vars(args)
    result["machine"] = f"{platform.machine()}, {os.cpu_count()} cores, 1 torch thread, torch {torch.__version__}"
    result["seconds"] = time.perf_counter() - t0
    out = args.out or f"bench/toy_diag/{args.what}_{args.view or 'trained'}.json"
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"{result['seconds']:.0f} s; wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
