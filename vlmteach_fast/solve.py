"""``vlmteach-fast solve``: one instance, any method, all output files. Inputs are checked before models load."""

from __future__ import annotations

import json
import os

import torch

__all__ = ["run_solve", "parse_queries_arg", "load_pipeline"]


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
        os.makedirs(args.out, exist_ok=True)
        if not os.access(args.out, os.W_OK):
            raise PermissionError(f"--out directory is not writable: {args.out!r}")
    except (ValueError, TypeError, FileNotFoundError, PermissionError) as err:
        raise SystemExit(f"error: {err}") from err
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = getattr(torch, args.dtype) if args.dtype else (torch.bfloat16 if device.type == "cuda" else torch.float32)

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
    return 0
