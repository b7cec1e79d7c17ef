"""Qwen2-VL, Qwen2.5-VL and Qwen3-VL adapter: chat template, torch-side patchify, one vision pass, batched scoring.

The three families share the token layout (<|vision_start|> <|image_pad|>*n <|vision_end|>), the flat patch format
and multimodal RoPE (3 position rows t/h/w). They differ in:
- patch size and normalization: 14 px + CLIP mean/std (Qwen2/2.5), 16 px + mean = std = 0.5 (Qwen3);
- the default system prompt: Qwen2/2.5's template inserts "You are a helpful assistant.", Qwen3's does not;
- Qwen3 "deepstack": features from intermediate vision layers are added to the LM's early hidden states at the image
  positions, so the precomputed vision output must carry them (`deepstack_features`) for every selected image.
Scoring goes through `model.model(...)` with `mm_encoder_outputs`, i.e. the model's own scatter/deepstack/RoPE code,
with the vision features computed once by `encode` and reused by every question.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers.modeling_outputs import BaseModelOutputWithPooling

from .lm_batch import gather_last, left_pad, suffix_batch
from .preprocess import normalize, qwen_patchify, resize_images, smart_resize

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# Released processors' pixel bounds: Qwen2/2.5-VL min 56*56, max 28*28*1280; Qwen3-VL's preprocessor_config uses
# shortest_edge 65536 (= 256*256) and longest_edge 16777216 for images.
_DEFAULTS = {
    "qwen2_vl": dict(mean=OPENAI_CLIP_MEAN, std=OPENAI_CLIP_STD, min_pixels=56 * 56, max_pixels=28 * 28 * 1280,
                     system="You are a helpful assistant."),
    "qwen2_5_vl": dict(mean=OPENAI_CLIP_MEAN, std=OPENAI_CLIP_STD, min_pixels=56 * 56, max_pixels=28 * 28 * 1280,
                       system="You are a helpful assistant."),
    "qwen3_vl": dict(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), min_pixels=65536, max_pixels=16777216, system=None),
}
SPECIAL_TOKENS = ("<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>")


@dataclass
class VisionFeatures:
    """Output of one vision-tower pass over N = B * U images (b-major).

    pooled: N tensors (tokens_per_image, D), the merged features placed at <|image_pad|> positions.
    deepstack: Qwen3 only, per deepstack layer N tensors (tokens_per_image, D); else None.
    grid_thw: (N, 3) int64.
    """

    pooled: tuple
    deepstack: list | None
    grid_thw: torch.Tensor

    def select(self, index: list[int]):
        """(encoder output for `model.model(mm_encoder_outputs=...)`, grid rows) for the images in `index`."""
        pooled = tuple(self.pooled[i] for i in index)
        grid = self.grid_thw[index]
        if self.deepstack is None:
            return BaseModelOutputWithPooling(pooler_output=pooled), grid
        from transformers.models.qwen3_vl.modeling_qwen3_vl import BaseModelOutputWithDeepstackFeatures

        deep = [tuple(layer[i] for i in index) for layer in self.deepstack]
        return BaseModelOutputWithDeepstackFeatures(pooler_output=pooled, deepstack_features=deep), grid


def _processor_value(image_processor, name, default):
    if image_processor is None:
        return default
    if name in ("min_pixels", "max_pixels"):
        size = getattr(image_processor, "size", None)
        key = "shortest_edge" if name == "min_pixels" else "longest_edge"
        value = size.get(key) if isinstance(size, dict) else getattr(size, key, None)
        return value if value else default
    value = getattr(image_processor, {"mean": "image_mean", "std": "image_std"}[name], None)
    return tuple(value) if value is not None else default


class QwenVLAdapter:
    """Family adapter for `Qwen2VLForConditionalGeneration`, `Qwen2_5_VLForConditionalGeneration`,
    `Qwen3VLForConditionalGeneration` (model_type qwen2_vl / qwen2_5_vl / qwen3_vl)."""

    model_types = tuple(_DEFAULTS)

    def __init__(self, model, tokenizer, image_processor=None):
        family = model.config.model_type
        if family not in _DEFAULTS:
            raise ValueError(f"QwenVLAdapter supports model_type {self.model_types}, got {family!r}")
        d = _DEFAULTS[family]
        vc = model.config.vision_config
        self.model, self.tokenizer, self.family = model, tokenizer, family
        self.patch_size, self.merge_size = int(vc.patch_size), int(vc.spatial_merge_size)
        self.temporal_patch_size = int(vc.temporal_patch_size)
        self.mean = _processor_value(image_processor, "mean", d["mean"])
        self.std = _processor_value(image_processor, "std", d["std"])
        self.min_pixels = int(_processor_value(image_processor, "min_pixels", d["min_pixels"]))
        self.max_pixels = int(_processor_value(image_processor, "max_pixels", d["max_pixels"]))
        self.system = d["system"]
        self.image_token_id = int(model.config.image_token_id)
        ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
        unk = getattr(tokenizer, "unk_token_id", None)
        missing = [t for t, i in ids.items() if i is None or (unk is not None and i == unk)]
        if missing:
            raise ValueError(f"tokenizer lacks the {family} special tokens {missing}; pass the model's own tokenizer")
        self.vision_start_id, self.vision_end_id = ids["<|vision_start|>"], ids["<|vision_end|>"]
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else ids["<|im_end|>"]

    @property
    def vision_module(self):
        """The vision tower module (for hooks counting its calls)."""
        return self.model.model.visual

    # ---- text ---------------------------------------------------------------------------------------------------
    def _encode_text(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def head_ids(self) -> list[int]:
        """Tokens before the first image: optional system turn, then the user turn's opening."""
        head = f"<|im_start|>system\n{self.system}<|im_end|>\n" if self.system else ""
        return self._encode_text(head + "<|im_start|>user\n")

    def question_ids(self, question: str) -> list[int]:
        """Tokens after the images: the question, end of user turn, opening of the assistant turn."""
        return self._encode_text(f"{question}<|im_end|>\n<|im_start|>assistant\n")

    def image_ids(self, num_tokens: int) -> list[int]:
        return [self.vision_start_id] + [self.image_token_id] * num_tokens + [self.vision_end_id]

    # ---- vision -------------------------------------------------------------------------------------------------
    def target_size(self, height: int, width: int, min_pixels: int | None, max_pixels: int | None):
        """(h, w) each frame is resized to, like the HF processor with these pixel bounds."""
        factor = self.patch_size * self.merge_size
        lo = self.min_pixels if min_pixels is None else min_pixels
        hi = self.max_pixels if max_pixels is None else max_pixels
        return smart_resize(height, width, factor, lo, hi)

    def preprocess(self, images: torch.Tensor, min_pixels: int | None = None, max_pixels: int | None = None):
        """(N, 3, H, W) float in [0, 1] -> (pixel_values (N*gh*gw, C*tp*p*p), grid_thw (N, 3)), differentiable."""
        size = self.target_size(images.shape[-2], images.shape[-1], min_pixels, max_pixels)
        x = normalize(resize_images(images, size), self.mean, self.std)
        return qwen_patchify(x, self.patch_size, self.temporal_patch_size, self.merge_size)

    def tokens_per_image(self, grid_thw: torch.Tensor) -> int:
        return int(grid_thw[0].prod()) // self.merge_size**2

    def encode(self, pixel_values: torch.Tensor, grid_thw: torch.Tensor) -> VisionFeatures:
        """One vision-tower pass over all images."""
        out = self.model.model.get_image_features(pixel_values, grid_thw, return_dict=True)
        deep = getattr(out, "deepstack_features", None)
        return VisionFeatures(tuple(out.pooler_output), list(deep) if deep else None, grid_thw)

    # ---- language model -----------------------------------------------------------------------------------------
    def _rope(self, ids, mm, grid, attention_mask=None):
        pos, _ = self.model.model.get_rope_index(
            input_ids=ids, mm_token_type_ids=mm, image_grid_thw=grid, attention_mask=attention_mask
        )
        return pos

    def answer_hidden(self, feats: VisionFeatures, num_videos: int, per_video: int, view: list[int],
                      questions: list[str], share_prefix: bool = True) -> tuple[torch.Tensor, int]:
        """Final hidden state at the answer position for every (video, question).

        Args:
            feats: vision output for num_videos * per_video images, b-major.
            view: which of each video's `per_video` images the questions look at (in order).
            questions: the nq questions sharing this view.
            share_prefix: run the common prefix (template + images) once per video and reuse its KV cache for all
                questions (default); False runs full left-padded rows, one per (video, question).
        Returns: (hidden (num_videos, nq, D), number of LM forward calls made).
        """
        B, nq = num_videos, len(questions)
        index = [b * per_video + u for b in range(B) for u in view]
        n_tok = self.tokens_per_image(feats.grid_thw)
        prefix = self.head_ids()
        for _ in view:
            prefix += self.image_ids(n_tok)
        suffixes = [self.question_ids(q) for q in questions]
        dev = feats.grid_thw.device
        if share_prefix:
            return self._shared_prefix(feats, index, prefix, suffixes, B, dev), 2
        return self._full_rows(feats, index, prefix, suffixes, B, len(view), dev), 1

    def _shared_prefix(self, feats, index, prefix, suffixes, B, dev):
        nq = len(suffixes)
        enc, grid = feats.select(index)
        ids = torch.tensor(prefix, device=dev).expand(B, -1)  # (B, P), identical rows: no padding needed
        mm = (ids == self.image_token_id).int()
        pos = self._rope(ids, mm, grid)  # (3, B, P)
        out = self.model.model(
            input_ids=ids, attention_mask=torch.ones_like(ids), position_ids=pos, mm_token_type_ids=mm,
            image_grid_thw=grid, mm_encoder_outputs={"image": enc}, use_cache=True,
        )
        cache = out.cache
        cache.batch_repeat_interleave(nq)  # rows (b, q), b-major
        sids, mask, lengths = suffix_batch(suffixes, B, ids.shape[1], self.pad_id, dev)
        # Text after the images continues from the largest position id used so far (mrope: max over t/h/w rows);
        # text tokens carry the same id in all three rows.
        next_pos = (pos.amax(dim=(0, 2)) + 1).repeat_interleave(nq)  # (B*nq,)
        spos = (next_pos[:, None] + torch.arange(sids.shape[1], device=dev)[None])[None].expand(3, -1, -1)
        h = self.model.model.language_model(
            input_ids=sids, attention_mask=mask, position_ids=spos, cache=cache, use_cache=True
        ).last_hidden_state  # (B*nq, S, D)
        return gather_last(h, lengths).view(B, nq, -1)

    def _full_rows(self, feats, index, prefix, suffixes, B, n_img, dev):
        nq = len(suffixes)
        # Left padding puts every row's answer position at -1; get_rope_index skips masked positions.
        ids, mask = left_pad([prefix + s for _ in range(B) for s in suffixes], self.pad_id, dev)
        row_index = [index[b * n_img + k] for b in range(B) for _ in range(nq) for k in range(n_img)]
        enc, grid = feats.select(row_index)
        mm = ((ids == self.image_token_id) & mask.bool()).int()
        pos = self._rope(ids, mm, grid, attention_mask=mask)
        h = self.model.model(
            input_ids=ids, attention_mask=mask, position_ids=pos, mm_token_type_ids=mm, image_grid_thw=grid,
            mm_encoder_outputs={"image": enc}, use_cache=False,
        ).last_hidden_state
        return h[:, -1].view(B, nq, -1)

    # ---- generation ---------------------------------------------------------------------------------------------
    def generate_text(self, text: str, image: torch.Tensor | None, max_new_tokens: int,
                      min_pixels: int | None = None, max_pixels: int | None = None) -> str:
        """Greedy answer of the model to `text` about an optional (3, H, W) image in [0, 1]."""
        ids = self.head_ids()
        kwargs = {}
        if image is not None:
            pv, grid = self.preprocess(image[None], min_pixels, max_pixels)
            ids += self.image_ids(self.tokens_per_image(grid))
            kwargs = dict(pixel_values=pv, image_grid_thw=grid)
        ids = torch.tensor([ids + self.question_ids(text)], device=self.model.device)
        kwargs["mm_token_type_ids"] = (ids == self.image_token_id).int()
        out = self.model.generate(
            input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens, do_sample=False,
            pad_token_id=self.pad_id, **kwargs,
        )
        return self.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
