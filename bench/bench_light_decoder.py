"""Light decoders: forward + backward time of linear, trained tiny (TAEHV layout) and full VAE decodes.

Run:  python -m pytest bench/bench_light_decoder.py --benchmark-only -q --benchmark-json=/tmp/ld.json
      python bench/bench_light_decoder.py /tmp/ld.json          # the tables for bench/RESULTS.md

Two settings:
- toy: the shipped toy model. Latents = the model's one-step prediction on a held-out (test-split) instance,
  1 x 16 x 3 x 8 x 8 -> 9 frames of 32 x 32; loss = mean of the decoded frames (all 3 latent frames' pixel frames).
  Decoders: ``LightDecoderConfig(kind="linear")``, the default ``kind="auto"`` (the shipped tiny decoder) and
  ``kind="full"``.
- wan22: random weights in the shapes of Wan2.2-TI2V-5B's VAE (48 latent channels, 16x spatial, 4x temporal;
  ``AutoencoderKLWan(base_dim=160, decoder_base_dim=256, dim_mult=[1, 2, 4, 4], num_res_blocks=2,
  is_residual=True, patch_size=2)``) and of ``taew2_2`` (``TAEW2_2``), on 1 latent frame. The full decoder's
  forward + backward at 480p (30 x 52 latents -> 480 x 832) needs ~20 TFLOP and tens of GB of activations, beyond
  this 2-core CPU, so both decoders are timed at 64 x 96 pixels (4 x 6 latents) and the tiny one also at 480p;
  both are convolution stacks whose cost grows with the pixel count, so their ratio carries over (the tiny
  decoder's own 64x96 -> 480p scaling is reported to check that).
Ratios come from ``*_interleaved`` tests: the decoders run in turn, round after round, each keeping its fastest
round, so a load spike from other jobs on the shared cores hits all of them alike. One torch thread on the CPU.
"""

import json
import os
import sys
import tempfile
import time

import pytest
import torch

from vlmteach_fast.reasoner import LightDecoder, LightDecoderConfig, Reasoner
from vlmteach_fast.reasoner.taehv import TAEW2_2, TinyDecoderConfig, TinyVideoDecoder

_CACHE = {}
TOY_KINDS = ("linear", "auto", "full")


pytestmark = pytest.mark.usefixtures("one_cpu_thread")


def _toy():
    if "toy" not in _CACHE:
        from vlmteach_fast.toy import make_instances
        from vlmteach_fast.toy.models import load_pipeline

        r = Reasoner.from_pipeline(load_pipeline())
        inst = make_instances(1, seed=0, split="test")[0]
        prep = r.prepare(inst.prompt, inst.first_frame, num_frames=9, height=32, width=32, seed=0)
        with torch.no_grad():
            z = r.predict(prep).latents  # (1, 16, 3, 8, 8): what the loop decodes
        cache = os.path.join(tempfile.gettempdir(), "vtf-bench-ld")
        dec = {k: LightDecoder(r, LightDecoderConfig(kind=k, cache_dir=cache)) for k in TOY_KINDS}
        _CACHE["toy"] = (z, dec)
    return _CACHE["toy"]


def _fwd_bwd(decode, z):
    z = z.detach().requires_grad_(True)
    decode(z).mean().backward()
    return z.grad


@pytest.mark.parametrize("kind", TOY_KINDS)
def test_toy_decode_fwd_bwd(benchmark, kind):
    z, dec = _toy()
    benchmark.group = "toy decode fwd+bwd"
    benchmark.extra_info.update(kind=dec[kind].kind, latent_shape=list(z.shape), threads=torch.get_num_threads())
    benchmark.pedantic(_fwd_bwd, args=(dec[kind], z), rounds=10, warmup_rounds=2)


def _interleaved(fns: dict, rounds: int) -> dict:
    best = {}
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            dt = time.perf_counter() - t0
            best[name] = min(best.get(name, dt), dt)
    return best


def test_toy_decode_fwd_bwd_interleaved(benchmark):
    z, dec = _toy()
    fns = {k: (lambda d=dec[k]: _fwd_bwd(d, z)) for k in TOY_KINDS}
    best = {}
    benchmark.group = "toy decode fwd+bwd (interleaved)"
    benchmark.pedantic(lambda: best.update(_interleaved(fns, rounds=15)), rounds=1, warmup_rounds=0)
    for k, t in best.items():
        benchmark.extra_info[f"min_ms_{dec[k].kind}"] = 1e3 * t
    for k in ("linear", "auto"):
        benchmark.extra_info[f"ratio_{dec[k].kind}_to_full"] = best[k] / best["full"]


def _wan22_full_vae(real_size: bool):
    """Random-weight Wan2.2-TI2V-5B-shaped VAE and taew2_2-shaped tiny decoder (narrow copies with the same
    geometry when ``real_size`` is False: CI runs every benchmark once with timing disabled)."""
    key = ("wan22", real_size)
    if key not in _CACHE:
        from diffusers import AutoencoderKLWan

        torch.manual_seed(0)
        base, dec_base = (160, 256) if real_size else (8, 8)
        vae = AutoencoderKLWan(base_dim=base, decoder_base_dim=dec_base, z_dim=48, dim_mult=[1, 2, 4, 4],
                               num_res_blocks=2, is_residual=True, in_channels=12, out_channels=12, patch_size=2,
                               scale_factor_spatial=16, temperal_downsample=[False, True, True]).eval()
        del vae.encoder  # decode only: frees its weights
        vae.requires_grad_(False)
        cfg = TAEW2_2 if real_size else TinyDecoderConfig(latent_channels=48, widths=(8, 8, 8, 8), patch_size=2)
        tiny = TinyVideoDecoder(cfg).eval().requires_grad_(False)
        _CACHE[key] = (vae, tiny)
    return _CACHE[key]


def _wan22_fns(h: int, w: int, with_full: bool, real_size: bool) -> dict:
    vae, tiny = _wan22_full_vae(real_size)
    z = torch.randn(1, 48, 1, h, w)
    fns = {"tiny": lambda: _fwd_bwd(lambda x: tiny(x.transpose(1, 2)), z)}
    if with_full:
        fns["full"] = lambda: _fwd_bwd(lambda x: vae.decode(x, return_dict=False)[0], z)
    return fns


@pytest.mark.slow
def test_wan22_decode_fwd_bwd_interleaved(benchmark):
    real = not benchmark.disabled
    small = _wan22_fns(4, 6, with_full=True, real_size=real)  # 64 x 96 px
    best = {}
    benchmark.group = "wan2.2-shaped decode fwd+bwd, 1 latent frame"
    benchmark.pedantic(lambda: best.update(_interleaved(small, rounds=3 if real else 1)), rounds=1, warmup_rounds=0)
    big = _wan22_fns(30, 52, with_full=False, real_size=real)  # 480 x 832 px
    t480 = _interleaved(big, rounds=2 if real else 1)["tiny"]
    benchmark.extra_info.update(min_s_tiny_64x96=best["tiny"], min_s_full_64x96=best["full"],
                                ratio_tiny_to_full_64x96=best["tiny"] / best["full"], min_s_tiny_480p=t480,
                                tiny_480p_over_64x96=t480 / best["tiny"], pixel_ratio=(480 * 832) / (64 * 96))


def report(path):
    """Print the tables of a --benchmark-json file."""
    with open(path) as f:
        data = json.load(f)
    for b in data["benchmarks"]:
        info = b["extra_info"]
        if b["group"].startswith("toy decode fwd+bwd (interleaved)"):
            print("| decoder | fwd+bwd ms (min of 15, interleaved) | / full |\n|---|---|---|")
            for k in ("linear", "tiny", "full"):
                ms = info.get(f"min_ms_{k}")
                ratio = 1.0 if k == "full" else info.get(f"ratio_{k}_to_full")
                if ms is not None:
                    print(f"| {k} | {ms:.2f} | {ratio:.3f} |")
        elif b["group"].startswith("toy decode fwd+bwd"):
            print(f"toy {info['kind']}: median {1e3 * b['stats']['median']:.2f} ms")
        elif b["group"].startswith("wan2.2"):
            print(f"wan2.2-shaped, 1 latent frame: tiny {info['min_s_tiny_64x96'] * 1e3:.1f} ms, full "
                  f"{info['min_s_full_64x96'] * 1e3:.0f} ms at 64x96 (ratio {info['ratio_tiny_to_full_64x96']:.4f}); "
                  f"tiny at 480p {info['min_s_tiny_480p']:.2f} s ({info['tiny_480p_over_64x96']:.0f}x its 64x96 "
                  f"time for {info['pixel_ratio']:.0f}x the pixels)")


if __name__ == "__main__":
    report(sys.argv[1])
