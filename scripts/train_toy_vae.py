"""Train the toy world's Wan VAE as a plain autoencoder on rendered videos (CPU, seeded, time-bounded).

Data: train-split instances of every task type; per instance its solution, one physics walk and one corruption
(the VAE must reproduce whatever the video model or an optimizer produces, wrong videos included).
Training clips are 5 frames (1 + 4). Loss: pixel MSE weighted 10x on non-background pixels (objects are ~2% of pixels and would otherwise be blurred
away first) + 1e-6 KL. The decoder is trained on the posterior mode (the pipeline conditions on the mode too).
After training, per-channel latent mean/std over the data go into the config (the pipeline normalizes with them).

    python scripts/train_toy_vae.py --out /tmp/toy/vae --seconds 360
"""

import argparse
import json
import random
import time

import torch

from vlmteach_fast.toy.corrupt import applicable_corruptions, corrupt
from vlmteach_fast.toy.models import build_vae
from vlmteach_fast.toy.tasks import make_instances, physics_video


def dataset(n: int, seed: int) -> torch.Tensor:
    """(3n, 9, 3, 32, 32) videos in [0, 1]."""
    rng = random.Random(seed)
    vids = []
    for inst in make_instances(n, seed=seed, split="train"):
        vids.append(inst.solution)
        vids.append(physics_video(inst, seed=rng.randrange(10 ** 6)))
        vids.append(corrupt(inst, rng.choice(applicable_corruptions(inst)), seed=rng.randrange(10 ** 6)))
    return torch.stack(vids)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--seconds", type=float, default=360)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--instances", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    # One thread: the dev machine's 2 cores are shared, and 2 OpenMP threads per process under contention ran
    # 2.3x slower than 1 (measured: VAE encode of 32 videos 1.05 s vs 0.47 s).
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    data = dataset(args.instances, args.seed)
    x_all = data.permute(0, 2, 1, 3, 4) * 2 - 1  # (N, 3, F, H, W) in [-1, 1]
    vae = build_vae().train()
    opt = torch.optim.AdamW(vae.parameters(), lr=args.lr, weight_decay=0.0)
    g = torch.Generator().manual_seed(args.seed)
    start, step = time.time(), 0
    while time.time() - start < args.seconds:
        frac = (time.time() - start) / args.seconds
        for pg in opt.param_groups:
            pg["lr"] = args.lr * (0.05 + 0.95 * 0.5 * (1 + torch.cos(torch.tensor(frac * 3.14159)).item()))
        idx = torch.randint(0, len(x_all), (args.batch,), generator=g)
        # 5-frame clips (1 + 4: two latent frames) cost half of full videos; the causal VAE encodes and decodes
        # chunk by chunk with a feature cache, so a decoder trained on chunks 0-1 also serves chunk 2.
        t0 = 4 * int(torch.randint(0, 2, (1,), generator=g))
        x = x_all[idx][:, :, t0:t0 + 5]
        if t0:
            x = x.clone()
        post = vae.encode(x).latent_dist
        y = vae.decode(post.mode()).sample
        w = 1 + 9 * (x > -0.9).any(dim=1, keepdim=True).float()
        rec = (w * (y - x).square()).mean()
        kl = post.kl().mean()
        loss = rec + 1e-6 * kl
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        if step % 25 == 0:
            print(f"step {step} t={time.time() - start:.0f}s rec={rec.item():.4f} kl={kl.item():.1f}", flush=True)
        step += 1
    vae.eval()
    with torch.no_grad():
        zs = torch.cat([vae.encode(x_all[i:i + 32]).latent_dist.mode() for i in range(0, min(len(x_all), 960), 32)])
        mean = zs.mean(dim=(0, 2, 3, 4))
        std = zs.std(dim=(0, 2, 3, 4)).clamp_min(1e-3)
    vae.register_to_config(latents_mean=mean.tolist(), latents_std=std.tolist())
    vae.save_pretrained(args.out, safe_serialization=True)
    json.dump({"steps": step, "seconds": time.time() - start, "final_rec": rec.item()},
              open(f"{args.out}/train_log.json", "w"))
    print("saved", args.out, "steps", step)


if __name__ == "__main__":
    main()
