"""Public test helpers: tiny random-weight models and oracle teachers, built offline in seconds on a CPU.

Use them to test your own code against vlmteach_fast (a custom teacher, a new model family, a method) without
downloading anything:

    from vlmteach_fast.methods import run_method
    from vlmteach_fast.testing import BrightnessTeacher, first_frame, tiny_wan_pipeline

    result = run_method("best_of_n", tiny_wan_pipeline("ti2v"), BrightnessTeacher(), "make it bright",
                        image=first_frame(), n=2)

- video models (``video``): ``tiny_wan_pipeline(variant)`` (Wan T2V / I2V / TI2V), ``tiny_ti2v_pipeline``,
  ``tiny_cogvideox_i2v_pipeline``, ``tiny_ltx_i2v_pipeline``, ``tiny_wan_transformer``, ``tiny_text_encoder``,
  and ``unrolled_latents`` (a hand-unrolled reference for k-step predictions);
- VLMs (``vlm``): ``make_qwen_vl(family)``, ``make_idefics3(family)``, ``make_llava()`` (each returns
  ``(model, tokenizer)``), their ``make_*_image_processor`` and ``make_*_tokenizer``;
- oracle teachers (``teachers``): ``BrightnessTeacher`` (a differentiable ``Teacher`` whose "Yes" is "the frames are
  bright", with NaN injection and a call counter), ``DarknessTeacher`` (its opposite: "Yes" is "dark"),
  ``first_frame()``, ``GEOM`` (5 frames of 32 x 32).

The frames the tiny pipelines make are noise-like: they exercise shapes, gradients, determinism and file formats,
not quality (the toy world in ``vlmteach_fast.toy`` has trained models for that).
"""

from .teachers import GEOM, BrightnessTeacher, DarknessTeacher, first_frame
from .video import (tiny_cogvideox_i2v_pipeline, tiny_ltx_i2v_pipeline, tiny_text_encoder, tiny_ti2v_pipeline,
                    tiny_wan_pipeline, tiny_wan_transformer, unrolled_latents)
from .vlm import (make_idefics3, make_idefics_image_processor, make_idefics_tokenizer, make_llava,
                  make_llava_image_processor, make_qwen_image_processor, make_qwen_tokenizer, make_qwen_vl)

__all__ = [
    "GEOM", "BrightnessTeacher", "DarknessTeacher", "first_frame",
    "tiny_wan_pipeline", "tiny_ti2v_pipeline", "tiny_cogvideox_i2v_pipeline", "tiny_ltx_i2v_pipeline",
    "tiny_wan_transformer", "tiny_text_encoder", "unrolled_latents",
    "make_qwen_vl", "make_qwen_tokenizer", "make_qwen_image_processor", "make_idefics3", "make_idefics_tokenizer",
    "make_idefics_image_processor", "make_llava", "make_llava_image_processor",
]
