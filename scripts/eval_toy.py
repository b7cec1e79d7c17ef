"""Measure the toy models: plain video-model pass rate / rule score on held-out instances, and the teacher's
agreement with the rule scorer on ground-truth, plain-model and corrupted videos.

Samples go through the library's own path: ``Reasoner.from_pipeline(load_pipeline())``, ``prepare`` (seed = the
instance index) and ``sample(steps=SAMPLE_STEPS)``. With ``--split train --save-samples F`` it writes model samples
of training instances for the teacher's hard-negative round instead (never held-out ones).

    python scripts/eval_toy.py --n 60 --json /tmp/toy/eval.json
"""

import argparse
import json
import time

import torch

from vlmteach_fast.reasoner import Reasoner
from vlmteach_fast.toy.corrupt import applicable_corruptions, corrupt
from vlmteach_fast.toy.models import SAMPLE_STEPS, load_pipeline
from vlmteach_fast.toy.queries import QUESTIONS
from vlmteach_fast.toy.scorers import score_video
from vlmteach_fast.toy.tasks import TASK_TYPES, make_instances
from vlmteach_fast.toy.teacher import load_teacher

KEYS = ("goal", "rules", "integrity", "background")


def sample_videos(reasoner, insts, seed_base: int = 0) -> torch.Tensor:
    out = []
    for n, inst in enumerate(insts):
        prep = reasoner.prepare(inst.prompt, inst.first_frame, num_frames=9, height=32, width=32, seed=seed_base + n)
        out.append(reasoner.sample(prep, steps=SAMPLE_STEPS).frames[0])
    return torch.stack(out)


@torch.no_grad()
def teacher_answers(teacher, videos, insts) -> torch.Tensor:
    """(N, 4) bool: teacher says Yes (P(Yes) > P(No)) to each question in KEYS order."""
    out = torch.zeros(len(insts), 4, dtype=torch.bool)
    for t in TASK_TYPES:
        sel = [n for n, i in enumerate(insts) if i.task_type == t]
        if not sel:
            continue
        logits, _ = teacher.answer_logits(videos[sel], [QUESTIONS[t][k] for k in KEYS], ["goal"] + ["process"] * 3)
        out[sel] = logits[..., teacher.yes_id] > logits[..., teacher.no_id]
    return out


def agreement(teacher, videos, insts) -> dict:
    labels = torch.tensor([[score_video(i, v).parts[k] == 1.0 for k in KEYS] for i, v in zip(insts, videos)])
    said = teacher_answers(teacher, videos, insts)
    passed = labels.all(dim=1)
    all_yes = said.all(dim=1)
    return {
        "n": len(insts),
        "accuracy_per_question": dict(zip(KEYS, (said == labels).float().mean(0).tolist())),
        "accuracy": (said == labels).float().mean().item(),
        "rule_pass_rate": passed.float().mean().item(),
        "teacher_all_yes_rate": all_yes.float().mean().item(),
        # Fooled: the teacher says Yes to every question although the rule scorer fails the video.
        "fooled": int((all_yes & ~passed).sum()),
        "goal_fooled": int((said[:, 0] & ~labels[:, 0]).sum()),
    }


def to_markdown(res: dict) -> str:
    """The measured tables (bench/RESULTS.md, "Toy world models"; earlier runs in docs/history/toy_models.md)."""
    p = res["plain"]
    lines = [f"Held-out instances: {res['n']} (make_instances(n, seed=0), split 'test'), "
             f"{res['steps']} sampling steps, {res['sample_seconds_per_instance']:.2f} s per sample.", "",
             "| plain video model | pass rate | mean rule score | goal | rules | integrity | background |",
             "|---|---|---|---|---|---|---|",
             f"| all | {p['pass_rate']:.1%} | {p['mean_score']:.3f} | " +
             " | ".join(f"{p['parts'][k]:.3f}" for k in KEYS) + " |"]
    for t, v in p["per_task"].items():
        lines.append(f"| {t} | {v['pass_rate']:.1%} | {v['mean_score']:.3f} | | | | |")
    lines += ["", f"Ground truth through the scorer: pass rate {res['gt_rule_pass_rate']:.1%}.", "",
              "| teacher vs rule scorer | accuracy (all Qs) | goal | rules | integrity | background | "
              "rule pass | teacher all-yes | fooled (all yes, rule fail) |", "|---|---|---|---|---|---|---|---|---|"]
    for name, a in res["teacher"].items():
        q = a["accuracy_per_question"]
        lines.append(f"| {name} ({a['n']}) | {a['accuracy']:.1%} | " + " | ".join(f"{q[k]:.1%}" for k in KEYS) +
                     f" | {a['rule_pass_rate']:.1%} | {a['teacher_all_yes_rate']:.1%} | {a['fooled']} |")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=60)
    ap.add_argument("--pipeline", default=None)
    ap.add_argument("--teacher", default=None)
    ap.add_argument("--split", default="test")
    ap.add_argument("--json", default=None)
    ap.add_argument("--save-samples", default=None)
    ap.add_argument("--markdown", default=None, help="write the tables to this file")
    args = ap.parse_args()
    torch.set_num_threads(1)
    insts = make_instances(args.n, seed=0 if args.split == "test" else 7, split=args.split)
    reasoner = Reasoner.from_pipeline(load_pipeline(args.pipeline))
    t0 = time.time()
    videos = sample_videos(reasoner, insts)
    sec = (time.time() - t0) / len(insts)
    if args.save_samples:
        torch.save({"videos": videos, "seeds": [i.seed for i in insts], "task_types": [i.task_type for i in insts]},
                   args.save_samples)
        print("saved", args.save_samples)
        return
    scores = [score_video(i, v) for i, v in zip(insts, videos)]
    res = {"n": len(insts), "sample_seconds_per_instance": sec, "steps": SAMPLE_STEPS, "plain": {
        "pass_rate": sum(s.passed for s in scores) / len(scores),
        "mean_score": sum(s.score for s in scores) / len(scores),
        "parts": {k: sum(s.parts[k] for s in scores) / len(scores) for k in KEYS},
        "per_task": {t: {"pass_rate": sum(s.passed for s, i in zip(scores, insts) if i.task_type == t) /
                         max(1, sum(i.task_type == t for i in insts)),
                         "mean_score": sum(s.score for s, i in zip(scores, insts) if i.task_type == t) /
                         max(1, sum(i.task_type == t for i in insts))} for t in TASK_TYPES}}}
    gt = torch.stack([i.solution for i in insts])
    res["gt_rule_pass_rate"] = sum(score_video(i, i.solution).passed for i in insts) / len(insts)
    cor_i, cor_v = [], []
    for n, i in enumerate(insts):
        kinds = applicable_corruptions(i)
        cor_i.append(i)
        cor_v.append(corrupt(i, kinds[n % len(kinds)], seed=n))
    teacher = load_teacher(args.teacher)
    res["teacher"] = {"ground_truth": agreement(teacher, gt, insts),
                      "plain_model": agreement(teacher, videos, insts),
                      "corrupted": agreement(teacher, torch.stack(cor_v), cor_i)}
    print(json.dumps(res, indent=1))
    if args.json:
        json.dump(res, open(args.json, "w"), indent=1)
    if args.markdown:
        open(args.markdown, "w").write(to_markdown(res))


if __name__ == "__main__":
    main()
