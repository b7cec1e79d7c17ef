"""``vlmteach-fast plan``: memory, FLOPs and time of a run at real shapes, and the settings that fit a device.

    vlmteach-fast plan --video wan2.2-ti2v-5b --teacher qwen2.5-vl-7b --height 704 --width 1280 --frames 121 \\
        --gpu-memory 80GiB --budget best_of_n:5 --json
"""

from __future__ import annotations

import json
import sys

__all__ = ["add_plan_parser"]


def _run(args) -> int:
    from ..cost import parse_budget
    from .planner import plan, plan_markdown

    try:
        budget = parse_budget(args.budget)
        if not budget.best_of_n:
            raise ValueError(f"--budget must be best_of_n:N, got {args.budget!r}")
        result = plan(args.video, args.teacher, num_frames=args.frames, height=args.height, width=args.width,
                      gpu_memory=args.gpu_memory, device=args.device, best_of_n=budget.best_of_n, rank=args.rank,
                      text_encoder=args.text_encoder, headroom=args.headroom, dry=args.dry_run)
    except ValueError as err:
        print(f"vlmteach-fast plan: {err}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=1) if args.json else plan_markdown(result))
    return 0 if result["fits"] else 1


def add_plan_parser(sub) -> None:
    from .planner import TEACHER_SHAPES, VIDEO_SHAPES
    from .roofline import DEVICES

    p = sub.add_parser("plan", help="peak memory, FLOPs and step / candidate at real shapes, and the settings that "
                                    "fit --gpu-memory (a shape-only account on the CPU, a minute per setting)")
    p.add_argument("--video", default=VIDEO_SHAPES[0], help=f"a named video model shape ({', '.join(VIDEO_SHAPES)}; "
                   "default) or a diffusers pipeline folder (its configs are read, not its weights)")
    p.add_argument("--teacher", default=TEACHER_SHAPES[0], help=f"a named teacher shape ({', '.join(TEACHER_SHAPES)};"
                   " default) or a transformers VLM folder (its configs and tokenizer are read, not its weights)")
    p.add_argument("--frames", type=int, default=121, help="frames (4k + 1; default 121)")
    p.add_argument("--height", type=int, default=704, help="height in pixels (default 704)")
    p.add_argument("--width", type=int, default=1280, help="width in pixels (default 1280)")
    p.add_argument("--gpu-memory", default="80GiB", help="device memory, e.g. 80GiB (default), 141GB")
    p.add_argument("--headroom", default="2GiB", help="memory kept free for the CUDA context, workspaces and "
                                                      "fragmentation (default 2GiB)")
    p.add_argument("--device", default="h100", choices=sorted(DEVICES), help="peak rates for the time estimate")
    p.add_argument("--budget", default="best_of_n:5", help="best_of_n:N whose steps are counted (default 5)")
    p.add_argument("--rank", type=int, default=16, help="LoRA rank (default 16)")
    p.add_argument("--text-encoder", default="umt5-xxl", choices=("umt5-xxl", "measured"),
                   help="umt5-xxl: the real encoder's weights held (default); measured: the GPU check's 1 layer")
    p.add_argument("--json", action="store_true", help="one JSON object instead of tables")
    p.add_argument("--dry-run", action="store_true", help="shrunk model shapes: checks the path in seconds, "
                                                          "plans nothing real")
    p.set_defaults(func=_run)
