"""The ``vlmteach-fast`` command.

Subcommands:
  doctor    the stack's versions and known-bad combinations, which backend each op uses on each device, and why.
  example   a small fused-LoRA example: a PEFT LoRA on a linear stack, fused, checked against PEFT, trained 20 steps.
  solve     one instance with optimize | best_of_n | vlm_as_solver | baseline; writes video, adapter, history, plots.
  demo      the built-in toy world: plain vs Best-of-5 vs optimize on held-out instances, with shipped tiny models.
  bench     a whole suite (RULER-Bench / VBVR-Bench / toy), resumable, sharded with accelerate, with reports.
  bench-export  a bench run's videos in the benchmark's official layout, for its own evaluation scripts.
  bench-report  pytest-benchmark JSON -> the markdown tables of bench/RESULTS.md.
"""

import argparse
import platform
import sys
import time
from typing import List, Optional

import torch

from .methods import MODEL_METHODS


def _doctor(args) -> int:
    from . import __version__, _ext
    from .ops.dispatch import available_backends, get_backend, select_backend

    print(f"vlmteach_fast {__version__}")
    print(f"python {platform.python_version()} on {platform.machine()} ({platform.system()})")
    print(f"torch {torch.__version__}, built for CUDA {torch.version.cuda or 'none'}, "
          f"{torch.get_num_threads()} CPU threads")
    cuda = torch.cuda.is_available()
    if cuda:
        print(f"GPU: {torch.cuda.get_device_name(0)} (capability {'.'.join(map(str, torch.cuda.get_device_capability(0)))})")
    else:
        print("GPU: none visible to torch")
    from .stack import installed_versions, stack_issues

    versions = installed_versions()
    print("stack: " + ", ".join(f"{k} {v}" for k, v in versions.items() if v is not None))
    print("  not installed: " + (", ".join(k for k, v in versions.items() if v is None) or "-"))
    for issue in stack_issues(versions):
        print(f"  WARNING ({issue.package}): {issue.message}")
    print("backends:")
    for b in _ext.backends().values():
        print(f"  {b.name:<9} {'ok ' if b.ok else 'no '} {b.reason}")
    if get_backend():
        print(f"forced backend: {get_backend()}")
    print("op lora_linear uses:")
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if cuda else [])
    for dev in devices:
        try:
            name, why = select_backend(dev)
        except RuntimeError as err:
            name, why = "error", str(err)
        print(f"  on {dev.type:<4}: {name:<9} ({why}); available: {', '.join(available_backends(dev))}")
    from .ops import measured
    from .ops.dispatch import _why_not

    gpu = torch.device("cuda") if cuda else None
    for line in measured.describe(measured.load_table(), torch.cuda.get_device_name(0) if cuda else None,
                                  lambda b: gpu is not None and _why_not(b, gpu) is None):
        print(line)
    from .teacher.vlm import FAMILY_NOTES

    print("teacher families (what the teacher shows the VLM):")
    for model_type, note in FAMILY_NOTES.items():
        print(f"  {model_type:<10} {note}")
    return 0


def _example(args) -> int:
    """Fuse a PEFT LoRA, check it against PEFT, train it a few steps on a toy regression."""
    from peft import LoraConfig, get_peft_model

    from .nn import fuse_peft_lora
    from .ops.dispatch import select_backend

    torch.manual_seed(0)
    dim, tokens = args.features, args.tokens
    model = torch.nn.Sequential(torch.nn.Linear(dim, dim), torch.nn.GELU(), torch.nn.Linear(dim, dim))
    peft_model = get_peft_model(model, LoraConfig(r=args.rank, lora_alpha=2 * args.rank, target_modules=["0", "2"],
                                                  init_lora_weights=False))  # random A and B: a non-trivial adapter
    x = torch.randn(2, tokens, dim)
    target = torch.randn(2, tokens, dim)
    with torch.no_grad():
        reference = peft_model(x)
    report = fuse_peft_lora(peft_model)
    print(report)
    with torch.no_grad():
        fused = peft_model(x)
    err = (fused - reference).abs().max().item()
    print(f"fused vs PEFT output: max |diff| = {err:.2e} (backend: {select_backend(x.device)[0]})")
    opt = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-2)
    t0 = time.perf_counter()
    for step in range(args.steps):
        loss = torch.nn.functional.mse_loss(peft_model(x), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step in (0, args.steps - 1):
            print(f"step {step:3d}  loss {loss.item():.4f}")
    print(f"{args.steps} fused LoRA training steps in {time.perf_counter() - t0:.2f} s")
    return 0 if err < 1e-4 else 1


def _solve(args) -> int:
    from .solve import run_solve

    return run_solve(args)


def _demo(args) -> int:
    from .demo import main_demo

    return main_demo(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vlmteach-fast", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("doctor", help="show versions and which backend each op uses").set_defaults(func=_doctor)
    ex = sub.add_parser("example", help="fuse a PEFT LoRA, compare with PEFT, train a few steps")
    ex.add_argument("--features", type=int, default=256, help="hidden size of the toy model (default 256)")
    ex.add_argument("--tokens", type=int, default=128, help="tokens per sample (default 128)")
    ex.add_argument("--rank", type=int, default=16, help="LoRA rank (default 16)")
    ex.add_argument("--steps", type=int, default=20, help="training steps (default 20)")
    ex.set_defaults(func=_example)
    so = sub.add_parser("solve", help="solve one instance and write video.mp4, video.gif, adapter/, history.json, "
                                      "reward.png, result.json")
    so.add_argument("--pipeline", required=True,
                    help="diffusers pipeline directory, hub id, 'toy' (the built-in model) or py:MODULE:FACTORY")
    so.add_argument("--teacher", required=True,
                    help="transformers VLM directory, hub id, 'toy' (the built-in model) or py:MODULE:FACTORY")
    so.add_argument("--prompt", required=True, help="the task prompt")
    so.add_argument("--image", default=None, help="first frame (image-to-video pipelines)")
    so.add_argument("--queries", default=None,
                    help="JSON file or inline JSON: a list of questions (first = goal) or {goal, process}")
    so.add_argument("--method", default="optimize", choices=MODEL_METHODS, help="default optimize")
    so.add_argument("--config", default=None, help="YAML/JSON config (OptimizeConfig fields, plus n and rounds)")
    so.add_argument("--out", required=True, help="output directory")
    so.add_argument("--device", default=None, help="pipeline device (default cuda if available, else cpu)")
    so.add_argument("--teacher-device", default=None, help="teacher device (default: the pipeline's)")
    so.add_argument("--dtype", default=None, choices=("float32", "bfloat16", "float16"),
                    help="model dtype (default bfloat16 on CUDA, float32 on CPU)")
    so.add_argument("--trust-remote-code", action="store_true", help="allow custom model code (off by default)")
    so.set_defaults(func=_solve)
    de = sub.add_parser("demo", help="plain vs Best-of-5 vs optimize on the built-in toy world")
    de.add_argument("--instances", type=int, default=48,
                    help="held-out instances (default 48, about 80 s on 2 CPU cores; fewer land either side of "
                         "Best-of-5 by chance)")
    de.add_argument("--out", default="vlmteach_demo", help="output directory (default ./vlmteach_demo)")
    de.add_argument("--seed", type=int, default=0, help="which held-out instances (default 0)")
    de.add_argument("--units", default=None,
                    help="recorded unit costs as JSON (printed by an earlier demo): the same step plan and scores "
                         "on any machine; default: measured by this run")
    de.set_defaults(func=_demo)
    from .evaluate.cli import add_bench_parsers  # bench, bench-report

    add_bench_parsers(sub)
    from .plan.cli import add_plan_parser

    add_plan_parser(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    from .interrupts import exit_code, stop_name, stop_signals_as_interrupt
    from .quiet import quiet_dependencies

    quiet_dependencies()
    args = build_parser().parse_args(argv)
    with stop_signals_as_interrupt():  # SIGTERM (timeout, scancel, docker stop) runs the Ctrl-C paths
        try:
            return args.func(args)
        except KeyboardInterrupt:
            if stop_name() != "SIGTERM":
                raise  # Ctrl-C before any result: Python's own report and exit
            print(f"vlmteach-fast {args.command}: stopped by SIGTERM before any result was written",
                  file=sys.stderr, flush=True)
            return exit_code()


if __name__ == "__main__":
    sys.exit(main())
