"""Distil the toy VAE's decoder into a tiny TAEHV-style decoder, on latents the toy video model actually produces.

Data (train-split instances only, ``make_instances(n, seed, split="train")``), all as normalized latents:
- few-step samples of the shipped video model, with a random number of steps (1, 2 or 4) on a random schedule, and
  the one-step x0 estimate at *every* step of those samples (x0 = x_sigma - sigma v: what ``predict(mode=
  "one_step")`` and k-step predictions hand the light decoder, at random noise levels);
- the VAE's encodings (posterior mode) of ground-truth solutions and physics walks;
- latents along short LoRA optimizations (5 AdamW steps, lr 1e-2 to 5e-2, the loop's one-step predictions) that
  push the *full* decode's mean colour towards a random colour: an optimized LoRA moves the latents far off the
  model's distribution within one or two steps, and the light decoder must stay faithful there (without them:
  9-12 dB after one such step; docs/light_decoding.md, "Training a tiny decoder for your own VAE");
- copies of the above pushed off the distribution: Gaussian perturbations (scale U(0, 0.6) of the latent std),
  per-channel offsets constant over the video (scale U(0, 2)) and mixes of two latents.
Targets: the full VAE decode of each latent (all 9 frames). Loss: pixel MSE of the raw (unclamped) output.
A held-out set (other train-split instances) gives the PSNR printed at the end; the benchmark measures test-split
instances (bench/bench_light_decoder.py).

    python scripts/train_toy_light_decoder.py                 # writes vlmteach_fast/toy/weights/light_decoder/
    python scripts/train_toy_light_decoder.py --out /tmp/ld.safetensors --steps 50 --instances 12   # smoke run

Seeded and bounded by steps, not seconds (the dev machine's 2 cores are shared with other jobs: a wall-clock bound
gave 3x fewer steps under load); one torch thread unless --threads (see scripts/train_toy_vae.py). CPU and wall
seconds are recorded in the log next to the weights.
"""

import argparse
import dataclasses
import json
import math
import os
import random
import time

import torch

from vlmteach_fast.io_atomic import atomic_write_json
from vlmteach_fast.reasoner import Reasoner
from vlmteach_fast.reasoner.light_decoder import psnr, vae_fingerprint
from vlmteach_fast.reasoner.taehv import TinyVideoDecoder, load_tiny_decoder, save_tiny_decoder
from vlmteach_fast.toy.models import TOY_LIGHT_DECODER, TOY_LIGHT_DECODER_CONFIG, load_pipeline
from vlmteach_fast.toy.tasks import make_instances, physics_video

GEOM = dict(num_frames=9, height=32, width=32)


def _random_sigmas(rng: random.Random, steps: int) -> list[float]:
    """A strictly decreasing schedule starting at 1 (pure noise), other points U(0.05, 0.95)."""
    rest = sorted({round(rng.uniform(0.05, 0.95), 3) for _ in range(steps - 1)}, reverse=True)
    return [1.0] + rest


@torch.no_grad()
def model_latents(reasoner, inst, seed: int, rng: random.Random) -> list[torch.Tensor]:
    """One-step x0 estimates at every step of a random-schedule sample, the last being the sample itself."""
    a = reasoner.family
    prep = reasoner.prepare(inst.prompt, inst.first_frame, seed=seed, **GEOM)
    sigmas = _random_sigmas(rng, rng.choice((1, 2, 4)))
    _, coeffs = a.schedule(len(sigmas), prep, sigmas)  # (steps, 2): sigma -> next sigma, after the shift
    states = [a.initial_latents(prep)]
    reasoner.sample(prep, sigmas=sigmas, decode=False,
                    callback_on_step_end=lambda r, i, t, lat: states.append(lat.clone()))
    out = []
    for i in range(len(sigmas)):
        s, s_next = float(coeffs[i, 0]), float(coeffs[i, 1])
        v = (states[i + 1] - states[i]) / (s_next - s)  # the denoiser's velocity at step i
        out.append(a.finalize(prep, states[i] - s * v)[0])  # x0 estimate, image latent on frame 0
    return out


def trajectory_latents(reasoner, inst, seed: int, rng: random.Random, steps: int = 5) -> list[torch.Tensor]:
    """One-step predictions along a fresh LoRA's AdamW steps that pull the full decode's mean colour (per frame)
    towards a random colour."""
    prep = reasoner.prepare(inst.prompt, inst.first_frame, seed=seed, **GEOM)
    reasoner.reset_lora(seed=seed)
    opt = torch.optim.AdamW(reasoner.lora_parameters(), lr=rng.choice((1e-2, 2e-2, 5e-2)), weight_decay=0.0)
    target = torch.tensor([rng.random() for _ in range(3)])
    out = []
    for _ in range(steps):
        z = reasoner.predict(prep).latents  # (1, C, F, h, w), differentiable in the LoRA
        loss = (reasoner.decode(z).mean(dim=(3, 4)) - target).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        out.append(z.detach()[0])
    reasoner.reset_lora()
    return out


@torch.no_grad()
def encoded(reasoner, videos: torch.Tensor) -> torch.Tensor:
    """(N, 9, 3, 32, 32) in [0, 1] -> normalized latents (N, 16, 3, 8, 8) (VAE posterior mode)."""
    a = reasoner.family
    x = videos.permute(0, 2, 1, 3, 4) * 2 - 1
    z = torch.cat([reasoner.pipe.vae.encode(x[i:i + 16]).latent_dist.mode() for i in range(0, len(x), 16)])
    return (z - a._mean) / a._std


def build_set(reasoner, n: int, seed: int, augment: bool, trajectories: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(model / encoded / augmented latents, trajectory latents), normalized, (N, 16, 3, 8, 8) each."""
    rng = random.Random(seed)
    insts = make_instances(n, seed=seed, split="train")
    lat = []
    for k, inst in enumerate(insts):
        lat += model_latents(reasoner, inst, seed=10_000 * seed + k, rng=rng)
    traj = []
    for k, inst in enumerate(insts[:trajectories]):
        traj += trajectory_latents(reasoner, inst, seed=10_000 * seed + k, rng=rng)
    videos = [inst.solution for inst in insts] + [physics_video(inst, seed=rng.randrange(10 ** 6)) for inst in insts]
    z = torch.cat([torch.stack(lat), encoded(reasoner, torch.stack(videos))])
    traj = torch.stack(traj)
    if augment:
        g = torch.Generator().manual_seed(seed)
        base = torch.cat([z, traj])
        m = len(base) // 3
        pick = lambda: base[torch.randint(0, len(base), (m,), generator=g)]  # noqa: E731
        scale = lambda top: torch.rand(m, 1, 1, 1, 1, generator=g) * top  # noqa: E731
        noisy = pick() + scale(0.6) * torch.randn(m, *base.shape[1:], generator=g)
        offset = pick() + scale(2.0) * torch.randn(m, base.shape[1], 1, 1, 1, generator=g)
        w = torch.rand(m, 1, 1, 1, 1, generator=g)
        mixed = w * pick() + (1 - w) * pick()
        z = torch.cat([z, noisy, offset, mixed])
    return z, traj


@torch.no_grad()
def targets(reasoner, z: torch.Tensor) -> torch.Tensor:
    """Full VAE decode (N, 9, 3, 32, 32) in [0, 1] of normalized latents (N, 16, T, 8, 8), T = 1 + 8 / temporal."""
    return torch.cat([reasoner.family.decode(z[i:i + 32]) for i in range(0, len(z), 32)])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=TOY_LIGHT_DECODER)
    ap.add_argument("--steps", type=int, default=2800)
    ap.add_argument("--instances", type=int, default=160)
    ap.add_argument("--val-instances", type=int, default=24)
    ap.add_argument("--trajectories", type=int, default=120, help="instances with a colour-pulling LoRA trajectory")
    ap.add_argument("--batch", type=int, default=24)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pipeline", default=None, help="a toy pipeline folder (train_toy_video.py); default: the shipped one")
    ap.add_argument("--init", default=None,
                    help="start from this tiny decoder (e.g. the one distilled from an earlier decoder of the same "
                         "latent space) instead of random weights; its PSNR on the validation sets is printed first")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads; 1 when anything else runs on the machine, the core count when alone")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    wall0, cpu0 = time.time(), time.process_time()
    reasoner = Reasoner.from_pipeline(load_pipeline(args.pipeline))  # fresh LoRA, lora_B = 0: the model's outputs
    a = reasoner.family
    z_train, traj_train = build_set(reasoner, args.instances, args.seed, augment=True, trajectories=args.trajectories)
    z_val, traj_val = build_set(reasoner, args.val_instances, args.seed + 1, augment=False,
                                trajectories=args.val_instances)
    z_train = torch.cat([z_train, traj_train])
    y_train, y_val, y_traj = targets(reasoner, z_train), targets(reasoner, z_val), targets(reasoner, traj_val)
    vae_layout = lambda z: a.to_vae_space(z).transpose(1, 2).contiguous()  # noqa: E731  (N, T, C, h, w): TAEHV's
    x_train, x_val, x_traj = vae_layout(z_train), vae_layout(z_val), vae_layout(traj_val)
    data_cpu = time.process_time() - cpu0
    print(f"data: {len(x_train)} train / {len(x_val)} + {len(x_traj)} val latents in {data_cpu:.0f} s CPU",
          flush=True)

    if args.init:
        model = load_tiny_decoder(args.init)[0].eval()
        with torch.no_grad():
            print(f"init {args.init}: val {psnr(model.decode_video(x_val), y_val):.2f} dB, trajectories "
                  f"{psnr(model.decode_video(x_traj), y_traj):.2f} dB", flush=True)
        model.train()
    else:
        # The decoder grows time as the VAE compressed it: 4x -> two doubling stages, 1x -> none.
        temporal = reasoner.pipe.vae.config.scale_factor_temporal
        time_upscale = {1: (False, False, False), 2: (False, False, True), 4: (False, True, True)}[temporal]
        model = TinyVideoDecoder(dataclasses.replace(TOY_LIGHT_DECODER_CONFIG, time_upscale=time_upscale)).train()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    g = torch.Generator().manual_seed(args.seed)
    start = time.time()
    for step in range(args.steps):
        frac = step / args.steps
        for pg in opt.param_groups:
            pg["lr"] = args.lr * (0.03 + 0.97 * 0.5 * (1 + math.cos(math.pi * frac)))
        idx = torch.randint(0, len(x_train), (args.batch,), generator=g)
        loss = (model(x_train[idx]) - y_train[idx]).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 200 == 0:
            print(f"step {step} t={time.time() - start:.0f}s loss={loss.item():.5f}", flush=True)
    model.eval()
    with torch.no_grad():
        val_psnr = psnr(model.decode_video(x_val), y_val)
        traj_psnr = psnr(model.decode_video(x_traj), y_traj)
    info = {"steps": args.steps, "batch": args.batch, "lr": args.lr, "train_latents": len(x_train),
            "val_latents": len(x_val), "val_psnr_db": round(val_psnr, 2),
            "val_trajectory_psnr_db": round(traj_psnr, 2), "trajectories": args.trajectories,
            "data_cpu_seconds": round(data_cpu),            "cpu_seconds": round(time.process_time() - cpu0), "wall_seconds": round(time.time() - wall0),
            "instances": args.instances, "seed": args.seed, "threads": 1, "init": args.init,
            "pipeline": args.pipeline}
    save_tiny_decoder(model, args.out, metadata={"vae_fingerprint": vae_fingerprint(reasoner.pipe.vae),
                                                 "latent_space": "vae", "train": json.dumps(info)})
    atomic_write_json(os.path.splitext(args.out)[0] + "_train_log.json", info)
    print(json.dumps(info), flush=True)


if __name__ == "__main__":
    main()
