"""``vlmteach-fast solve``: one instance, any method, all output files. Inputs are checked before models load."""

from __future__ import annotations

import json
import os
import sys

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
    from .instance import check_instance_geometry, load_image
    from .evaluate.models import check_spec, load_pipeline_spec, load_teacher_spec, toy_folder
    from .loading import check_device_dtype, check_out_dir, check_source, family_from_folder
    from .methods import run_method

    # 1. everything cheap first: a typo must not cost a model load
    if not args.prompt.strip():
        raise SystemExit("error: --prompt must not be empty")
    try:
        config, options = load_config(args.config)
        image = load_image(args.image)
        queries = parse_queries_arg(args.queries)
        check_spec(args.pipeline, "--pipeline")  # toy: the built-in model (evaluate.models), never the Hub
        pipe_src = toy_folder("--pipeline") if args.pipeline == "toy" else check_source(args.pipeline, "--pipeline")
        family = family_from_folder(pipe_src)  # frames / size / first frame vs the model, from its configs alone
        if family is not None:
            check_instance_geometry(family, config.sampling, image)
        check_spec(args.teacher, "--teacher")
        device, dtype = check_device_dtype(args.device, args.dtype)
        if args.teacher_device:
            check_device_dtype(args.teacher_device, args.dtype, "--teacher-device")
        check_out_dir(args.out, output_set=True)
    except (ValueError, TypeError, OSError, RuntimeError) as err:
        raise SystemExit(f"error: {err}") from err

    # 2. models
    pipe = load_pipeline_spec(args.pipeline, device, dtype, args.trust_remote_code)
    teacher = load_teacher_spec(args.teacher, args.teacher_device or device, dtype, args.trust_remote_code)

    # 3. the method, then its files (saved here, not by optimize: a full disk must not lose the result)
    from .plan.fit import MemoryPlanError

    try:
        result = run_method(args.method, pipe, teacher, args.prompt, image=image, queries=queries, config=config,
                            **options)
    except MemoryPlanError as err:  # refused before the first model call, with the settings that fit
        raise SystemExit(f"error: {err}") from err
    _save(result, args.out)
    print(f"{args.method}: P(Yes) per query {[round(p, 4) for p in result.p_yes]}, "
          f"{result.cost.seconds:.1f} s, outputs in {args.out}")
    if result.stop_reason == "interrupted":
        from .interrupts import exit_code, stop_name

        print(f"interrupted ({stop_name()}) after {len(result.history)} step(s): {args.out} holds the best adapter so "
              "far and its video (result.json says stop_reason: interrupted)", file=sys.stderr)
        return exit_code()  # the shell's code for the signal: 130 (Ctrl-C), 143 (SIGTERM)
    return 0


def _save(result, out: str) -> None:
    """``result.save(out)``; on a full, read-only or over-quota file system (``io_atomic.storage_error``) one line
    instead of a traceback, after trying to keep an optimized adapter without its videos (the bulk of the set)."""
    from .io_atomic import storage_error

    try:
        result.save(out)
        return
    except Exception as err:
        if not storage_error(err):
            raise
        why = f"{storage_error(err)} ({err})"
    kept = "nothing was saved"
    if hasattr(result, "adapter"):  # an OptimizeResult: its adapter is what took the time
        from .outputs import save_optimize_result

        try:
            save_optimize_result(result, out, videos=False)
            kept = f"the adapter, history.json and result.json are saved in {out} (no videos)"
        except Exception as err:
            if not storage_error(err):
                raise
    raise SystemExit(f"error: could not save the result in {out}: {why}; {kept}")
