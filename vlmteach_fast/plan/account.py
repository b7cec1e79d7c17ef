"""Memory and FLOP account of one ``optimize`` step and one Best-of-N candidate at real model shapes, on a CPU.

The models are built from their published configs on the meta device (no weights in memory), or copied there from
the user's own models (``plan.fit``), and the step and the candidate run through the library's own calls
(``plan.phases``) under ``ShapeOnlyRun``: per phase, the peak live bytes (weights, LoRA, optimizer states and
activations, as a device's allocator sees them), the op that reached it, FLOPs and bytes moved. A 704p x 121 account
takes about a minute.
"""

from __future__ import annotations

import torch

from . import shapes
from .phases import VARIANTS, candidate, optimize_step
from .shadow import ShapeOnlyRun

__all__ = ["account_models", "account_run"]

PROMPT = "move the red ball onto the green square without touching the walls"


def account_run(geometry: tuple[int, int, int], variant: str = "one_step", *, rank: int = 16,
                text_encoder: str = "measured", reward_config=None, last_blocks: int | None = None,
                offload_text_encoder: bool = False, dry: bool = False, meta: bool = True,
                keep_ops: bool = False) -> dict:
    """Account one step (the second, so the optimizer's states exist as in a run) and one candidate of the named
    shapes (Wan2.2-TI2V-5B + Qwen2.5-VL-7B, ``plan.shapes``).

    Args:
        geometry: (num_frames, height, width) of the video.
        variant: a key of ``plan.phases.VARIANTS`` (the step's ``Reasoner.predict`` settings).
        rank: LoRA rank on the transformer.
        text_encoder: ``"measured"`` (the 1-layer encoder the GPU check ran) or ``"umt5-xxl"`` (the real one's
            shape; it stays in memory as in a user's pipeline).
        reward_config: the teacher's ``RewardConfig`` (None: defaults).
        last_blocks: ``LoRASpec.last_blocks`` (None: every block adapted).
        offload_text_encoder: ``SamplingConfig.offload_text_encoder`` (the encoder leaves the device after the prompt).
        dry: the shrunk shapes of ``plan.shapes`` (tests).
        meta: False runs the same account on real CPU tensors (tests: it must give the same numbers).
        keep_ops: keep every phase's per-kernel (flops, bytes) list (``ops``), for the roofline fit.

    Returns:
        ``account_models``' dict, with ``variant``, ``rank``, ``text_encoder``, ``last_blocks`` and
        ``offload_text_encoder`` added.
    """
    from ..reasoner import LoRASpec

    if variant not in VARIANTS:
        raise ValueError(f"`variant` must be one of {sorted(VARIANTS)}, got {variant!r}")
    device = "meta" if meta else "cpu"
    torch.manual_seed(0)
    pipe = shapes.wan_ti2v_pipeline(dry, device=device, text_encoder=text_encoder)
    teacher = shapes.qwen25_vl_teacher(dry, device=device, reward_config=reward_config)
    acc = account_models(pipe, teacher, geometry, VARIANTS[variant], lora=LoRASpec(rank=rank, last_blocks=last_blocks),
                         max_sequence_length=shapes.wan_configs(dry)[2], offload_text_encoder=offload_text_encoder,
                         meta=meta, keep_ops=keep_ops)
    return acc | {"variant": variant, "rank": rank, "text_encoder": text_encoder, "last_blocks": last_blocks,
                  "offload_text_encoder": offload_text_encoder}


def account_models(pipe, teacher, geometry: tuple[int, int, int], predict: dict, *, lora=None, decoder=None,
                   questions=None, prompt: str = PROMPT, image="auto", guidance_scale: float = 1.0, max_sequence_length: int = 512,
                   offload_text_encoder: bool = False, meta: bool = True, keep_ops: bool = False) -> dict:
    """Account one step (the second) and one 4-step candidate of given models.

    Args:
        pipe: a supported diffusers pipeline or a ``Reasoner``, its weights on the meta device (``meta=True``) or
            real CPU tensors (``meta=False``).
        teacher: a ``VLMTeacher`` on the same device (its ``config`` is the ``RewardConfig`` accounted).
        geometry: (num_frames, height, width).
        predict: ``Reasoner.predict`` keywords of the step (``plan.phases.VARIANTS`` values).
        lora: ``LoRASpec`` of a new reasoner (a ``Reasoner`` keeps its own).
        decoder: ``LightDecoderConfig`` whose ``frames`` the light decode selects (a linear map stands for the
            decoder: a tiny decoder's own few MB are not counted).
        questions: the questions scored, first = goal (None: 1 goal + 3 process questions).
        prompt, image, guidance_scale, max_sequence_length, offload_text_encoder: as in ``Reasoner.prepare``
            (``image="auto"``: a random first frame where the family takes one).
        meta, keep_ops: see ``account_run``.

    Returns:
        {"phases": {name: PhaseAccount dict}, "weights_bytes": {model: bytes}, "peak_bytes", "peak_phase",
        "geometry"}; bytes are int, FLOPs int.
    """
    from ..instance import as_reasoner
    from ..ops import use_backend
    from ..reasoner.light_decoder import LightDecoder
    from ..teacher import as_queries

    device = "meta" if meta else "cpu"
    num_frames, height, width = geometry
    queries = as_queries(list(questions or shapes.QUESTIONS))
    reasoner = as_reasoner(pipe, lora)  # wrapped before the account: the adapter is counted as held, as in a run
    with ShapeOnlyRun(meta=meta) as run, use_backend("reference"):  # the LoRA as cuBLAS runs it (the CUDA default)
        weights = {"lora": run.adopt(*reasoner.lora_parameters(), *reasoner.held_tensors())}  # + initial copy
        weights |= {name: run.adopt(m) for name, m in reasoner.pipe.components.items()
                    if isinstance(m, torch.nn.Module)}
        weights["teacher"] = run.adopt(teacher.model)
        if isinstance(image, str) and image == "auto":
            image = shapes.first_frame(height, width) if reasoner.family.is_i2v is not False else None
        with run.phase("prepare"):
            prepared = reasoner.prepare(prompt, image, num_frames=num_frames, height=height, width=width, seed=0,
                                        guidance_scale=guidance_scale, max_sequence_length=max_sequence_length,
                                        offload_text_encoder=offload_text_encoder)
        c = reasoner.family.latent_channels
        light = LightDecoder.from_linear_map(reasoner, torch.zeros(c, 3, device=device), torch.zeros(3, device=device),
                                             decoder)
        # multi-tensor AdamW, the default on CUDA (a few kernels, not a handful per parameter)
        opt = torch.optim.AdamW(reasoner.lora_parameters(), lr=1e-3, foreach=True)
        optimize_step(run, reasoner, light, teacher, prepared, queries, opt, predict)
        run.phases.clear()  # the first step creates the optimizer's states; the second is the one a run repeats
        optimize_step(run, reasoner, light, teacher, prepared, queries, opt, predict)
        candidate(run, reasoner, teacher, prepared, queries)
    phases = {name: a.to_dict() | ({"ops": a.ops} if keep_ops else {}) for name, a in run.phases.items()}
    peak_phase = max(phases, key=lambda n: phases[n]["peak_bytes"])
    return {"geometry": list(geometry), "weights_bytes": weights, "phases": phases,
            "peak_bytes": phases[peak_phase]["peak_bytes"], "peak_phase": peak_phase}
