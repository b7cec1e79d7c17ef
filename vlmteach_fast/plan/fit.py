"""Will this run fit the device? The user's own models, copied onto the meta device, accounted through one step and
one candidate (``account_models``) before ``optimize`` spends anything; a run that would not fit is refused with
the settings that would.

A meta copy shares nothing with the original and holds no data: every parameter and buffer of every module is
replaced by an empty tensor of the same shape and dtype (tied weights stay tied); tokenizers, schedulers and configs
are copied as they are.
"""

from __future__ import annotations

import copy
import dataclasses

import torch

from .account import account_models
from .planner import HEADROOM_BYTES, parse_bytes

__all__ = ["MemoryPlanError", "check_fits", "check_run", "device_memory", "device_tensors", "meta_copy"]

GIB = 2**30
# What the refusal may propose, cheapest first (they change memory and time, not what the loop computes).
LEVERS = (
    {"offload_text_encoder": True},
    {"offload_text_encoder": True, "checkpoint_layers": True},
    {"offload_text_encoder": True, "block_checkpointing": True},
    {"offload_text_encoder": True, "checkpoint_layers": True, "block_checkpointing": True},
)
_SPELLED = {"offload_text_encoder": ("SamplingConfig(offload_text_encoder=True)", "sampling: {offload_text_encoder: true}"),
            "checkpoint_layers": ("the teacher's RewardConfig(checkpoint_layers=True)", "reward: {checkpoint_layers: true}"),
            "block_checkpointing": ("OptimizeConfig(block_checkpointing=True)", "block_checkpointing: true")}


class MemoryPlanError(ValueError):
    """The run's accounted peak is over the device's memory. ``needed`` / ``limit``: bytes; ``fits``: the first
    settings of ``LEVERS`` that fit (a dict) or None."""

    def __init__(self, message: str, needed: int, limit: int, fits: dict | None):
        super().__init__(message)
        self.needed, self.limit, self.fits = needed, limit, fits


def meta_copy(obj):
    """A deep copy of ``obj`` (a pipeline, a ``Reasoner``, a teacher) whose device tensors live on the meta device:
    every module's parameters and buffers and what a reasoner holds besides (``Reasoner.held_tensors``) is replaced
    by an empty tensor of the same shape and dtype; no data is copied. Other tensors (a scheduler's sigmas, kept on
    the host) are copied as they are."""
    memo = {}
    for t in device_tensors(obj):
        empty = torch.empty_like(t, device="meta")  # a storage of its own, even when ``t`` is on meta
        memo[id(t)] = torch.nn.Parameter(empty, requires_grad=t.requires_grad) if isinstance(
            t, torch.nn.Parameter) else empty
    return copy.deepcopy(obj, memo)


def device_tensors(obj) -> list[torch.Tensor]:
    """The tensors a run of ``obj`` holds on its device besides activations: the parameters and buffers of every
    module reachable through attributes, dicts, lists and tuples (cycles followed once), and every reachable
    reasoner's ``held_tensors()``."""
    found, seen, todo = {}, set(), [obj]
    while todo:
        o = todo.pop()
        if id(o) in seen or isinstance(o, (str, bytes, int, float, bool, type(None), type, torch.Tensor)):
            continue
        seen.add(id(o))
        if isinstance(o, torch.nn.Module):
            found.update((id(t), t) for t in list(o.parameters()) + list(o.buffers()))
        elif callable(getattr(o, "held_tensors", None)):
            found.update((id(t), t) for t in o.held_tensors())
        if isinstance(o, dict):
            todo += list(o.values())
        elif isinstance(o, (list, tuple, set)):
            todo += list(o)
        elif hasattr(o, "__dict__") and not isinstance(o, torch.nn.Module):
            todo += list(vars(o).values())
    return list(found.values())


def device_memory(device) -> int | None:
    """Total bytes of a CUDA ``device``; None for any other device (the check is for accelerators)."""
    device = torch.device(device)
    if device.type != "cuda" or not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_properties(device).total_memory


def _account(reasoner, teacher, config, geometry, questions, image, levers: dict) -> dict:
    reward = getattr(teacher, "config", None)
    t = meta_copy(teacher)
    if "checkpoint_layers" in levers:
        t.config = dataclasses.replace(reward, checkpoint_layers=True)
    k_step = config.mode == "k_step"
    predict = dict(mode=config.mode, steps=config.steps if k_step else None,
                   grad_steps=config.grad_steps if k_step else 1, lora_steps=config.lora_steps,
                   checkpoint=config.checkpoint if k_step else None,
                   block_checkpointing=config.block_checkpointing or levers.get("block_checkpointing", False))
    s = config.sampling
    return account_models(meta_copy(reasoner), t, geometry, predict, decoder=config.decoder, questions=questions,
                          image=image, guidance_scale=s.guidance_scale, max_sequence_length=s.max_sequence_length,
                          offload_text_encoder=s.offload_text_encoder or levers.get("offload_text_encoder", False))


def check_fits(reasoner, teacher, config, geometry: dict, questions: list[str], image, limit,
               headroom=HEADROOM_BYTES) -> dict:
    """Account ``optimize``'s step and candidate with these models and settings; raise ``MemoryPlanError`` naming
    the settings that fit when the peak plus ``headroom`` is over ``limit``.

    Args:
        reasoner: the ``Reasoner`` the run uses; teacher: a ``VLMTeacher`` (other teachers are not accounted:
            the check returns ``{"checked": False}``).
        config: the run's ``OptimizeConfig``; geometry: {"num_frames", "height", "width"}.
        questions: the questions (first = goal) or placeholders of the same count.
        image: the first frame the run is prepared with, or None.
        limit, headroom: bytes, or strings such as ``"80GiB"`` (``parse_bytes``).

    Returns:
        {"checked": True, "peak_bytes", "peak_phase", "limit_bytes"} when it fits.
    """
    from ..teacher import RewardConfig

    if not isinstance(getattr(teacher, "config", None), RewardConfig) or not hasattr(teacher, "model"):
        return {"checked": False}
    limit, headroom = parse_bytes(limit), parse_bytes(headroom)
    geo = (geometry["num_frames"], geometry["height"], geometry["width"])
    acc = _account(reasoner, teacher, config, geo, questions, image, {})
    if acc["peak_bytes"] + headroom <= limit:
        return {"checked": True, "peak_bytes": acc["peak_bytes"], "peak_phase": acc["peak_phase"],
                "limit_bytes": limit}
    current = {"offload_text_encoder": config.sampling.offload_text_encoder,
               "checkpoint_layers": teacher.config.checkpoint_layers, "block_checkpointing": config.block_checkpointing}
    fits, peak = None, None
    for levers in LEVERS:
        if all(current[k] for k in levers):
            continue  # nothing new to try
        trial = _account(reasoner, teacher, config, geo, questions, image, levers)
        if trial["peak_bytes"] + headroom <= limit:
            fits, peak = {k: v for k, v in levers.items() if not current[k]}, trial["peak_bytes"]
            break
    raise MemoryPlanError(_message(acc, geo, limit, headroom, fits, peak), acc["peak_bytes"], limit, fits)


def _message(acc, geo, limit, headroom, fits, peak) -> str:
    what = (f"optimize would need about {acc['peak_bytes'] / GIB:.1f} GiB at {geo[0]} frames x {geo[1]} x {geo[2]} "
            f"(peak in {acc['peak_phase']}), over the device's {limit / GIB:.1f} GiB less {headroom / GIB:.1f} GiB "
            "of headroom")
    if fits:
        api = ", ".join(_SPELLED[k][0] for k in fits)
        cfg = ", ".join(_SPELLED[k][1] for k in fits)
        how = f"it fits with {api} (config file: {cfg}), about {peak / GIB:.1f} GiB"
    else:
        how = ("no memory setting makes it fit: lower num_frames / height / width, the teacher's process_frames or "
               "max_pixels, or use a larger device")
    return (f"{what}; {how}. `vlmteach-fast plan` prints every phase; OptimizeConfig(memory_limit=None) skips "
            "this check")


def check_run(reasoner, teacher, config, image, geometry: dict, queries=None, max_process: int = 3) -> dict:
    """``optimize``'s check before its first model call, by ``config.memory_limit`` (``OptimizeConfig``):
    ``"auto"`` checks on a CUDA device against its memory when the teacher shares that device, a size checks on any
    device, None skips. A result is kept on the reasoner for the same geometry, settings and question count, so a
    benchmark's instances pay it once. Returns ``check_fits``' dict (``{"checked": False}`` when skipped)."""
    limit = config.memory_limit
    if limit == "auto":
        limit = device_memory(reasoner.device)
        teacher_device = next(teacher.model.parameters()).device if hasattr(teacher, "model") else None
        if teacher_device is not None and teacher_device != torch.device(reasoner.device):
            limit = None  # two devices: the account puts every model on one
    if limit is None:
        return {"checked": False}
    questions = list(queries.questions) if queries is not None else [
        f"Does the video show rule {i}?" for i in range(1 + max_process)]
    key = (repr(config), repr(getattr(teacher, "config", None)), tuple(geometry[k] for k in ("num_frames", "height", "width")), len(questions),
           image is None, limit, id(teacher))
    done = reasoner.__dict__.setdefault("_fit_checks", {})
    if key not in done:
        done[key] = check_fits(reasoner, teacher, config, geometry, questions, image, limit, config.memory_headroom)
    return done[key]
