"""``vlmteach-fast solve``: one instance, any method, all output files. Inputs are checked before models load."""

from __future__ import annotations

import json
import os

import torch

__all__ = ["run_solve", "parse_queries_arg"]


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


def run_solve(args) -> int:
    from .config_io import load_config
    from .instance import load_image
    from .loading import check_out_dir, check_source, default_dtype, load_pipeline, load_teacher
    from .methods import run_method

    # 1. everything cheap first: a typo must not cost a model load
    if not args.prompt.strip():
        raise SystemExit("error: --prompt must not be empty")
    try:
        config, options = load_config(args.config)
        image = load_image(args.image)
        queries = parse_queries_arg(args.queries)
        pipe_src = check_source(args.pipeline, "--pipeline")
        check_source(args.teacher, "--teacher")
        check_out_dir(args.out)
    except (ValueError, TypeError, OSError) as err:
        raise SystemExit(f"error: {err}") from err
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = default_dtype(device, args.dtype)

    # 2. models
    pipe = load_pipeline(pipe_src, device, dtype, args.trust_remote_code)
    teacher = load_teacher(args.teacher, args.teacher_device or device, dtype, args.trust_remote_code)

    # 3. the method (optimize writes its files as it finishes; the others are saved here)
    result = run_method(args.method, pipe, teacher, args.prompt, image=image, queries=queries, config=config,
                        out_dir=args.out if args.method == "optimize" else None, **options)
    if args.method != "optimize":
        result.save(args.out)
    print(f"{args.method}: P(Yes) per query {[round(p, 4) for p in result.p_yes]}, "
          f"{result.cost.seconds:.1f} s, outputs in {args.out}")
    return 0
