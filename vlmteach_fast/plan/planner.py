"""The cheapest settings that fit a device: accounts of candidate settings, their predicted peak, step / candidate
and the steps a ``best_of_n:N`` budget buys (``vlmteach-fast plan``)."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from ..checks import check_int
from .phases import CANDIDATE_PHASES, STEP_PHASES, VARIANTS
from .roofline import DEVICES, EFFICIENCY, phase_seconds

__all__ = ["SETTINGS", "TEACHER_SHAPES", "VIDEO_SHAPES", "check_size", "parse_bytes", "plan", "plan_markdown"]

GIB = 2**30
VIDEO_SHAPES = ("wan2.2-ti2v-5b",)
TEACHER_SHAPES = ("qwen2.5-vl-7b",)
# The settings tried: each changes memory and time, not what the loop computes. The plan keeps the fitting one with
# the shortest predicted step. ``last_blocks`` and teacher pixels change what is optimized: listed in
# docs/planning.md with their measured effect, never chosen here.
SETTINGS = (
    {"offload_text_encoder": False, "checkpoint_layers": False, "block_checkpointing": False},
    {"offload_text_encoder": True, "checkpoint_layers": False, "block_checkpointing": False},
    {"offload_text_encoder": True, "checkpoint_layers": True, "block_checkpointing": False},
    {"offload_text_encoder": True, "checkpoint_layers": False, "block_checkpointing": True},
    {"offload_text_encoder": True, "checkpoint_layers": True, "block_checkpointing": True},
)
# What the device's allocator cannot hand out (CUDA context, cuBLAS workspace, fragmentation): kept free.
HEADROOM_BYTES = 2 * GIB


def parse_bytes(text) -> int:
    """``"80GiB"``, ``"80GB"``, ``"81920MiB"`` or a number of bytes -> bytes (int)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return int(text)
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]i?B|B)?\s*", str(text), flags=re.IGNORECASE)
    if not m:
        raise ValueError(f"`gpu_memory` must look like 80GiB, 80GB or 85899345920, got {text!r}")
    unit = (m.group(2) or "B").upper()
    scale = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
             "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}[unit]
    return int(float(m.group(1)) * scale)


def check_size(name: str, value, also: str = "", minimum: int = 0) -> int:
    """``parse_bytes(value)``, or a ``ValueError`` naming ``name`` (``also``: the other values it may take) when it
    is not a size of at least ``minimum`` bytes."""
    try:
        size = parse_bytes(value)
    except ValueError:
        size = None
    if size is None or size < minimum:
        raise ValueError(f"`{name}` must be {also}a size such as '80GiB' or a number of bytes >= {minimum}, "
                         f"got {value!r}")
    return size


@dataclass
class _Option:
    settings: dict
    account: dict
    step_seconds: float
    candidate_seconds: float
    device_ratio: float = 0.0  # step / candidate were the host's kernel launches free (CUDA graphs)

    @property
    def peak_bytes(self) -> int:
        return self.account["peak_bytes"]


def _models(video: str, teacher: str, text_encoder: str, reward_config, dry: bool):
    """(pipeline, teacher, text tokens) on the meta device: named shapes, or the user's folders (``plan.folders``)."""
    from . import shapes
    from .folders import meta_pipeline, meta_teacher

    if video in VIDEO_SHAPES:
        pipe, tokens = shapes.wan_ti2v_pipeline(dry, device="meta", text_encoder=text_encoder), shapes.wan_configs(dry)[2]
    else:
        pipe, tokens = meta_pipeline(video), shapes.WAN22_TEXT_TOKENS
    if teacher in TEACHER_SHAPES:
        return pipe, shapes.qwen25_vl_teacher(dry, device="meta", reward_config=reward_config), tokens
    return pipe, meta_teacher(teacher, reward_config=reward_config), tokens


def _option(geometry, settings, device, rank, models, reward_config) -> _Option:
    from ..reasoner import LoRASpec
    from ..teacher import RewardConfig
    from .account import account_models

    rc = dataclasses.replace(reward_config or RewardConfig(), checkpoint_layers=settings["checkpoint_layers"])
    variant = "block_checkpointing" if settings["block_checkpointing"] else "one_step"
    pipe, teacher, tokens = models(rc)
    acc = account_models(pipe, teacher, geometry, VARIANTS[variant], lora=LoRASpec(rank=rank),
                         max_sequence_length=tokens, offload_text_encoder=settings["offload_text_encoder"],
                         keep_ops=True)
    device_only = dataclasses.replace(EFFICIENCY, host_seconds_per_kernel=0.0)  # kernels issued at no cost
    for d in acc["phases"].values():
        ops = d.pop("ops")
        d["predicted_seconds"], d["device_seconds"] = phase_seconds(ops, device), phase_seconds(ops, device, device_only)
    ph = acc["phases"]
    opt = _Option(settings, acc, sum(ph[p]["predicted_seconds"] for p in STEP_PHASES),
                  sum(ph[p]["predicted_seconds"] for p in CANDIDATE_PHASES))
    opt.device_ratio = (sum(ph[p]["device_seconds"] for p in STEP_PHASES) /
                        sum(ph[p]["device_seconds"] for p in CANDIDATE_PHASES))
    return opt


def plan(video: str = "wan2.2-ti2v-5b", teacher: str = "qwen2.5-vl-7b", *, num_frames: int = 121,
         height: int = 704, width: int = 1280, gpu_memory="80GiB", device: str = "h100", best_of_n: int = 5,
         rank: int = 16, text_encoder: str = "umt5-xxl", reward_config=None, headroom=HEADROOM_BYTES,
         dry: bool = False) -> dict:
    """Account the settings of ``SETTINGS`` and return the one with the shortest predicted step among those that fit
    ``gpu_memory`` (the plain settings alone when they fit).

    Args:
        video, teacher: named shapes (``VIDEO_SHAPES``, ``TEACHER_SHAPES``), or the user's checkpoint folders (a
            diffusers pipeline folder, a transformers VLM folder), built from their configs without reading weights.
        num_frames, height, width: the video's geometry (the family's rules: frames 4k + 1, sides multiples of 32).
        gpu_memory: the device's memory (``parse_bytes``); ``headroom`` bytes of it are kept free (default
            ``HEADROOM_BYTES``).
        device: a key of ``roofline.DEVICES`` for the time estimate.
        best_of_n: the budget ``best_of_n:N`` whose steps are counted.
        rank: LoRA rank; text_encoder: ``"umt5-xxl"`` (held in memory, as a pipeline does) or ``"measured"``.
        reward_config: the teacher's ``RewardConfig`` (its ``checkpoint_layers`` is set by the plan).
        dry: the shrunk shapes (tests).

    Returns:
        A JSON-ready dict: ``fits``, ``settings`` (chosen, or the smallest-peak ones when none fits), ``peak_gib``,
        ``peak_phase``, ``step_over_candidate``, ``steps_within_budget``, ``step_seconds``, ``candidate_seconds``
        (estimates for ``device``), ``phases`` (per phase: peak bytes, FLOPs, bytes, predicted seconds),
        ``weights_gib`` per model, and ``options`` (every setting tried, with its peak and ratio).
    """
    from ..cost import UnitCosts

    import os

    if video not in VIDEO_SHAPES and not os.path.isdir(str(video)):
        raise ValueError(f"`video` must be one of {list(VIDEO_SHAPES)} or a pipeline folder, got {video!r}")
    if teacher not in TEACHER_SHAPES and not os.path.isdir(str(teacher)):
        raise ValueError(f"`teacher` must be one of {list(TEACHER_SHAPES)} or a model folder, got {teacher!r}")
    if device not in DEVICES:
        raise ValueError(f"`device` must be one of {sorted(DEVICES)}, got {device!r}")
    check_int("best_of_n", best_of_n)
    check_int("num_frames", num_frames)
    for name, side in (("height", height), ("width", width)):
        check_int(name, side)
    if video in VIDEO_SHAPES:  # a folder's family checks its own geometry when the account prepares the instance
        if (num_frames - 1) % 4:
            raise ValueError(f"`num_frames` must be 4k + 1 for {video} (its VAE compresses time 4x), got {num_frames}")
        for name, side in (("height", height), ("width", width)):
            if side % 32:
                raise ValueError(f"`{name}` must be a multiple of 32 for {video} (16x VAE, 2x2 patches), got {side}")
    limit, headroom = parse_bytes(gpu_memory), parse_bytes(headroom)
    dev = DEVICES[device]
    options = []
    def models(rc):
        return _models(video, teacher, text_encoder, rc, dry)

    for settings in SETTINGS:
        opt = _option((num_frames, height, width), settings, dev, rank, models, reward_config)
        options.append(opt)
        if not options[1:]:  # the first account knows the weights: a limit below them is refused at once
            w = opt.account["weights_bytes"]
            resident = sum(w.values()) - w.get("text_encoder", 0)
            if resident + headroom > limit:
                raise ValueError(f"`gpu_memory` {limit / GIB:.2f} GiB is below the models' weights ({resident / GIB:.2f}"
                                 f" GiB without the text encoder) plus {headroom / GIB:.2f} GiB of headroom")
        if opt is options[0] and opt.peak_bytes + headroom <= limit:
            break  # the plain settings fit: nothing to trade
    fitting = [o for o in options if o.peak_bytes + headroom <= limit]
    chosen = min(fitting, key=lambda o: o.step_seconds) if fitting else min(options, key=lambda o: o.peak_bytes)
    units = UnitCosts(candidate=chosen.candidate_seconds, step=chosen.step_seconds)
    return {
        "video": video, "teacher": teacher, "geometry": [num_frames, height, width], "device": dev.name,
        "gpu_memory_gib": limit / GIB, "best_of_n": best_of_n, "fits": bool(fitting), "settings": chosen.settings,
        "peak_gib": chosen.peak_bytes / GIB, "peak_phase": chosen.account["peak_phase"],
        "step_over_candidate": chosen.step_seconds / chosen.candidate_seconds,
        "step_over_candidate_device_only": chosen.device_ratio,
        "steps_within_budget": units.steps_within(best_of_n, 1),
        "step_seconds": chosen.step_seconds, "candidate_seconds": chosen.candidate_seconds,
        "weights_gib": {k: v / GIB for k, v in chosen.account["weights_bytes"].items()},
        "phases": chosen.account["phases"],
        "options": [{"settings": o.settings, "peak_gib": o.peak_bytes / GIB,
                     "step_over_candidate": o.step_seconds / o.candidate_seconds} for o in options],
        "estimate": "shape-only account on a CPU; seconds from a roofline fitted to H200 phase times",
    }


def _fmt_row(name: str, d: dict) -> str:
    return (f"| {name} | {d['peak_bytes'] / GIB:.1f} | {d['flops'] / 1e12:.1f} | {d['bytes_moved'] / 1e9:.0f} | "
            f"{d['predicted_seconds']:.3f} |")


def plan_markdown(result: dict) -> str:
    """A human-readable plan."""
    s = result["settings"]
    lines = [f"# Plan: {result['video']} + {result['teacher']}, {'x'.join(map(str, result['geometry']))} "
             f"(frames x height x width), {result['device']}, {result['gpu_memory_gib']:.0f} GiB",
             "",
             f"{'fits' if result['fits'] else 'does NOT fit'} with OptimizeConfig(block_checkpointing="
             f"{s['block_checkpointing']}), RewardConfig(checkpoint_layers={s['checkpoint_layers']}), SamplingConfig("
             f"offload_text_encoder={s['offload_text_encoder']}): peak {result['peak_gib']:.1f} GiB in "
             f"{result['peak_phase']}; step / candidate {result['step_over_candidate']:.2f}; best_of_n:"
             f"{result['best_of_n']} buys {result['steps_within_budget']} steps "
             f"(step {result['step_seconds']:.2f} s, candidate {result['candidate_seconds']:.2f} s, estimated; "
             f"{result['step_over_candidate_device_only']:.2f} if kernel launches cost nothing)",
             "", "| phase | peak GiB | TFLOP | GB moved | seconds |", "|---|---|---|---|---|"]
    lines += [_fmt_row(n, d) for n, d in result["phases"].items()]
    lines += ["", "| settings tried | peak GiB | step / candidate |", "|---|---|---|"]
    lines += [f"| {o['settings']} | {o['peak_gib']:.1f} | {o['step_over_candidate']:.2f} |" for o in result["options"]]
    lines += ["", f"weights GiB: {', '.join(f'{k} {v:.1f}' for k, v in result['weights_gib'].items())}",
              f"({result['estimate']})"]
    return "\n".join(lines)
