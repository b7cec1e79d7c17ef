"""Train the toy world's teacher (tiny Qwen2-VL) to answer the toy questions with Yes / No (CPU, seeded).

Recipe:
1. Videos per train-split instance: the ground truth, a physics walk (valid, goal mostly missed), one corruption
   (each kind breaks one rule-scorer part: teleport, wall crossing, vanishing ball, ...), and with probability 0.3
   an off-distribution copy (Gaussian pixel noise of std 0.05-0.3 or a random colour patch). With ``--vae`` half
   the videos go through the toy VAE (encode + decode) so the teacher learns to read decoded, blurred frames; with
   ``--samples`` (a .pt of model samples from ``scripts/eval_toy.py``) the plain model's own videos join as hard
   negatives. Labels: the rule scorer's parts of *that* video (1 only when the part is fully met).
2. Loss through the teacher's own reward path (``VLMTeacher.answer_logits``: torch preprocessing, vision tower once,
   prefix-shared LM pass): cross-entropy of the answer token against "Yes" / "No", positives and negatives weighted
   to balance each question.
3. Save model + tokenizer (safetensors / json) to ``--out``.

    python scripts/train_toy_teacher.py --out /tmp/toy/teacher --seconds 600 --vae /tmp/toy/vae
"""

import argparse
import json
import random
import time

import torch

from vlmteach_fast.toy.corrupt import applicable_corruptions, corrupt
from vlmteach_fast.toy.queries import QUESTIONS
from vlmteach_fast.toy.scorers import score_video
from vlmteach_fast.toy.tasks import make_instances, physics_video
from vlmteach_fast.toy.teacher import (ToyTeacher, build_teacher_model, build_teacher_tokenizer,
                                       teacher_image_processor, teacher_reward_config)
from vlmteach_fast.toy.world import CELL, GRID, PALETTE

KEYS = ("goal", "rules", "integrity", "background")


def off_distribution(video: torch.Tensor, rng: random.Random) -> torch.Tensor:
    v = video.clone()
    if rng.random() < 0.5:
        g = torch.Generator().manual_seed(rng.randrange(10 ** 6))
        return (v + rng.uniform(0.05, 0.3) * torch.randn(v.shape, generator=g)).clamp(0, 1)
    colour = torch.tensor(PALETTE[rng.choice(list(PALETTE))]).view(3, 1, 1)
    r, c, t = rng.randrange(GRID), rng.randrange(GRID), rng.randrange(1, v.shape[0])
    size = rng.choice((2, 4, 6))
    v[t:, :, r * CELL:r * CELL + size, c * CELL:c * CELL + size] = colour
    return v


def vae_roundtrip(vae, videos: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        x = videos.permute(0, 2, 1, 3, 4) * 2 - 1
        y = vae.decode(vae.encode(x).latent_dist.mode()).sample
    return (y / 2 + 0.5).clamp(0, 1).permute(0, 2, 1, 3, 4)


def build_dataset(insts, seed: int, vae=None, samples=None):
    """(videos (N, 9, 3, 32, 32), labels (N, 4) float {0, 1} in KEYS order, task types list)."""
    rng = random.Random(seed)
    vids, tasks = [], []
    for inst in insts:
        cands = [inst.solution, physics_video(inst, rng.randrange(10 ** 6)),
                 corrupt(inst, rng.choice(applicable_corruptions(inst)), seed=rng.randrange(10 ** 6))]
        if rng.random() < 0.3:
            cands.append(off_distribution(rng.choice(cands), rng))
        vids += cands
        tasks += [inst] * len(cands)
    videos = torch.stack(vids)
    if vae is not None:
        pick = torch.tensor([rng.random() < 0.5 for _ in vids])
        idx = pick.nonzero().flatten()
        for i in range(0, len(idx), 64):
            j = idx[i:i + 64]
            videos[j] = vae_roundtrip(vae, videos[j])
    if samples is not None:
        videos = torch.cat([videos, samples["videos"]])
        tasks += samples["instances"]
    labels = torch.tensor([[float(score_video(i, v).parts[k] == 1.0) for k in KEYS] for i, v in zip(tasks, videos)])
    return videos, labels, tasks


def teacher_loss(teacher, videos, labels, tasks, pos_weight):
    """Mean weighted CE of Yes/No over the 4 questions of each video (one task type per call)."""
    total = 0.0
    stats = []
    for t in sorted({i.task_type for i in tasks}):
        sel = [n for n, i in enumerate(tasks) if i.task_type == t]
        qs = [QUESTIONS[t][k] for k in KEYS]
        kinds = ["goal", "process", "process", "process"]
        logits, _ = teacher.answer_logits(videos[sel], qs, kinds)  # (b, 4, V)
        logp = torch.log_softmax(logits.float(), dim=-1)
        y = labels[sel]
        lp = torch.where(y > 0, logp[..., teacher.yes_id], logp[..., teacher.no_id])
        w = torch.where(y > 0, pos_weight, 1.0)
        total = total - (w * lp).sum()
        stats.append(((logp[..., teacher.yes_id] > logp[..., teacher.no_id]).float() == y).float())
    return total / labels.numel(), torch.cat(stats).mean().item()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--seconds", type=float, default=600)
    ap.add_argument("--instances", type=int, default=1200)
    ap.add_argument("--batch", type=int, default=12)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--vae", default=None)
    ap.add_argument("--samples", default=None, help=".pt of {'videos', 'seeds', 'task_types'} from eval_toy.py")
    ap.add_argument("--init", default=None, help="continue from a saved teacher")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)  # shared 2-core machine: one thread per process (see train_toy_vae.py)
    torch.manual_seed(args.seed)
    t0 = time.time()
    vae = None
    if args.vae:
        from diffusers import AutoencoderKLWan

        vae = AutoencoderKLWan.from_pretrained(args.vae).eval()
    samples = None
    if args.samples:
        from vlmteach_fast.toy.tasks import make_instance

        raw = torch.load(args.samples)
        samples = {"videos": raw["videos"],
                   "instances": [make_instance(t, s) for t, s in zip(raw["task_types"], raw["seeds"])]}
    insts = make_instances(args.instances, seed=args.seed + 2, split="train")
    videos, labels, tasks = build_dataset(insts, args.seed, vae, samples)
    pos = labels.mean(0)
    print(f"data {len(videos)} videos in {time.time() - t0:.0f}s; positive rate per question {pos.tolist()}",
          flush=True)
    pos_weight = ((1 - pos) / pos.clamp_min(1e-3)).clamp(0.2, 5.0)  # balance yes/no per question

    if args.init:
        from transformers import PreTrainedTokenizerFast, Qwen2VLForConditionalGeneration

        model = Qwen2VLForConditionalGeneration.from_pretrained(args.init, dtype=torch.float32)
        tok = PreTrainedTokenizerFast.from_pretrained(args.init)
    else:
        tok = build_teacher_tokenizer()
        model = build_teacher_model(tok, seed=args.seed)
    teacher = ToyTeacher(model, (tok, teacher_image_processor()), config=teacher_reward_config())
    model.requires_grad_(True)  # VLMTeacher freezes its model; training is the one place it learns
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    g = torch.Generator().manual_seed(args.seed)
    start, step, ema = time.time(), 0, None
    while time.time() - start < args.seconds:
        frac = (time.time() - start) / args.seconds
        for pg in opt.param_groups:
            pg["lr"] = args.lr * min(1.0, frac / 0.03) * (0.05 + 0.95 * 0.5 * (1 + torch.cos(torch.tensor(frac * 3.14159)).item()))
        idx = torch.randint(0, len(videos), (args.batch,), generator=g).tolist()
        loss, acc = teacher_loss(teacher, videos[idx], labels[idx], [tasks[i] for i in idx], pos_weight)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        ema = (loss.item(), acc) if ema is None else (0.98 * ema[0] + 0.02 * loss.item(), 0.98 * ema[1] + 0.02 * acc)
        if step % 25 == 0:
            print(f"step {step} t={time.time() - start:.0f}s loss={ema[0]:.4f} acc={ema[1]:.3f}", flush=True)
        step += 1
    model.eval()
    model.save_pretrained(args.out, safe_serialization=True)
    tok.save_pretrained(args.out)
    json.dump({"steps": step, "seconds": time.time() - start, "loss_ema": ema[0], "train_acc_ema": ema[1],
               "videos": len(videos)}, open(f"{args.out}/train_log.json", "w"))
    print("saved", args.out, "steps", step, flush=True)


if __name__ == "__main__":
    main()
