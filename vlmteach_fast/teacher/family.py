"""What a VLM family wrapper provides, and the parts the families share.

A family wrapper turns one transformers ``*ForConditionalGeneration`` model into pure functions of tensors: prompt
token ids (``head_ids``, ``image_ids``, ``question_ids``), a differentiable ``preprocess`` of frames in [0, 1], one
vision-tower pass (``encode``), the hidden state at the answer position for a batch of questions
(``answer_hidden``), and greedy text generation (``generate_text``). ``VLMTeacher`` picks the wrapper by
``config.model_type`` and never looks inside a model itself.

The base class holds what the families do alike: the model-type check, special-token lookup, tokenization, greedy
generation, and the 1-D-position ``answer_hidden`` that Llama-style language models (Idefics3/SmolVLM, LLaVA) share.
Qwen-VL overrides ``answer_hidden`` (multimodal RoPE).
"""

from __future__ import annotations

import torch

from .lm_batch import TowerFeatures, answer_hidden_1d, generate_greedy

__all__ = ["VLMFamily"]


class VLMFamily:
    """Base class of the teacher's model-family wrappers (``QwenVLFamily``, ``Idefics3Family``, ``LlavaFamily``).

    Subclasses set ``model_types`` and implement ``head_ids``, ``question_ids``, ``image_ids``, ``preprocess``,
    ``tokens_per_image``, ``encode`` and ``vision_module``; 1-D-position families also set ``language_model``.
    """

    model_types: tuple[str, ...] = ()
    supports_video: bool = False

    def __init__(self, model, tokenizer):
        name = model.config.model_type
        if name not in self.model_types:
            raise ValueError(f"{type(self).__name__} supports model_type {self.model_types}, got {name!r}")
        self.model, self.tokenizer, self.name = model, tokenizer, name

    def special_token_ids(self, tokens) -> dict[str, int]:
        """{token: id} for the family's special tokens; ``ValueError`` naming the ones the tokenizer lacks."""
        ids = {t: self.tokenizer.convert_tokens_to_ids(t) for t in tokens}
        unk = getattr(self.tokenizer, "unk_token_id", None)
        missing = [t for t, i in ids.items() if i is None or (unk is not None and i == unk)]
        if missing:
            raise ValueError(f"tokenizer lacks the {self.name} special tokens {missing}; pass the model's own tokenizer")
        return ids

    def _encode_text(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    @property
    def language_model(self):
        """The decoder that takes the KV cache in the 1-D-position ``answer_hidden``."""
        raise NotImplementedError(f"{type(self).__name__} does not define `language_model`")

    def answer_hidden(self, feats: TowerFeatures, layout: list[list[int]], questions: list[str],
                      share_prefix: bool = True) -> tuple[torch.Tensor, int]:
        """(hidden (B, nq, D) at the answer position, LM calls), for language models with 1-D positions.

        ``layout[b]``: indices into ``feats`` of the images of row b; ``questions``: nq strings scored against every
        row. See ``QwenVLFamily.answer_hidden`` for the shared-prefix batching."""
        return answer_hidden_1d(self, self.language_model, feats, layout, questions, share_prefix)

    def generate_inputs(self, ids: list[int], pixel_values, grid) -> dict:
        """Extra keyword inputs of ``model.generate`` for one prompt (``pixel_values`` None: text only)."""
        return {} if pixel_values is None else {"pixel_values": pixel_values}

    def generate_text(self, text: str, image: torch.Tensor | None, max_new_tokens: int,
                      min_pixels: int | None = None, max_pixels: int | None = None) -> str:
        """Greedy answer of the model to ``text`` about an optional (3, H, W) float image in [0, 1]."""
        ids, pv, grid = self.head_ids(), None, None
        if image is not None:
            pv, grid = self.preprocess(image[None], min_pixels, max_pixels)
            ids = ids + self.image_ids(self.tokens_per_image(grid))
        ids = ids + self.question_ids(text)
        return generate_greedy(self.model, self.tokenizer, ids, self.pad_id, max_new_tokens,
                               **self.generate_inputs(ids, pv, grid))
