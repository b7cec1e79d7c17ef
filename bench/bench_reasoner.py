"""Reasoner: predict + backward over K gradient-carrying steps, with and without checkpointing; light vs full decode.

Run:  python -m pytest bench/bench_reasoner.py --benchmark-only -q --benchmark-json=bench/reasoner.json
      python bench/bench_reasoner.py bench/reasoner.json     # the ratio table for bench/RESULTS.md

Model: a small random Wan T2V (4 blocks, 4 heads x 64 = 256 features, FFN 1024, LoRA rank 16 on the attention
projections) at 17 frames x 64 x 64 pixels (5 latent frames x 8 x 8, 80 tokens), T = 8 sampling steps,
loss = mean of the linear light decode of the first and last frames (the reward's access pattern). Random weights:
timings and memory do not depend on them. On the CPU torch runs one intra-op thread: the dev machine's 2 cores are
shared, and spin-waiting OpenMP threads made timings swing 10x with the neighbours' load.
extra_info:
  peak_bytes  peak bytes of tensors created during predict + backward (TensorMemoryTracker: every storage an op
              returns, forward and backward, counted until freed; weights excluded). On CUDA also
              torch.cuda.max_memory_allocated delta as cuda_peak_bytes.
  mode        plain | checkpointed (every gradient step) | all_but_last (the last one is not), and K.
Targets: peak(K=8, checkpointed) <= 1.3 x peak(K=1); checkpointed / plain time <= 1.5x;
light decode >= 10x cheaper than the full VAE decode.
"""

import json
import os
import sys
import tempfile

import pytest
import torch

from vlmteach_fast.reasoner import LightDecoder, LightDecoderConfig, LoRASpec, Reasoner, TensorMemoryTracker, psnr
from vlmteach_fast.testing import unrolled_latents

STEPS = 8
GEOM = dict(num_frames=17, height=64, width=64)
# Fused LoRA layers on CUDA; plain PEFT on the CPU, where tests/bench set TRITON_INTERPRET=1 and the fused op would
# run the Triton *interpreter* (measured 40x slower than PEFT here): that is a correctness tool, not a speed path.
FUSED = torch.cuda.is_available()
_CACHE = {}


pytestmark = pytest.mark.usefixtures("one_cpu_thread")


def _reasoner():
    if "r" not in _CACHE:
        from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanPipeline, WanTransformer3DModel

        from vlmteach_fast.testing import tiny_text_encoder

        torch.manual_seed(0)
        tok, te = tiny_text_encoder()
        vae = AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                               temperal_downsample=[False, True, True])
        tr = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=4, attention_head_dim=64,
                                   in_channels=16, out_channels=16, text_dim=32, freq_dim=256, ffn_dim=1024,
                                   num_layers=4, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
                                   rope_max_seq_len=32)
        pipe = WanPipeline(tokenizer=tok, text_encoder=te, vae=vae,
                           scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0), transformer=tr)
        if torch.cuda.is_available():
            pipe.to("cuda")
        r = Reasoner.from_pipeline(pipe, LoRASpec(rank=16, fused=FUSED))
        prep = r.prepare("a red ball rolls to the green square", seed=0, max_sequence_length=32, **GEOM)
        light = LightDecoder(r, LightDecoderConfig(kind="linear", cache_dir=os.path.join(tempfile.gettempdir(), "vtf-bench"),
                                                   fit_samples=2, fit_latent_size=8))
        _CACHE["r"] = (r, prep, light)
    return _CACHE["r"]


_CKPT = {"plain": False, "checkpointed": True, "all_but_last": "all_but_last"}


def _predict_backward(r, prep, light, k, checkpoint):
    for p in r.lora_parameters():
        p.grad = None
    out = r.predict(prep, mode="k_step", steps=STEPS, grad_steps=k, checkpoint=checkpoint)
    light(out.latents, frames="first_last").mean().backward()


def _unrolled_grads(r, prep, light, k):
    """The reference: the loop unrolled by hand (``testing.unrolled_latents``), the same loss."""
    loss = light(unrolled_latents(r, prep, STEPS, k), frames="first_last").mean()
    return torch.autograd.grad(loss, r.lora_parameters())


def _check_against_reference(r, prep, light, k, checkpoint) -> None:
    """Once, outside the timed part: the LoRA gradients of the benchmarked call equal the hand-unrolled loop's, so
    no benchmark times a checkpointing that drops or changes the gradient. Same kernels on the same inputs: float32
    rounding of the accumulation order (CUDA bf16/fused kernels: reordered bf16 sums, hence the wider bound)."""
    expected = _unrolled_grads(r, prep, light, k)
    _predict_backward(r, prep, light, k, checkpoint)
    rtol, atol = (2e-2, 1e-3) if FUSED else (1e-4, 1e-7)
    for p, e in zip(r.lora_parameters(), expected):
        torch.testing.assert_close(p.grad, e, rtol=rtol, atol=atol * float(e.abs().max()))


@pytest.mark.parametrize("k", [1, 2, 4, 8])
@pytest.mark.parametrize("mode", ["plain", "checkpointed", "all_but_last"])
def test_predict_backward(benchmark, mode, k):
    r, prep, light = _reasoner()
    ckpt = _CKPT[mode]
    _check_against_reference(r, prep, light, k, ckpt)
    with TensorMemoryTracker() as mem:
        _predict_backward(r, prep, light, k, ckpt)
    benchmark.group = "predict+backward"
    benchmark.extra_info.update(mode=mode, k=k, steps=STEPS, peak_bytes=mem.peak_bytes,
                                fused=r.fuse_report is not None, threads=torch.get_num_threads())
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        _predict_backward(r, prep, light, k, ckpt)
        torch.cuda.synchronize()
        benchmark.extra_info["cuda_peak_bytes"] = torch.cuda.max_memory_allocated() - base
    benchmark.pedantic(_predict_backward, args=(r, prep, light, k, ckpt), rounds=5, warmup_rounds=1)


def test_checkpoint_overhead_interleaved(benchmark):
    """Time ratios that survive a shared machine: the modes run interleaved, round after round, and each keeps
    its fastest round, so a load spike hits all modes alike instead of whichever test ran during it (sequential
    per-mode tests above swung +-25% between neighbours: identical computations differed by 1.2x)."""
    import time

    r, prep, light = _reasoner()
    rounds, ks = 7, (2, 8)
    best = {}

    def interleaved():
        for _ in range(rounds):
            for k in ks:
                for mode, ckpt in _CKPT.items():
                    t0 = time.perf_counter()
                    _predict_backward(r, prep, light, k, ckpt)
                    dt = time.perf_counter() - t0
                    best[(mode, k)] = min(best.get((mode, k), dt), dt)

    benchmark.group = "checkpoint overhead (interleaved)"
    benchmark.pedantic(interleaved, rounds=1, warmup_rounds=0)
    for (mode, k), t in best.items():
        benchmark.extra_info[f"min_s_{mode}_k{k}"] = t
    for k in ks:
        for mode in ("checkpointed", "all_but_last"):
            benchmark.extra_info[f"ratio_{mode}_k{k}"] = best[(mode, k)] / best[("plain", k)]


@pytest.mark.parametrize("kind", ["light", "full"])
def test_decode(benchmark, kind):
    r, prep, light = _reasoner()
    with torch.no_grad():
        z = r.predict(prep).latents  # the same latents for both decoders
    fn = (lambda: light(z)) if kind == "light" else (lambda: r.decode(z))
    if kind == "light":  # once, outside the timed part: the light decode against the full VAE's same frames
        with torch.no_grad():
            full = LightDecoder(r, LightDecoderConfig(kind="full", frames=light.config.frames))(z)
            got = light(z)
        assert got.shape == full.shape and bool(torch.isfinite(got).all())
        # the fit reached fit_psnr dB on its own latents; on these it must at least beat a flat grey frame
        assert psnr(got, full) > psnr(torch.full_like(full, 0.5), full)
    benchmark.group = "decode all frames (no grad)"
    benchmark.extra_info.update(kind=kind, latent_shape=list(z.shape))
    with torch.no_grad():
        benchmark.pedantic(fn, rounds=5, warmup_rounds=1)


def report(path):
    """Print the table and ratios of a --benchmark-json file."""
    with open(path) as f:
        data = json.load(f)
    rows = {}
    for b in data["benchmarks"]:
        info = b["extra_info"]
        if b["group"].startswith("checkpoint overhead"):
            for key, v in sorted(info.items()):
                print(f"interleaved {key}: {v:.3f}")
            continue
        key = (info.get("mode"), info.get("k")) if "mode" in info else info["kind"]
        rows[key] = (b["stats"]["median"], info)
    print("| mode | K | median s | peak tensor MB |\n|---|---|---|---|")
    for mode in ("plain", "checkpointed", "all_but_last"):
        for k in (1, 2, 4, 8):
            if (mode, k) in rows:
                t, info = rows[(mode, k)]
                print(f"| {mode} | {k} | {t:.4f} | {info['peak_bytes'] / 1e6:.2f} |")
    ck = {k: rows[("checkpointed", k)] for k in (1, 8) if ("checkpointed", k) in rows}
    if len(ck) == 2:
        print(f"peak(K=8, ckpt) / peak(K=1, ckpt) = {ck[8][1]['peak_bytes'] / ck[1][1]['peak_bytes']:.3f}")
    pl = {k: rows[("plain", k)] for k in (1, 8) if ("plain", k) in rows}
    if len(pl) == 2:
        print(f"peak(K=8, plain) / peak(K=1, plain) = {pl[8][1]['peak_bytes'] / pl[1][1]['peak_bytes']:.3f}")
    for mode in ("checkpointed", "all_but_last"):
        for k in (1, 2, 4, 8):
            if ("plain", k) in rows and (mode, k) in rows:
                print(f"time {mode} / plain at K={k}: {rows[(mode, k)][0] / rows[('plain', k)][0]:.3f}")
    ck = {k: rows[("all_but_last", k)] for k in (1, 8) if ("all_but_last", k) in rows}
    if len(ck) == 2:
        print(f"peak(K=8, all_but_last) / peak(K=1, all_but_last) = "
              f"{ck[8][1]['peak_bytes'] / ck[1][1]['peak_bytes']:.3f}")
    if "light" in rows and "full" in rows:
        print(f"full / light decode time: {rows['full'][0] / rows['light'][0]:.1f}x")


if __name__ == "__main__":
    report(sys.argv[1])
