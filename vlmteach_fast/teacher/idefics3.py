"""Idefics3 and SmolVLM family: SigLIP tower + pixel-shuffle connector + Llama-style LM with 1-D positions.

Prompt per image, as the processors expand "<image>" without image splitting:
    <fake_token_around_image><global-img><image>*seq_len<fake_token_around_image>
with seq_len = (image_size / patch_size)^2 / scale_factor^2. Frames are fed as single global images (the processors'
`do_image_splitting=False` path, which SmolVLM's video processor also takes): resize the longest edge to
`size["longest_edge"]`, then to the square encoder size, both with LANCZOS, then (x - 0.5) / 0.5.
The tower is called directly (vision_model + connector), skipping `get_image_features`' rule that drops all-zero
pixel tensors as padding: a uniform mid-grey frame normalizes to exactly zero and would silently vanish there.
"""

from __future__ import annotations

import torch

from .family import VLMFamily
from .lm_batch import TowerFeatures
from .preprocess import normalize, resize_images

# transformers' Idefics3 image processor caps any side at 4096 before splitting (MAX_IMAGE_SIZE).
MAX_IMAGE_SIZE = 4096
_BOS = {"idefics3": "<|begin_of_text|>", "smolvlm": "<|im_start|>"}
SPECIAL_TOKENS = ("<fake_token_around_image>", "<image>", "<global-img>", "<end_of_utterance>")


def longest_edge_size(height: int, width: int, longest_edge: int) -> tuple[int, int]:
    """Idefics3's first resize: longest edge to `longest_edge`, aspect kept, the other side rounded up to even."""
    aspect = width / height
    if width >= height:
        width = longest_edge
        height = int(width / aspect)
        height += height % 2
    else:
        height = longest_edge
        width = int(height * aspect)
        width += width % 2
    height, width = max(height, 1), max(width, 1)
    if max(height, width) > MAX_IMAGE_SIZE:
        aspect = width / height
        if width >= height:
            width, height = MAX_IMAGE_SIZE, max(int(MAX_IMAGE_SIZE / aspect), 1)
        else:
            height, width = MAX_IMAGE_SIZE, max(int(MAX_IMAGE_SIZE * aspect), 1)
    return height, width


def _size_value(image_processor, attr, key, default):
    size = getattr(image_processor, attr, None) if image_processor is not None else None
    value = size.get(key) if isinstance(size, dict) else getattr(size, key, None)
    return int(value) if value else default


class Idefics3Family(VLMFamily):
    """Family for `Idefics3ForConditionalGeneration` and `SmolVLMForConditionalGeneration`."""

    model_types = ("idefics3", "smolvlm")
    # The chat template ends with "Assistant:", so the answer's first token carries a leading space.
    yes_candidates = (" Yes", "Yes", " yes", "yes")
    no_candidates = (" No", "No", " no", "no")

    def __init__(self, model, tokenizer, image_processor=None):
        super().__init__(model, tokenizer)
        vc = model.config.vision_config
        self.image_size, self.patch_size = int(vc.image_size), int(vc.patch_size)
        scale = int(model.config.scale_factor)
        self.seq_len = (self.image_size // self.patch_size) ** 2 // scale**2
        self.mean = tuple(getattr(image_processor, "image_mean", None) or (0.5, 0.5, 0.5))
        self.std = tuple(getattr(image_processor, "image_std", None) or (0.5, 0.5, 0.5))
        self.longest_edge = _size_value(image_processor, "size", "longest_edge", 4 * self.image_size)
        encoder_size = _size_value(image_processor, "max_image_size", "longest_edge", self.image_size)
        if encoder_size != self.image_size:
            raise ValueError(
                f"image processor max_image_size {encoder_size} must equal the vision tower's image_size "
                f"{self.image_size}"
            )
        ids = self.special_token_ids(SPECIAL_TOKENS)
        self.image_token_id = int(model.config.image_token_id)
        if ids["<image>"] != self.image_token_id:
            raise ValueError(
                f"tokenizer's <image> id {ids['<image>']} differs from model.config.image_token_id "
                f"{self.image_token_id}"
            )
        self.fake_id, self.global_id = ids["<fake_token_around_image>"], ids["<global-img>"]
        self.bos = tokenizer.bos_token or _BOS[self.name]
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else ids["<end_of_utterance>"]

    @property
    def vision_module(self):
        """The vision tower module (for hooks counting its calls)."""
        return self.model.model.vision_model

    @property
    def language_model(self):
        return self.model.model.text_model

    # ---- text ---------------------------------------------------------------------------------------------------
    def head_ids(self) -> list[int]:
        return self._encode_text(f"{self.bos}User:")

    def question_ids(self, question: str) -> list[int]:
        return self._encode_text(f"{question}<end_of_utterance>\nAssistant:")

    def image_ids(self, num_tokens: int | None = None) -> list[int]:
        n = self.seq_len if num_tokens is None else num_tokens
        return [self.fake_id, self.global_id] + [self.image_token_id] * n + [self.fake_id]

    # ---- vision -------------------------------------------------------------------------------------------------
    def preprocess(self, images: torch.Tensor, min_pixels=None, max_pixels=None):
        """(N, 3, H, W) float in [0, 1] -> (pixel_values (N, 3, S, S), None), differentiable.

        `min_pixels`/`max_pixels` do not apply: the encoder input is always S x S (S = vision image_size).
        """
        size = longest_edge_size(images.shape[-2], images.shape[-1], self.longest_edge)
        x = resize_images(images, size, "lanczos")
        x = resize_images(x, (self.image_size, self.image_size), "lanczos")
        return normalize(x, self.mean, self.std), None

    def tokens_per_image(self, grid=None) -> int:
        return self.seq_len

    def encode(self, pixel_values: torch.Tensor, grid=None) -> TowerFeatures:
        """One vision-tower pass (SigLIP + connector) over all images."""
        base = self.model.model
        n, _, h, w = pixel_values.shape
        patch_mask = torch.ones(n, h // self.patch_size, w // self.patch_size, dtype=torch.bool,
                                device=pixel_values.device)
        hidden = base.vision_model(
            pixel_values=pixel_values.to(base.vision_model.dtype), patch_attention_mask=patch_mask
        ).last_hidden_state
        feats = base.connector(hidden)  # (N, seq_len, D)
        return TowerFeatures(tuple(feats.unbind(0)))

    # ---- generation ---------------------------------------------------------------------------------------------
    def generate_inputs(self, ids: list[int], pixel_values, grid) -> dict:
        return {} if pixel_values is None else {"pixel_values": pixel_values[None]}  # (batch, images, 3, S, S)
