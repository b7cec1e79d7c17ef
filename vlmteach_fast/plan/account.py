"""Memory and FLOP account of one ``optimize`` step and one Best-of-N candidate at real model shapes, on a CPU.

The models are built from their published configs on the meta device (no weights in memory), and the step and the
candidate run through the library's own calls (``plan.phases``) under ``ShapeOnlyRun``: per phase, the peak live
bytes (weights, LoRA, optimizer states and activations, as a device's allocator sees them), the op that reached it,
FLOPs and bytes moved. A 704p x 121 account takes about a minute.
"""

from __future__ import annotations

import torch

from . import shapes
from .phases import VARIANTS, candidate, optimize_step
from .shadow import ShapeOnlyRun

__all__ = ["account_run"]

PROMPT = "move the red ball onto the green square without touching the walls"


def account_run(geometry: tuple[int, int, int], variant: str = "one_step", *, rank: int = 16,
                text_encoder: str = "measured", reward_config=None, last_blocks: int | None = None,
                offload_text_encoder: bool = False, dry: bool = False, meta: bool = True,
                keep_ops: bool = False) -> dict:
    """Account one step (the second, so the optimizer's states exist as in a run) and one candidate.

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
        {"phases": {name: PhaseAccount dict}, "weights_bytes": {model: bytes}, "peak_bytes", "peak_phase",
        "geometry", "variant"}; bytes are int, FLOPs int.
    """
    from ..ops import use_backend
    from ..reasoner import LoRASpec, Reasoner
    from ..reasoner.light_decoder import LightDecoder
    from ..teacher import as_queries

    if variant not in VARIANTS:
        raise ValueError(f"`variant` must be one of {sorted(VARIANTS)}, got {variant!r}")
    device = "meta" if meta else "cpu"
    num_frames, height, width = geometry
    torch.manual_seed(0)
    pipe = shapes.wan_ti2v_pipeline(dry, device=device, text_encoder=text_encoder)
    teacher = shapes.qwen25_vl_teacher(dry, device=device, reward_config=reward_config)
    text_tokens = shapes.wan_configs(dry)[2]
    queries = as_queries(shapes.QUESTIONS)
    with ShapeOnlyRun(meta=meta) as run, use_backend("reference"):  # the LoRA as cuBLAS runs it (the CUDA default)
        weights = {name: run.adopt(m) for name, m in (("transformer", pipe.transformer), ("vae", pipe.vae),
                                                       ("text_encoder", pipe.text_encoder), ("teacher", teacher.model))}
        reasoner = Reasoner.from_pipeline(pipe, LoRASpec(rank=rank, last_blocks=last_blocks))
        with run.phase("prepare"):
            prepared = reasoner.prepare(PROMPT, shapes.first_frame(height, width), num_frames=num_frames,
                                        height=height, width=width, seed=0, max_sequence_length=text_tokens,
                                        offload_text_encoder=offload_text_encoder)
        c = reasoner.family.latent_channels
        decoder = LightDecoder.from_linear_map(reasoner, torch.zeros(c, 3, device=device),
                                               torch.zeros(3, device=device))
        # multi-tensor AdamW, the default on CUDA (a few kernels, not a handful per parameter)
        opt = torch.optim.AdamW(reasoner.lora_parameters(), lr=1e-3, foreach=True)
        optimize_step(run, reasoner, decoder, teacher, prepared, queries, opt, VARIANTS[variant])
        run.phases.clear()  # the first step creates the optimizer's states; the second is the one a run repeats
        optimize_step(run, reasoner, decoder, teacher, prepared, queries, opt, VARIANTS[variant])
        candidate(run, reasoner, teacher, prepared, queries)
    phases = {name: a.to_dict() | ({"ops": a.ops} if keep_ops else {}) for name, a in run.phases.items()}
    peak_phase = max(phases, key=lambda n: phases[n]["peak_bytes"])
    return {"geometry": list(geometry), "variant": variant, "rank": rank, "text_encoder": text_encoder,
            "last_blocks": last_blocks, "offload_text_encoder": offload_text_encoder,
            "weights_bytes": weights, "phases": phases, "peak_bytes": phases[peak_phase]["peak_bytes"],
            "peak_phase": peak_phase}
