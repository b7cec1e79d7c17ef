"""LLaVA-style family (`LlavaForConditionalGeneration`: CLIP tower + MLP projector + Llama-style LM, 1-D positions).

Prompt (LLaVA-1.5): "USER: <image>*n\\n{question} ASSISTANT:", where the processor expands each <image> to one token
per vision patch ((S / patch)^2, plus one for the CLS token when vision_feature_select_strategy == "full").
Preprocessing as CLIPImageProcessor: shortest edge to S (BICUBIC), centre crop S x S, CLIP mean/std. Only the
square-crop path (`do_pad=False`, LLaVA-1.5's default) is reproduced; LLaVA-NeXT's any-resolution tiling is not.
"""

from __future__ import annotations

import torch

from .family import VLMFamily
from .lm_batch import TowerFeatures
from .preprocess import normalize, resize_images

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def shortest_edge_size(height: int, width: int, shortest_edge: int) -> tuple[int, int]:
    """transformers' `get_resize_output_image_size(default_to_square=False)`: short side to `shortest_edge`."""
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = shortest_edge, int(shortest_edge * long / short)
    return (new_long, new_short) if width <= height else (new_short, new_long)


def center_crop(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Crop (..., H, W) to (h, w) around the centre, top/left offsets rounded down like transformers' center_crop."""
    H, W = images.shape[-2:]
    h, w = size
    if h > H or w > W:
        raise ValueError(f"crop size {size} must not exceed the image size {(H, W)}")
    top, left = (H - h) // 2, (W - w) // 2
    return images[..., top:top + h, left:left + w]


def _get(obj, key, default=None):
    if obj is None:
        return default
    return obj.get(key, default) if isinstance(obj, dict) else getattr(obj, key, default)


class LlavaFamily(VLMFamily):
    """Family for `LlavaForConditionalGeneration` (model_type "llava")."""

    model_types = ("llava",)
    # The prompt ends with "ASSISTANT:", so the answer's first token carries a leading space.
    yes_candidates = (" Yes", "Yes", " yes", "yes")
    no_candidates = (" No", "No", " no", "no")

    def __init__(self, model, tokenizer, image_processor=None):
        super().__init__(model, tokenizer)
        cfg = model.config
        vc = cfg.vision_config
        self.image_size, self.patch_size = int(vc.image_size), int(vc.patch_size)
        self.feature_layer = cfg.vision_feature_layer
        self.strategy = cfg.vision_feature_select_strategy
        self.num_image_tokens = (self.image_size // self.patch_size) ** 2 + (1 if self.strategy == "full" else 0)
        self.mean = tuple(_get(image_processor, "image_mean") or OPENAI_CLIP_MEAN)
        self.std = tuple(_get(image_processor, "image_std") or OPENAI_CLIP_STD)
        self.shortest_edge = int(_get(_get(image_processor, "size"), "shortest_edge") or self.image_size)
        crop = _get(image_processor, "crop_size")
        self.crop = (int(_get(crop, "height") or self.image_size), int(_get(crop, "width") or self.image_size))
        if self.crop != (self.image_size, self.image_size):
            raise ValueError(f"image processor crop_size {self.crop} must equal the vision tower's image_size "
                             f"{self.image_size}")
        if _get(image_processor, "do_pad", False):
            raise ValueError("LlavaFamily reproduces the do_pad=False (centre-crop) path only; got do_pad=True")
        self.image_token_id = int(cfg.image_token_id)
        tok_id = tokenizer.convert_tokens_to_ids("<image>")
        if tok_id != self.image_token_id:
            raise ValueError(f"tokenizer's <image> id {tok_id} differs from model.config.image_token_id "
                             f"{self.image_token_id}")
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        if self.pad_id is None:
            raise ValueError("tokenizer needs a pad_token or an eos_token to pad batched questions")

    @property
    def vision_module(self):
        """The vision tower module (for hooks counting its calls)."""
        return self.model.model.vision_tower

    @property
    def language_model(self):
        return self.model.model.language_model

    # ---- text ---------------------------------------------------------------------------------------------------
    def head_ids(self) -> list[int]:
        bos = [self.tokenizer.bos_token_id] if self.tokenizer.bos_token_id is not None else []
        return bos + self._encode_text("USER:")

    def question_ids(self, question: str) -> list[int]:
        return self._encode_text(f"\n{question} ASSISTANT:")

    def image_ids(self, num_tokens: int | None = None) -> list[int]:
        return [self.image_token_id] * (self.num_image_tokens if num_tokens is None else num_tokens)

    # ---- vision -------------------------------------------------------------------------------------------------
    def preprocess(self, images: torch.Tensor, min_pixels=None, max_pixels=None):
        """(N, 3, H, W) float in [0, 1] -> (pixel_values (N, 3, S, S), None), differentiable."""
        size = shortest_edge_size(images.shape[-2], images.shape[-1], self.shortest_edge)
        x = center_crop(resize_images(images, size, "bicubic"), self.crop)
        return normalize(x, self.mean, self.std), None

    def tokens_per_image(self, grid=None) -> int:
        return self.num_image_tokens

    def encode(self, pixel_values: torch.Tensor, grid=None) -> TowerFeatures:
        """One vision-tower pass (CLIP at `vision_feature_layer` + projector) over all images."""
        out = self.model.model.get_image_features(
            pixel_values=pixel_values, vision_feature_layer=self.feature_layer,
            vision_feature_select_strategy=self.strategy, return_dict=True,
        )
        feats = out.pooler_output
        return TowerFeatures(tuple(feats) if isinstance(feats, (list, tuple)) else tuple(feats.unbind(0)))
