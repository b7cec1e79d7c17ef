"""Train the toy world's teacher (tiny Qwen2-VL) to answer the toy questions with Yes / No (CPU, seeded).

Recipe:
1. Videos per train-split instance: the ground truth, a physics walk (valid, goal mostly missed), one corruption
   (each kind breaks one rule-scorer part: teleport, wall crossing, vanishing ball, ...), and with probability 0.3
   an off-distribution copy (Gaussian pixel noise of std 0.05-0.3 or a random colour patch). With ``--vae`` half
   the videos go through the toy VAE (encode + decode) so the teacher learns to read decoded, blurred frames; with
   ``--samples`` (a .pt of model samples from ``scripts/eval_toy.py``) the plain model's own videos join as hard
   negatives. Labels: the rule scorer's parts of *that* video: 1 only when the part is fully met, or with
   ``--soft-labels`` the part itself (the fraction of frames or transitions where the rule holds), raised to
   ``--label-power`` (default 1; a larger power makes P(yes) > 0.5 mean the rule holds nearly throughout, as the
   questions ask, while keeping the parts' order).
2. Loss through the teacher's own reward path (``VLMTeacher.answer_logits``: torch preprocessing, vision tower once,
   prefix-shared LM pass): cross-entropy of the answer token against "Yes" / "No", positives and negatives weighted
   to balance each question.
3. With ``--view cells|palette`` the teacher sees one colour per 4-px cell (``vlmteach_fast.toy.views``) in training
   and, through ``view.json`` in the output folder, wherever it is loaded: patterns inside a cell cannot fool it.
4. With ``--model-samples N``: N plain samples of the shipped video model on train instances join as hard examples.
5. With ``--rounds R``: R adversarial rounds after the first phase. Each round runs the gaming test
   (``toy.gaming.gaming_run``: optimize against the current teacher, every in-loop video kept) on
   ``--round-instances`` fresh train instances, labels those videos with the rule scorer, adds them to a hard pool
   (half of every batch is drawn from it) and trains ``--round-seconds`` more. Each round's teacher is saved to
   ``OUT/round{r}``. With ``--round-source loop`` the round videos are instead every light-decoded video the demo's
   own 4-step loop (no trust region) shows the teacher, and with ``--grad-align`` they join the alignment pool.
6. With ``--noise-std S`` (input robustness): half of every batch is shown with per-cell Gaussian noise (one
   value per 4-px cell, frame and channel, std drawn in [0, S]) under the clean video's labels; with ``--smooth L``
   also a smoothness penalty: L times the squared change of each answer's yes-no logit gap between the clean and a
   noised copy of every video (the teacher's answer may not move much when the cells' colours move a little).
7. With ``--pools N --pool-samples K --rank-weight W`` (ranking): K plain samples of each of N train instances,
   scored by the rule scorer; every training step adds W times a pairwise logistic loss on one pool: the teacher's
   reward exactly as the loop computes it must order the pool's samples as their rule scores do (pairs whose scores
   differ by > 0.02). This targets the within-instance rank correlation over plain samples that Best-of-N and the
   loop's choice of the kept step rely on.
8. With ``--grad-align W --align-samples N`` (gradient alignment): N plain samples of fresh train instances; every
   training step adds W times 1 - cos(g, d) on ``--align-batch`` of them, where g is the gradient of the loop's
   reward (exactly as the loop computes it) with respect to the frames and d = solution - video, the direction the
   ground-truth oracle's gradient takes. Values that rank are not enough for the loop, which follows the gradient;
   this trains the gradient itself (double backward through the teacher, eager attention).
9. Save model + tokenizer (safetensors / json) to ``--out``.

    python scripts/train_toy_teacher.py --out /tmp/toy/teacher --seconds 600 --vae /tmp/toy/vae
"""

import argparse
import json
import random
import time

import torch

from vlmteach_fast.toy.corrupt import applicable_corruptions, corrupt
from vlmteach_fast.toy.gaming import gradient_alignment
from vlmteach_fast.toy.queries import QUESTIONS
from vlmteach_fast.toy.scorers import score_video
from vlmteach_fast.toy.tasks import make_instance, make_instances, physics_video
from vlmteach_fast.toy.teacher import (ToyTeacher, build_teacher_model, build_teacher_tokenizer,
                                       teacher_image_processor, teacher_reward_config)
from vlmteach_fast.toy.views import VIEWS, make_view
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
    return videos, label(tasks, videos), tasks


ROBUST = {"noise_std": 0.0, "smooth": 0.0}  # set by --noise-std / --smooth


def cell_noise(videos: torch.Tensor, std: float, g: torch.Generator) -> torch.Tensor:
    """(B, F, 3, H, W) + Gaussian noise constant over each CELL x CELL block (std drawn per video in [0, std])."""
    B, Fr, C, H, W = videos.shape
    scale = torch.rand(B, 1, 1, 1, 1, generator=g) * std
    noise = torch.randn(B, Fr, C, H // CELL, W // CELL, generator=g) * scale
    return (videos + noise.repeat_interleave(CELL, -2).repeat_interleave(CELL, -1)).clamp(0, 1)


def teacher_loss(teacher, videos, labels, tasks, pos_weight, g=None):
    """Mean weighted CE of Yes/No over the 4 questions of each video (one task type per call), plus the smoothness
    penalty with ``--smooth``."""
    if teacher.frame_transform is not None:  # the view the teacher is shown in the loop
        videos = teacher.frame_transform(videos)  # (b, 9, 3, 32, 32)
    if ROBUST["noise_std"] > 0 and g is not None:
        half = len(videos) // 2
        videos = torch.cat([videos[:half], cell_noise(videos[half:], ROBUST["noise_std"], g)])
    total, penalty = 0.0, 0.0
    stats = []
    for t in sorted({i.task_type for i in tasks}):
        sel = [n for n, i in enumerate(tasks) if i.task_type == t]
        qs = [QUESTIONS[t][k] for k in KEYS]
        kinds = ["goal", "process", "process", "process"]
        logits, _ = teacher.answer_logits(videos[sel], qs, kinds)  # (b, 4, V)
        logp = torch.log_softmax(logits.float(), dim=-1)
        y = labels[sel]
        # cross-entropy against the target mixture y * Yes + (1 - y) * No (hard labels: y in {0, 1})
        total = total - (pos_weight * y * logp[..., teacher.yes_id] + (1 - y) * logp[..., teacher.no_id]).sum()
        stats.append(((logp[..., teacher.yes_id] > logp[..., teacher.no_id]).float() == (y >= 0.5)).float())
        if ROBUST["smooth"] > 0 and g is not None:
            noisy, _ = teacher.answer_logits(cell_noise(videos[sel], max(ROBUST["noise_std"], 0.05), g), qs, kinds)
            gap = logits[..., teacher.yes_id] - logits[..., teacher.no_id]
            gap_noisy = noisy[..., teacher.yes_id] - noisy[..., teacher.no_id]
            penalty = penalty + (gap.float() - gap_noisy.float()).square().sum()
    return (total + ROBUST["smooth"] * penalty) / labels.numel(), torch.cat(stats).mean().item()


SOFT_LABELS = False  # set by --soft-labels
LABEL_POWER = 1.0  # set by --label-power


def label(tasks, videos) -> torch.Tensor:
    """(N, 4) targets in KEYS order: the rule scorer's parts (fractions in [0, 1]) raised to ``LABEL_POWER`` with
    ``SOFT_LABELS``, else 1 only where a part is fully met."""
    if SOFT_LABELS:
        return torch.tensor([[score_video(i, v).parts[k] ** LABEL_POWER for k in KEYS]
                             for i, v in zip(tasks, videos)])
    return torch.tensor([[float(score_video(i, v).parts[k] == 1.0) for k in KEYS] for i, v in zip(tasks, videos)])


# The toy pipeline folder whose samples and loops the teacher learns from (--pipeline; None: the shipped one).
PIPELINE: str | None = None


def plain_sampler():
    """``sample(instance, seed) -> (9, 3, 32, 32)``: a plain sample of the toy video model (no gradient)."""
    from vlmteach_fast.reasoner import Reasoner
    from vlmteach_fast.toy import SAMPLE_STEPS, load_pipeline

    reasoner = Reasoner.from_pipeline(load_pipeline(PIPELINE))

    @torch.no_grad()
    def sample(inst, seed: int) -> torch.Tensor:
        prep = reasoner.prepare(inst.prompt, inst.first_frame, num_frames=9, height=32, width=32, seed=seed)
        return reasoner.sample(prep, steps=SAMPLE_STEPS).frames[0]

    return sample


def model_samples(n: int, seed: int):
    """(videos (n, 9, 3, 32, 32), instances): plain samples of the shipped video model on fresh train instances."""
    sample = plain_sampler()
    insts = make_instances(n, seed=seed + 50, split="train")
    return torch.stack([sample(inst, seed + k) for k, inst in enumerate(insts)]), insts


def sample_pools(n: int, k: int, seed: int):
    """[(instance, videos (k, 9, 3, 32, 32), rule scores (k,))]: k plain samples (other noise seeds) of each of n
    fresh train instances."""
    sample = plain_sampler()
    pools = []
    for i, inst in enumerate(make_instances(n, seed=seed + 70, split="train")):
        v = torch.stack([sample(inst, seed * 100000 + i * 100 + j) for j in range(k)])
        pools.append((inst, v, torch.tensor([score_video(inst, x).score for x in v])))
    return pools


def ranking_loss(teacher, pool, margin: float = 0.02) -> torch.Tensor:
    """Pairwise logistic loss: the loop's reward must order a pool's samples as their rule scores do."""
    from vlmteach_fast.toy.queries import queries_for

    inst, videos, scores = pool
    reward = teacher.reward(videos, queries_for(inst)).reward  # (k,), the teacher's view applied inside
    diff_s = scores[:, None] - scores[None, :]
    mask = diff_s > margin  # i better than j
    if not mask.any():
        return reward.sum() * 0.0
    diff_r = reward[:, None] - reward[None, :]
    return torch.nn.functional.softplus(-diff_r[mask]).mean()


def adversarial_videos(teacher, n: int, steps: int, seed: int):
    """Every in-loop video of gaming runs against ``teacher`` on n fresh train instances, and their instances."""
    from vlmteach_fast.toy import load_pipeline
    from vlmteach_fast.toy.gaming import gaming_run

    pipe = load_pipeline(PIPELINE)
    insts = make_instances(n, seed=seed, split="train")
    vids, tasks, fooled, gain = [], [], 0, 0.0
    for k, inst in enumerate(insts):
        tr = gaming_run(pipe, teacher, inst, steps=steps, seed=seed * 1000 + k)
        vids.append(tr.videos)
        tasks += [inst] * len(tr.videos)
        fooled += tr.fooled
        gain += tr.rule[-1] - tr.rule[0]
    print(f"  gaming on {n} train instances: fooled {fooled}/{n}, rule gain {gain / n:+.3f}", flush=True)
    return torch.cat(vids), tasks


def loop_videos(teacher, n: int, seed: int, anchor: float = 0.0):
    """Every video the teacher scored in the demo's own loop (``demo_optimize_config``, 4 steps, the light decode
    it sees), run against ``teacher`` on n fresh train instances: what the loop shows the teacher, which plain
    samples and the 16-step gaming runs do not cover. Returns (videos, instances)."""
    import dataclasses

    from vlmteach_fast.demo import demo_optimize_config
    from vlmteach_fast.instance import SamplingConfig
    from vlmteach_fast.optimization import optimize
    from vlmteach_fast.toy import load_pipeline
    from vlmteach_fast.toy.gaming import RecordingTeacher
    from vlmteach_fast.toy.queries import queries_for

    pipe = load_pipeline(PIPELINE)
    cfg = dataclasses.replace(demo_optimize_config(), anchor=anchor, max_steps=4)
    vids, tasks, gain = [], [], 0.0
    for k, inst in enumerate(make_instances(n, seed=seed, split="train")):
        rec = RecordingTeacher(teacher)
        sampling = SamplingConfig(num_frames=9, height=32, width=32, final_steps=4, seed=seed * 1000 + k)
        optimize(pipe, rec, inst.prompt, image=inst.first_frame, queries=queries_for(inst),
                 config=dataclasses.replace(cfg, sampling=sampling))
        v = torch.cat(rec.frames)  # (steps, 9, 3, 32, 32)
        vids.append(v)
        tasks += [inst] * len(v)
        gain += score_video(inst, v[-1]).score - score_video(inst, v[0]).score
    print(f"  demo loop on {n} train instances: rule gain of the last in-loop video {gain / n:+.3f}", flush=True)
    return torch.cat(vids), tasks


POOLS = {"pools": [], "weight": 0.0}  # set by --pools / --rank-weight
ALIGN = {"videos": None, "instances": [], "weight": 0.0, "batch": 4}  # set by --grad-align / --align-samples


def train(teacher, model, data, hard, seconds, lr, batch, pos_weight, g, log_prefix=""):
    """AdamW with warm-up + cosine for ``seconds``; half of each batch from ``hard`` indices when there are any."""
    videos, labels, tasks = data
    if seconds <= 0:
        return 0, (float("nan"), float("nan"))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    start, step, ema = time.time(), 0, None
    while time.time() - start < seconds:
        frac = (time.time() - start) / seconds
        for pg in opt.param_groups:
            pg["lr"] = lr * min(1.0, frac / 0.03) * (0.05 + 0.95 * 0.5 * (1 + torch.cos(torch.tensor(frac * 3.14159)).item()))
        if hard:
            h = torch.tensor(hard)[torch.randint(0, len(hard), (batch // 2,), generator=g)].tolist()
            idx = h + torch.randint(0, len(videos), (batch - len(h),), generator=g).tolist()
        else:
            idx = torch.randint(0, len(videos), (batch,), generator=g).tolist()
        loss, acc = teacher_loss(teacher, videos[idx], labels[idx], [tasks[i] for i in idx], pos_weight, g)
        if POOLS["weight"] > 0 and POOLS["pools"]:
            pool = POOLS["pools"][int(torch.randint(0, len(POOLS["pools"]), (1,), generator=g))]
            loss = loss + POOLS["weight"] * ranking_loss(teacher, pool)
        if ALIGN["weight"] > 0 and ALIGN["videos"] is not None:
            a = torch.randint(0, len(ALIGN["videos"]), (ALIGN["batch"],), generator=g).tolist()
            cos = gradient_alignment(teacher, ALIGN["videos"][a], [ALIGN["instances"][i] for i in a],
                                     create_graph=True)
            align = (1 - cos).mean()
            loss = loss + ALIGN["weight"] * align
            a_val = float(align.detach())
            ALIGN["ema"] = a_val if ALIGN.get("ema") is None else 0.98 * ALIGN["ema"] + 0.02 * a_val
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        ema = (loss.item(), acc) if ema is None else (0.98 * ema[0] + 0.02 * loss.item(), 0.98 * ema[1] + 0.02 * acc)
        if step % 50 == 0:
            align = f" align={ALIGN['ema']:.4f}" if ALIGN.get("ema") is not None else ""
            print(f"{log_prefix}step {step} t={time.time() - start:.0f}s loss={ema[0]:.4f} acc={ema[1]:.3f}{align}",
                  flush=True)
        step += 1
    return step, ema


def save(model, tok, out, view, log):
    import os

    os.makedirs(out, exist_ok=True)
    model.eval()
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    json.dump({"view": view}, open(f"{out}/view.json", "w"))
    json.dump(log, open(f"{out}/train_log.json", "w"), indent=1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--seconds", type=float, default=600)
    ap.add_argument("--instances", type=int, default=1200)
    ap.add_argument("--batch", type=int, default=12)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--vae", default=None)
    ap.add_argument("--pipeline", default=None,
                    help="toy pipeline folder (train_toy_video.py) for model samples, pools, alignment and rounds; "
                         "default: the shipped one")
    ap.add_argument("--samples", default=None, help=".pt of {'videos', 'seeds', 'task_types'} from eval_toy.py")
    ap.add_argument("--init", default=None, help="continue from a saved teacher")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--view", default="frames", choices=VIEWS, help="teacher input view (toy.views)")
    ap.add_argument("--model-samples", type=int, default=0, help="plain model samples as hard examples")
    ap.add_argument("--data-cache", default=None, help=".pt to save the built dataset to / load it from")
    ap.add_argument("--soft-labels", action="store_true",
                    help="targets are the rule parts' fractions (P(yes) learns how much of a rule holds)")
    ap.add_argument("--label-power", dest="label_power", type=float, default=1.0,
                    help="soft labels: the part raised to this power (> 1: yes means the rule holds nearly "
                         "throughout; log P(yes) keeps the part's order)")
    ap.add_argument("--rounds", type=int, default=0, help="adversarial rounds after the first phase")
    ap.add_argument("--round-instances", type=int, default=24)
    ap.add_argument("--round-steps", type=int, default=8, help="gaming-run steps per instance and round")
    ap.add_argument("--round-seconds", type=float, default=180)
    ap.add_argument("--round-lr", type=float, default=5e-4)
    ap.add_argument("--round-source", dest="round_source", default="gaming", choices=("gaming", "loop"),
                    help="round videos: 16-step gaming runs (full VAE) or the demo's own 4-step loop (light decode; "
                         "with --grad-align they join the alignment pool too)")
    ap.add_argument("--noise-std", type=float, default=0.0, help="input robustness: per-cell noise on half a batch")
    ap.add_argument("--smooth", type=float, default=0.0, help="input robustness: answer-smoothness penalty weight")
    ap.add_argument("--pools", type=int, default=0, help="ranking: train instances with pools of plain samples")
    ap.add_argument("--pool-samples", type=int, default=8, help="ranking: plain samples per pool")
    ap.add_argument("--rank-weight", type=float, default=0.0, help="ranking: weight of the pairwise loss")
    ap.add_argument("--grad-align", dest="grad_align", type=float, default=0.0,
                    help="gradient alignment: weight of 1 - cos(reward gradient, solution - video)")
    ap.add_argument("--align-samples", dest="align_samples", type=int, default=300,
                    help="gradient alignment: plain samples of fresh train instances")
    ap.add_argument("--align-batch", dest="align_batch", type=int, default=4)
    args = ap.parse_args()
    global SOFT_LABELS, LABEL_POWER, PIPELINE
    SOFT_LABELS, LABEL_POWER, PIPELINE = args.soft_labels, args.label_power, args.pipeline
    ROBUST.update(noise_std=args.noise_std, smooth=args.smooth)
    POOLS["weight"] = args.rank_weight
    torch.set_num_threads(1)  # shared 2-core machine: one thread per process (see train_toy_vae.py)
    torch.manual_seed(args.seed)
    t0 = time.time()
    vae = None
    if args.vae:
        from diffusers import AutoencoderKLWan

        vae = AutoencoderKLWan.from_pretrained(args.vae).eval()
    samples = None
    if args.samples:
        raw = torch.load(args.samples)
        samples = {"videos": raw["videos"],
                   "instances": [make_instance(t, s) for t, s in zip(raw["task_types"], raw["seeds"])]}
    insts = make_instances(args.instances, seed=args.seed + 2, split="train")
    import os

    if args.data_cache and os.path.exists(args.data_cache):
        cached = torch.load(args.data_cache)
        videos = cached["videos"]
        tasks = [make_instance(t, s) for t, s in zip(cached["task_types"], cached["seeds"])]
        labels = label(tasks, videos) if SOFT_LABELS else cached["labels"]
    else:
        videos, labels, tasks = build_dataset(insts, args.seed, vae, samples)
        if args.model_samples:
            ms, ms_insts = model_samples(args.model_samples, args.seed)
            videos, labels, tasks = torch.cat([videos, ms]), torch.cat([labels, label(ms_insts, ms)]), tasks + ms_insts
        if args.data_cache:
            torch.save({"videos": videos, "labels": labels, "task_types": [t.task_type for t in tasks],
                        "seeds": [t.seed for t in tasks]}, args.data_cache)
    pos = (labels >= 0.5).float().mean(0)
    print(f"data {len(videos)} videos in {time.time() - t0:.0f}s; positive rate per question {pos.tolist()}",
          flush=True)
    pos_weight = ((1 - pos) / pos.clamp_min(1e-3)).clamp(0.2, 5.0)  # balance yes/no per question
    if args.pools:
        t2 = time.time()
        POOLS["pools"] = sample_pools(args.pools, args.pool_samples, args.seed)
        print(f"{args.pools} pools x {args.pool_samples} plain samples in {time.time() - t2:.0f}s", flush=True)

    if args.grad_align > 0:
        t2 = time.time()
        ALIGN.update(weight=args.grad_align, batch=args.align_batch)
        sample = plain_sampler()
        ALIGN["instances"] = make_instances(args.align_samples, seed=args.seed + 90, split="train")
        ALIGN["videos"] = torch.stack([sample(inst, args.seed * 7919 + k)
                                       for k, inst in enumerate(ALIGN["instances"])])
        print(f"{args.align_samples} plain samples for gradient alignment in {time.time() - t2:.0f}s", flush=True)

    if args.init:
        from transformers import PreTrainedTokenizerFast, Qwen2VLForConditionalGeneration

        model = Qwen2VLForConditionalGeneration.from_pretrained(args.init, dtype=torch.float32)
        tok = PreTrainedTokenizerFast.from_pretrained(args.init)
    else:
        tok = build_teacher_tokenizer()
        model = build_teacher_model(tok, seed=args.seed)
    teacher = ToyTeacher(model, (tok, teacher_image_processor()), config=teacher_reward_config(),
                         frame_transform=make_view(args.view))
    model.requires_grad_(True)  # VLMTeacher freezes its model; training is the one place it learns
    if args.grad_align > 0:  # double backward: the fused SDPA kernels have no second derivative on the CPU
        model.set_attn_implementation("eager")
    g = torch.Generator().manual_seed(args.seed)
    data = [videos, labels, tasks]
    log = {"view": args.view, "videos": len(videos), "noise_std": args.noise_std, "smooth": args.smooth,
           "pools": args.pools, "pool_samples": args.pool_samples, "rank_weight": args.rank_weight,
           "label_power": args.label_power, "grad_align": args.grad_align,
           "align_samples": args.align_samples if args.grad_align > 0 else 0,
           "seed": args.seed, "init": args.init, "pipeline": args.pipeline, "phases": []}
    t1 = time.time()
    steps, ema = train(teacher, model, data, [], args.seconds, args.lr, args.batch, pos_weight, g)
    log["phases"].append({"phase": "base", "steps": steps, "seconds": time.time() - t1, "loss_ema": ema[0],
                          "train_acc_ema": ema[1]})
    if args.seconds > 0:
        save(model, tok, f"{args.out}/round0", args.view, log)
    hard = []
    for r in range(1, args.rounds + 1):
        t1 = time.time()
        model.eval()
        model.requires_grad_(False)
        if args.round_source == "loop":
            adv, adv_tasks = loop_videos(teacher, args.round_instances, args.seed + 100 * r)
            if ALIGN["weight"] > 0:  # align the gradient where the loop takes it, not only on plain samples
                ALIGN["videos"] = torch.cat([ALIGN["videos"], adv])
                ALIGN["instances"] = ALIGN["instances"] + adv_tasks
        else:
            adv, adv_tasks = adversarial_videos(teacher, args.round_instances, args.round_steps, args.seed + 100 * r)
        model.requires_grad_(True)
        n0 = len(data[0])
        data = [torch.cat([data[0], adv]), torch.cat([data[1], label(adv_tasks, adv)]), data[2] + adv_tasks]
        hard += list(range(n0, len(data[0])))
        steps, ema = train(teacher, model, data, hard, args.round_seconds, args.round_lr, args.batch, pos_weight, g,
                           log_prefix=f"round {r} ")
        log["phases"].append({"phase": f"round{r}", "steps": steps, "seconds": time.time() - t1,
                              "hard_videos": len(hard), "loss_ema": ema[0], "train_acc_ema": ema[1]})
        save(model, tok, f"{args.out}/round{r}", args.view, log)
    save(model, tok, args.out, args.view, log)
    print("saved", args.out, log, flush=True)


if __name__ == "__main__":
    main()
