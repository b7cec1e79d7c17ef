"""Train the toy world's video model: a tiny Wan TI2V transformer by flow matching on physics walks (CPU, seeded).

Recipe:
1. VAE: the one trained by ``scripts/train_toy_vae.py`` (``--vae``), frozen.
2. Data: train-split instances of every task type; per instance ``--walks`` physics walks (the agent moves in
   random valid directions and ignores the goal), encoded once to normalized latents (16, F_lat, 8, 8), F_lat = 3
   with the 4x temporal VAE, 9 with ``train_toy_vae.py --temporal 1``. With
   ``--solution-share p`` each instance's ground-truth solution is encoded too and a share p of every batch is drawn
   from the solutions: a model that sometimes solves the task, like a real video model (held-out instances come
   from another split, so no test solution is seen). With ``--near-share q`` a share q is drawn from near-solutions
   (the solution's first 1-7 moves, then a physics walk: ``physics_video(prefix=k)``).
3. Text: the three prompts through a frozen random tiny UMT5 (``max_sequence_length=512``, the Reasoner's default).
4. Loss: rectified flow, x_t = (1 - s) x0 + s eps, target v = eps - x0, on latent frames 1.. only; frame 0 is the
   clean image latent with timestep 0 (the TI2V form). s = shift(u), u ~ U(0, 1), with the sampler's shift, so
   training sees the sigmas the 4-step sampler visits. With ``--motion-weight w`` the latent pixels of cells whose
   pixels differ from the first frame (where the agent and a pushed block are or were: 2-4 of 64 cells) weigh 1 + w:
   at uniform weight the static background dominates the loss and the moving agent is learnt last (a model
   trained 2200 s that way let the agent vanish after the first frame). With ``--sampler-share r`` a share r of
   every batch is trained at exactly the sigmas the ``SAMPLE_STEPS``-step sampler evaluates (1, 0.86, 0.60, 0.009
   for 4 steps at shift 3); with ``--rollout-share q`` a share q is trained on the sampler's own state after its
   first 1-2 steps (from the noise, with the current weights); with ``--ema d`` the saved weights are an
   exponential moving average (decay d).
5. Save the whole ``WanImageToVideoPipeline`` (safetensors) to ``--out``.

    python scripts/train_toy_video.py --vae /tmp/toy/vae --out /tmp/toy/video --seconds 600
    python scripts/train_toy_video.py --vae /tmp/toy/vae --init /tmp/toy/video --solution-share 0.3 --lr 5e-4 \
        --out /tmp/toy/video_sol --seconds 600 [--device cuda]
"""

import argparse
import json
import os
import random
import time

import torch

from vlmteach_fast.toy.models import (SAMPLE_STEPS, SHIFT, assemble_pipeline, build_scheduler, build_text_encoder,
                                      build_transformer)
from vlmteach_fast.toy.tasks import PROMPTS, TASK_TYPES, make_instances, physics_video


def encode_videos(vae, videos: torch.Tensor, batch: int = 32) -> torch.Tensor:
    """(N, 9, 3, 32, 32) in [0, 1] -> (N, 16, F_lat, 8, 8) normalized latents (posterior mode, as the pipeline)."""
    mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1)
    out = []
    with torch.no_grad():
        for i in range(0, len(videos), batch):
            x = videos[i:i + batch].permute(0, 2, 1, 3, 4) * 2 - 1
            out.append((vae.encode(x).latent_dist.mode() - mean) / std)
    return torch.cat(out)


def motion_cells(videos: torch.Tensor, temporal: int, cell: int = 4, tol: float = 0.1) -> torch.Tensor:
    """(N, F, 3, H, W) in [0, 1] -> (N, 1, F_lat, H / cell, W / cell) float32 in {0, 1}: 1 where some pixel of the
    cell differs from the first frame by more than ``tol`` in some channel, in any pixel frame the latent frame
    stands for (latent frame 0: the first frame, all 0; latent frame j >= 1: pixel frames (j - 1) t + 1 .. j t)."""
    n, f = videos.shape[:2]
    diff = (videos[:, 1:] - videos[:, :1]).abs().amax(2)  # (N, F - 1, H, W)
    cells = torch.nn.functional.max_pool2d(diff, cell) > tol  # (N, F - 1, h, w)
    per_latent = cells.view(n, (f - 1) // temporal, temporal, *cells.shape[2:]).any(2)
    first = torch.zeros_like(per_latent[:, :1])
    return torch.cat([first, per_latent], 1).unsqueeze(1).float()


def token_timesteps(mask: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """(1, 1, F_lat, h, w) frame mask and (B,) sigmas -> (B, tokens) timesteps: 0 on the clean first frame."""
    return mask[0, 0, :, ::2, ::2].flatten().unsqueeze(0) * sigma.view(-1, 1) * 1000


@torch.no_grad()
def rollout(transformer, xt, sigma, eps, x0, cond, mask, sampler_sigmas, share: float, g: torch.Generator):
    """Replace a share of the batch by the sampler's own state: from the noise ``eps`` (sigma 1), Euler steps of the
    current model down to one of the sampler's later sigmas (chosen per batch). Returns the new (xt, sigma, eps),
    eps such that xt = (1 - sigma) x0 + sigma eps: the target eps - x0 is the velocity that reaches x0 from xt in
    one step.

    The sampler's first steps leave faint copies of the agent at the cells it could move to, an input that
    noised ground truth never shows; trained on its own states, the model learns to resolve them."""
    b = xt.shape[0]
    pick = torch.rand(b, generator=g) < share
    if not pick.any():
        return xt, sigma, eps
    k = int(torch.randint(1, len(sampler_sigmas) - 1, (1,), generator=g))  # stop at sampler sigma k (not the last)
    idx = pick.nonzero().flatten().to(xt.device)
    x = eps[idx]
    for j in range(k):
        sj = sampler_sigmas[j].to(xt.device).expand(len(idx))
        v = transformer(hidden_states=mask * x + (1 - mask) * x0[idx], timestep=token_timesteps(mask, sj),
                        encoder_hidden_states=cond[idx], return_dict=False)[0]
        x = x + (sampler_sigmas[j + 1] - sampler_sigmas[j]) * v
    xt, sigma, eps = xt.clone(), sigma.clone(), eps.clone()
    sk = sampler_sigmas[k].to(sigma.device)
    xt[idx], sigma[idx], eps[idx] = x, sk, (x - (1 - sk) * x0[idx]) / sk
    return xt, sigma, eps


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vae", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seconds", type=float, default=600)
    ap.add_argument("--instances", type=int, default=1500)
    ap.add_argument("--walks", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--init", default=None, help="continue from a saved pipeline's transformer")
    ap.add_argument("--solution-share", dest="solution_share", type=float, default=0.0,
                    help="share of each batch drawn from the train instances' ground-truth solutions")
    ap.add_argument("--near-share", dest="near_share", type=float, default=0.0,
                    help="share of each batch drawn from near-solutions (solution prefix, then a walk)")
    ap.add_argument("--motion-weight", dest="motion_weight", type=float, default=0.0,
                    help="extra loss weight on the latent pixels of cells that differ from the first frame")
    ap.add_argument("--sampler-share", dest="sampler_share", type=float, default=0.0,
                    help="share of each batch trained at the sigmas the SAMPLE_STEPS-step sampler visits")
    ap.add_argument("--rollout-share", dest="rollout_share", type=float, default=0.0,
                    help="share of each batch trained on the sampler's own state after its first steps")
    ap.add_argument("--ema", type=float, default=0.0,
                    help="decay of an exponential moving average of the weights, saved instead of the raw ones "
                         "(0: off; 0.998 averages over about the last 500 steps)")
    ap.add_argument("--device", default="cpu", help="where the transformer trains (data is encoded on the CPU)")
    ap.add_argument("--checkpoint-every", dest="checkpoint_every", type=float, default=300,
                    help="seconds between checkpoints (--out/checkpoint.pt: weights, optimizer, sampler state)")
    ap.add_argument("--resume", action="store_true", help="continue from --out/checkpoint.pt (same other arguments)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads; 1 when anything else runs on the machine, the core count when alone")
    args = ap.parse_args()
    if not (0.0 <= args.solution_share and 0.0 <= args.near_share and args.solution_share + args.near_share <= 1.0):
        raise SystemExit(f"--solution-share and --near-share must be >= 0 with a sum <= 1, got "
                         f"{args.solution_share} and {args.near_share}")
    # One thread by default: on a shared 2-core machine, 2 OpenMP threads per process under contention ran 2.3x
    # slower than 1 (VAE encode of 32 videos 1.05 s vs 0.47 s).
    torch.set_num_threads(args.threads)
    from diffusers import AutoencoderKLWan

    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    t0 = time.time()
    vae = AutoencoderKLWan.from_pretrained(args.vae).eval()
    insts = make_instances(args.instances, seed=args.seed + 1, split="train")
    videos = torch.stack([physics_video(i, rng.randrange(10 ** 6)) for i in insts for _ in range(args.walks)])
    task_idx = torch.tensor([TASK_TYPES.index(i.task_type) for i in insts for _ in range(args.walks)])
    t_vae = vae.config.scale_factor_temporal
    lat, mot = encode_videos(vae, videos), motion_cells(videos, t_vae)
    sol_lat = sol_mot = near_lat = near_mot = None
    if args.solution_share > 0:
        sol_videos = torch.stack([i.solution for i in insts])
        sol_lat, sol_mot = encode_videos(vae, sol_videos), motion_cells(sol_videos, t_vae)
    sol_task = torch.tensor([TASK_TYPES.index(i.task_type) for i in insts])
    if args.near_share > 0:
        near_videos = torch.stack([physics_video(i, rng.randrange(10 ** 6), prefix=rng.randint(1, 7)) for i in insts])
        near_lat, near_mot = encode_videos(vae, near_videos), motion_cells(near_videos, t_vae)
    print(f"encoded {len(lat)} walks{'' if sol_lat is None else f' and {len(sol_lat)} solutions'} in "
          f"{time.time() - t0:.0f}s; latent std {lat.std():.3f}", flush=True)

    if args.init:
        # The init pipeline's own text encoder: a fresh random one would change the prompt embeddings the
        # transformer was trained on.
        from diffusers import WanImageToVideoPipeline

        init = WanImageToVideoPipeline.from_pretrained(args.init, vae=vae, use_safetensors=True)
        tokenizer, text_encoder, transformer = init.tokenizer, init.text_encoder.eval(), init.transformer.train()
    else:
        tokenizer, text_encoder = build_text_encoder(seed=args.seed)
        transformer = build_transformer().train()
    pipe = assemble_pipeline(vae, transformer, tokenizer, text_encoder)
    with torch.no_grad():
        text = torch.cat([pipe.encode_prompt(PROMPTS[t], do_classifier_free_guidance=False,
                                             max_sequence_length=512, device="cpu")[0] for t in TASK_TYPES])
    dev = torch.device(args.device)
    transformer.to(dev).train()
    lat, mot, text, task_idx = lat.to(dev), mot.to(dev), text.to(dev), task_idx.to(dev)
    if sol_lat is not None:
        sol_lat, sol_mot = sol_lat.to(dev), sol_mot.to(dev)
    if near_lat is not None:
        near_lat, near_mot = near_lat.to(dev), near_mot.to(dev)
    sol_task = sol_task.to(dev)
    opt = torch.optim.AdamW(transformer.parameters(), lr=args.lr, weight_decay=0.01)
    ema_model = torch.optim.swa_utils.AveragedModel(
        transformer, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(args.ema)) if args.ema > 0 else None
    sched = build_scheduler()
    sched.set_timesteps(SAMPLE_STEPS)
    sampler_sigmas = sched.sigmas[:-1].float()  # the sigmas the sampler evaluates the model at
    g = torch.Generator().manual_seed(args.seed)
    f_lat, h, w = lat.shape[2:]
    mask = torch.ones(1, 1, f_lat, h, w, device=dev)
    mask[:, :, 0] = 0  # frame 0: the clean image latent
    start, step, ema = time.time(), 0, None
    ckpt_path = f"{args.out}/checkpoint.pt"
    if args.resume:
        ckpt = torch.load(ckpt_path, weights_only=False)
        transformer.load_state_dict(ckpt["transformer"])
        opt.load_state_dict(ckpt["optimizer"])
        g.set_state(ckpt["generator"])
        step, ema, start = ckpt["step"], ckpt["ema"], time.time() - ckpt["elapsed"]
        if ema_model is not None and ckpt.get("ema_model") is not None:
            ema_model.load_state_dict(ckpt["ema_model"])
        print(f"resumed at step {step}, {ckpt['elapsed']:.0f}s", flush=True)
    last_ckpt = time.time()
    while time.time() - start < args.seconds:
        if time.time() - last_ckpt > args.checkpoint_every:
            os.makedirs(args.out, exist_ok=True)
            torch.save({"transformer": transformer.state_dict(), "optimizer": opt.state_dict(), "generator": g.get_state(),
                        "step": step, "ema": ema, "elapsed": time.time() - start,
                        "ema_model": None if ema_model is None else ema_model.state_dict()}, ckpt_path + ".tmp")
            os.replace(ckpt_path + ".tmp", ckpt_path)
            last_ckpt = time.time()
        frac = (time.time() - start) / args.seconds
        for pg in opt.param_groups:  # 3% warm-up, then cosine to 5%
            pg["lr"] = args.lr * min(1.0, frac / 0.03) * (0.05 + 0.95 * 0.5 * (1 + torch.cos(torch.tensor(frac * 3.14159)).item()))
        idx = torch.randint(0, len(lat), (args.batch,), generator=g).to(dev)
        x0, cond, m = lat[idx], text[task_idx[idx]], mot[idx]
        # Shares of the batch: ground-truth solutions, then near-solutions, instead of walks (one instance each).
        r = torch.rand(args.batch, generator=g) if args.solution_share + args.near_share > 0 else None
        for pool, pool_mot, lo, hi in ((sol_lat, sol_mot, 0.0, args.solution_share),
                                       (near_lat, near_mot, args.solution_share,
                                        args.solution_share + args.near_share)):
            if pool is None or r is None:
                continue
            pick = ((r >= lo) & (r < hi)).to(dev)
            sidx = torch.randint(0, len(pool), (args.batch,), generator=g).to(dev)
            x0 = torch.where(pick.view(-1, 1, 1, 1, 1), pool[sidx], x0)
            m = torch.where(pick.view(-1, 1, 1, 1, 1), pool_mot[sidx], m)
            cond = torch.where(pick.view(-1, 1, 1), text[sol_task[sidx]], cond)
        b = x0.shape[0]
        u = torch.rand(b, generator=g)
        sigma = SHIFT * u / (1 + (SHIFT - 1) * u)
        if args.sampler_share > 0:
            at = torch.rand(b, generator=g) < args.sampler_share
            sigma = torch.where(at, sampler_sigmas[torch.randint(0, len(sampler_sigmas), (b,), generator=g)], sigma)
        sigma = sigma.to(dev)
        eps = torch.randn(x0.shape, generator=g).to(dev)
        s = sigma.view(b, 1, 1, 1, 1)
        xt = (1 - s) * x0 + s * eps
        if args.rollout_share > 0:
            xt, sigma, eps = rollout(transformer, xt, sigma, eps, x0, cond, mask, sampler_sigmas, args.rollout_share, g)
        hidden = mask * xt + (1 - mask) * x0
        v = transformer(hidden_states=hidden, timestep=token_timesteps(mask, sigma), encoder_hidden_states=cond,
                        return_dict=False)[0]
        weight = mask * (1 + args.motion_weight * m)  # (B, 1, F_lat, h, w)
        loss = ((v - (eps - x0)).square() * weight).sum() / (mask.sum() * b * x0.shape[1])
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(transformer.parameters(), 1.0)
        opt.step()
        if ema_model is not None:
            ema_model.update_parameters(transformer)
        ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
        if step % 50 == 0:
            print(f"step {step} t={time.time() - start:.0f}s loss={ema:.4f}", flush=True)
        step += 1
    if ema_model is not None:
        transformer.load_state_dict(ema_model.module.state_dict())
    transformer.to("cpu").eval()
    pipe.save_pretrained(args.out, safe_serialization=True)
    json.dump({"steps": step, "seconds": time.time() - start, "final_loss_ema": ema, "videos": len(lat),
               "solution_share": args.solution_share, "near_share": args.near_share, "device": args.device,
               "lr": args.lr, "init": args.init, "motion_weight": args.motion_weight, "batch": args.batch,
               "sampler_share": args.sampler_share, "rollout_share": args.rollout_share, "ema": args.ema,
               "seed": args.seed},
              open(f"{args.out}/train_log.json", "w"))
    if os.path.exists(ckpt_path):
        os.remove(ckpt_path)
    print("saved", args.out, "steps", step, flush=True)


if __name__ == "__main__":
    main()
