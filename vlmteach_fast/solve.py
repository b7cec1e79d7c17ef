"""``vlmteach-fast solve``: one instance, any method, all output files. Inputs are checked before models load."""

from __future__ import annotations

import json
import os
import sys

import torch

__all__ = ["run_solve", "parse_queries_arg", "load_pipeline", "check_device_dtype", "check_out_dir"]


def parse_queries_arg(value):
    """``--queries``: a JSON file or inline JSON; a list of questions (first = goal) or {"goal", "process"}."""
    if value is None:
        return None
    from .teacher import Queries

    text = value
    if os.path.isfile(value):
        with open(value) as f:
            text = f.read()
    elif not value.lstrip().startswith(("[", "{")):
        raise ValueError(f"--queries must be a JSON file or inline JSON (a list or an object), got {value!r}")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"--queries is not valid JSON: {err}") from err
    if isinstance(data, dict):
        unknown = set(data) - {"goal", "process", "weights"}
        if unknown or "goal" not in data:
            raise ValueError(f"--queries object needs 'goal' and may have 'process', 'weights'; got keys {sorted(data)}")
        return Queries(**data)
    if isinstance(data, list) and data and all(isinstance(q, str) for q in data):
        return Queries(goal=data[0], process=data[1:])
    raise ValueError("--queries must be a non-empty list of question strings or a {goal, process} object")


def _check_source(value: str, arg: str) -> str:
    """Local paths must exist; anything else is taken as a hub id (loaded only from the local cache if offline)."""
    looks_local = value.startswith((".", "/", "~")) or os.path.exists(os.path.expanduser(value))
    path = os.path.expanduser(value)
    if looks_local and not os.path.isdir(path):
        raise FileNotFoundError(f"{arg} directory not found: {value!r}")
    return path if looks_local else value


def load_pipeline(source: str, device, dtype, trust_remote_code: bool = False):
    from diffusers import DiffusionPipeline

    try:
        pipe = DiffusionPipeline.from_pretrained(source, torch_dtype=dtype, use_safetensors=True,
                                                 trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise RuntimeError(f"--pipeline {source!r} could not be loaded as a diffusers pipeline: {err}") from err
    return pipe.to(device)


def check_device_dtype(device_arg, dtype_arg, flag: str = "--device"):
    """(torch.device, torch.dtype) from the command line, checked before any model loads: a device string torch
    parses and that exists here, and a dtype that works on it. Raises ValueError naming the setting and the value."""
    try:
        device = torch.device(device_arg) if device_arg else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    except (RuntimeError, ValueError):
        raise ValueError(f"{flag} {device_arg!r} is not a device; allowed: cpu, cuda, cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"{flag} {device_arg!r} is not supported; allowed: cpu, cuda, cuda:N")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{flag} {device_arg!r}: no CUDA device is visible to torch here (torch built for "
                             f"CUDA {torch.version.cuda or 'none'}); allowed: cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"{flag} {device_arg!r}: only {torch.cuda.device_count()} CUDA device(s) here; "
                             f"allowed: cuda:0 .. cuda:{torch.cuda.device_count() - 1}")
    if dtype_arg == "float16" and device.type == "cpu":
        # measured: fp16 on the CPU overflows in the VAE and gives NaN frames, then a misleading range error
        raise ValueError("--dtype float16 is not supported on the CPU (NaN frames); allowed there: float32, bfloat16")
    dtype = getattr(torch, dtype_arg) if dtype_arg else (torch.bfloat16 if device.type == "cuda" else torch.float32)
    return device, dtype


def check_out_dir(out: str, flag: str = "--out") -> None:
    """``out`` may be replaced by an output set (see ``outputs.commit_dir``) and can be written, proved with a
    probe file in its nearest existing folder. Creates nothing. Raises ValueError / PermissionError naming it."""
    import tempfile

    from .outputs import OutputSetError, check_replaceable_dir

    try:
        check_replaceable_dir(out, what=flag)
    except OutputSetError as err:
        raise ValueError(str(err)) from None
    probe = os.path.abspath(out)
    while not os.path.isdir(probe):
        probe = os.path.dirname(probe)
    try:
        with tempfile.NamedTemporaryFile(dir=probe, prefix=".write-probe-"):
            pass
    except OSError as err:
        raise PermissionError(f"{flag} {out!r} cannot be written ({err.strerror or err})") from err


def run_solve(args) -> int:
    from .baselines import baseline, best_of_n, vlm_as_solver
    from .config_io import load_config
    from .instance import load_image
    from .optimization import optimize
    from .teacher import VLMTeacher

    # 1. everything cheap first: a typo must not cost a model load
    if not args.prompt.strip():
        raise SystemExit("error: --prompt must not be empty")
    try:
        config, options = load_config(args.config)
        image = load_image(args.image)
        queries = parse_queries_arg(args.queries)
        pipe_src = _check_source(args.pipeline, "--pipeline")
        teacher_src = _check_source(args.teacher, "--teacher")
        device, dtype = check_device_dtype(args.device, args.dtype)
        if args.teacher_device:
            check_device_dtype(args.teacher_device, args.dtype, "--teacher-device")
        check_out_dir(args.out)
    except (ValueError, TypeError, FileNotFoundError, PermissionError) as err:
        raise SystemExit(f"error: {err}") from err

    # 2. models
    pipe = load_pipeline(pipe_src, device, dtype, args.trust_remote_code)
    teacher = VLMTeacher.from_pretrained(teacher_src, dtype=dtype, device=args.teacher_device or device,
                                         trust_remote_code=args.trust_remote_code)

    # 3. the method
    common = dict(image=image, queries=queries)
    if args.method == "optimize":
        result = optimize(pipe, teacher, args.prompt, config=config, out_dir=args.out, **common)
        summary = result.summary()
    else:
        kw = dict(sampling=config.sampling, lora=config.lora, **common)
        if args.method == "best_of_n":
            result = best_of_n(pipe, teacher, args.prompt, n=options["n"], **kw)
        elif args.method == "vlm_as_solver":
            result = vlm_as_solver(pipe, teacher, args.prompt, rounds=options["rounds"], **kw)
        else:
            result = baseline(pipe, teacher, args.prompt, **kw)
        result.save(args.out)
        summary = result.summary()
    p_yes = summary.get("final_p_yes", summary.get("p_yes"))
    print(f"{args.method}: P(Yes) per query {[round(p, 4) for p in p_yes]}, "
          f"{summary['cost']['seconds']:.1f} s, outputs in {args.out}")
    if summary.get("interrupted"):
        print(f"interrupted after {summary['steps']} step(s): {args.out} holds the best adapter so far and its video "
              "(result.json says stop_reason: interrupted)", file=sys.stderr)
        return 130
    return 0
