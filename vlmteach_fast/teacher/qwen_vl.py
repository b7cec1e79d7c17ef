"""Qwen2-VL, Qwen2.5-VL and Qwen3-VL family: chat template, torch-side patchify, one vision pass, batched scoring.

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

from .family import VLMFamily
from .lm_batch import gather_last, left_pad, suffix_batch
from .preprocess import (normalize, qwen3_video_smart_resize, qwen_patchify, qwen_video_patchify, resize_images,
                         smart_resize)
from .vision_attention import batch_windows

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
# Video processors' pixel bounds (transformers' Qwen2VLVideoProcessor, also used by Qwen2.5-VL, and
# Qwen3VLVideoProcessor class defaults: size = {shortest_edge, longest_edge}). They differ from the image bounds:
# a 720 x 1280 clip becomes 560 x 1008 (grid 40 x 72) for Qwen2-VL's video processor, 728 x 1288 (52 x 92) with
# the image bounds. Qwen3-VL's video bounds hold for the whole clip (frames x h x w), not per frame.
_VIDEO_BOUNDS = {"qwen2_vl": (128 * 28 * 28, 28 * 28 * 768), "qwen2_5_vl": (128 * 28 * 28, 28 * 28 * 768),
                 "qwen3_vl": (128 * 32 * 32, 32 * 32 * 768)}
SPECIAL_TOKENS = ("<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>")


def _patch_embed_as_linear(self, hidden_states: torch.Tensor) -> torch.Tensor:
    """Qwen-VL ``PatchEmbed.forward`` as one matmul: its Conv3d has stride = kernel and sees exactly one kernel per
    patch, so it is ``x @ W.view(embed, -1).T (+ bias)``, the same numbers up to float rounding."""
    proj = self.proj
    w = proj.weight
    x = hidden_states.to(dtype=w.dtype).reshape(-1, w[0].numel())
    return torch.nn.functional.linear(x, w.reshape(w.shape[0], -1), proj.bias)


def linear_patch_embed(visual) -> None:
    """Run the vision tower's patch embedding as a matmul instead of a Conv3d (same weights, same results up to float
    rounding). The Conv3d's backward is the slowest op of the differentiable reward on small models (measured on
    the toy teacher on CPU: 13.5 of 44 ms of a forward + backward), and a strided Conv3d is a known slow path
    on GPUs too. Patches the module instance only; towers without a ``patch_embed.proj`` Conv3d are left alone."""
    pe = getattr(visual, "patch_embed", None)
    proj = getattr(pe, "proj", None)
    if (not isinstance(proj, torch.nn.Conv3d) or tuple(proj.stride) != tuple(proj.kernel_size)
            or tuple(proj.padding) != (0, 0, 0)):
        return
    pe.forward = _patch_embed_as_linear.__get__(pe)


@dataclass
class VisionFeatures:
    """Output of one vision-tower pass over N images or video clips.

    pooled: N tensors (tokens_per_image, D), the merged features placed at <|image_pad|> positions.
    deepstack: Qwen3 only, per deepstack layer N tensors (tokens_per_image, D); else None.
    grid_thw: (N, 3) int64.
    """

    pooled: tuple
    deepstack: list | None
    grid_thw: torch.Tensor
    modality: str = "image"  # "image" or "video": which placeholder token, token type and grid argument to use
    timestamps: list | None = None  # Qwen3-VL video: per item, seconds of each temporal patch (prompt text)

    def select(self, index: list[int]):
        """(encoder output for `model.model(mm_encoder_outputs=...)`, grid rows) for the images in `index`."""
        pooled = tuple(self.pooled[i] for i in index)
        grid = self.grid_thw[index]
        if self.deepstack is None:
            return BaseModelOutputWithPooling(pooler_output=pooled), grid
        from transformers.models.qwen3_vl.modeling_qwen3_vl import BaseModelOutputWithDeepstackFeatures

        deep = [tuple(layer[i] for i in index) for layer in self.deepstack]
        return BaseModelOutputWithDeepstackFeatures(pooler_output=pooled, deepstack_features=deep), grid


def clip_timestamps(indices: list[int], fps: float, temporal_patch_size: int) -> list[float]:
    """Seconds of each temporal patch of a clip made of source frames `indices` (Qwen3-VL processor's rule).

    The frame list is padded by repeating its last index to a multiple of the temporal patch, and each patch's time
    is the mean of its first and last frame's time.
    """
    idx = list(indices)
    if len(idx) % temporal_patch_size:
        idx += [idx[-1]] * (temporal_patch_size - len(idx) % temporal_patch_size)
    t = [i / fps for i in idx]
    return [(t[i] + t[i + temporal_patch_size - 1]) / 2 for i in range(0, len(t), temporal_patch_size)]


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


class QwenVLFamily(VLMFamily):
    """Family for `Qwen2VLForConditionalGeneration`, `Qwen2_5_VLForConditionalGeneration`,
    `Qwen3VLForConditionalGeneration` (model_type qwen2_vl / qwen2_5_vl / qwen3_vl)."""

    model_types = tuple(_DEFAULTS)

    def __init__(self, model, tokenizer, image_processor=None):
        super().__init__(model, tokenizer)
        d = _DEFAULTS[self.name]
        vc = model.config.vision_config
        self.patch_size, self.merge_size = int(vc.patch_size), int(vc.spatial_merge_size)
        self.temporal_patch_size = int(vc.temporal_patch_size)
        self.mean = _processor_value(image_processor, "mean", d["mean"])
        self.std = _processor_value(image_processor, "std", d["std"])
        self.min_pixels = int(_processor_value(image_processor, "min_pixels", d["min_pixels"]))
        self.max_pixels = int(_processor_value(image_processor, "max_pixels", d["max_pixels"]))
        self.video_min_pixels, self.video_max_pixels = _VIDEO_BOUNDS[self.name]
        self.system = d["system"]
        self.image_token_id = int(model.config.image_token_id)
        self.video_token_id = int(model.config.video_token_id)
        ids = self.special_token_ids(SPECIAL_TOKENS)
        self.vision_start_id, self.vision_end_id = ids["<|vision_start|>"], ids["<|vision_end|>"]
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else ids["<|im_end|>"]
        linear_patch_embed(model.model.visual)
        batch_windows(model.model.visual)

    @property
    def vision_module(self):
        """The vision tower module (for hooks counting its calls)."""
        return self.model.model.visual

    # ---- text ---------------------------------------------------------------------------------------------------
    def head_ids(self) -> list[int]:
        """Tokens before the first image: optional system turn, then the user turn's opening."""
        head = f"<|im_start|>system\n{self.system}<|im_end|>\n" if self.system else ""
        return self._encode_text(head + "<|im_start|>user\n")

    def question_ids(self, question: str) -> list[int]:
        """Tokens after the images: the question, end of user turn, opening of the assistant turn."""
        return self._encode_text(f"{question}<|im_end|>\n<|im_start|>assistant\n")

    def image_ids(self, num_tokens: int) -> list[int]:
        return self.visual_ids(num_tokens, "image")

    def visual_ids(self, num_tokens: int, modality: str = "image") -> list[int]:
        pad = self.image_token_id if modality == "image" else self.video_token_id
        return [self.vision_start_id] + [pad] * num_tokens + [self.vision_end_id]

    def item_ids(self, feats: "VisionFeatures", i: int) -> list[int]:
        """Prompt tokens for item i of `feats`. Qwen3-VL videos, as its processor writes them: per temporal patch
        "<{t:.1f} seconds>" then <|vision_start|> <|video_pad|>*(tokens per frame) <|vision_end|>."""
        n = self.tokens_per_item(feats.grid_thw[i])
        if feats.timestamps is None:
            return self.visual_ids(n, feats.modality)
        per_step = n // int(feats.grid_thw[i][0])
        ids = []
        for t in feats.timestamps[i]:
            ids += self._encode_text(f"<{t:.1f} seconds>") + self.visual_ids(per_step, "video")
        return ids

    # ---- vision -------------------------------------------------------------------------------------------------
    def target_size(self, height: int, width: int, min_pixels: int | None, max_pixels: int | None):
        """(h, w) each frame is resized to, like the HF processor with these pixel bounds."""
        factor = self.patch_size * self.merge_size
        lo = self.min_pixels if min_pixels is None else min_pixels
        hi = self.max_pixels if max_pixels is None else max_pixels
        return smart_resize(height, width, factor, lo, hi)

    def use_video_processor(self, video_processor) -> None:
        """Take the pixel bounds of the model's own video processor (its ``size``) for ``frames_as="video"``."""
        lo = _processor_value(video_processor, "min_pixels", self.video_min_pixels)
        hi = _processor_value(video_processor, "max_pixels", self.video_max_pixels)
        self.video_min_pixels, self.video_max_pixels = int(lo), int(hi)

    def video_target_size(self, num_frames: int, height: int, width: int, min_pixels: int | None = None,
                          max_pixels: int | None = None) -> tuple[int, int]:
        """(h, w) each frame of a clip of ``num_frames`` frames is resized to, like the HF video processor: its own
        pixel bounds (``video_min_pixels`` / ``video_max_pixels``, per frame for Qwen2/2.5-VL, per clip for
        Qwen3-VL) unless ``min_pixels`` / ``max_pixels`` are given."""
        factor = self.patch_size * self.merge_size
        lo = self.video_min_pixels if min_pixels is None else min_pixels
        hi = self.video_max_pixels if max_pixels is None else max_pixels
        if self.name == "qwen3_vl":
            return qwen3_video_smart_resize(num_frames, height, width, self.temporal_patch_size, factor, lo, hi)
        return smart_resize(height, width, factor, lo, hi)

    def preprocess(self, images: torch.Tensor, min_pixels: int | None = None, max_pixels: int | None = None):
        """(N, 3, H, W) float in [0, 1] -> (pixel_values (N*gh*gw, C*tp*p*p), grid_thw (N, 3)), differentiable."""
        size = self.target_size(images.shape[-2], images.shape[-1], min_pixels, max_pixels)
        x = normalize(resize_images(images, size), self.mean, self.std)
        return qwen_patchify(x, self.patch_size, self.temporal_patch_size, self.merge_size)

    def tokens_per_image(self, grid_thw: torch.Tensor) -> int:
        return self.tokens_per_item(grid_thw[0])

    def tokens_per_item(self, grid_row: torch.Tensor) -> int:
        """LM tokens for one image or clip with grid (t, h, w): the 2x2 spatial merge divides by merge_size**2."""
        return int(grid_row.prod()) // self.merge_size**2

    supports_video = True

    def encode_videos(self, clips: list[torch.Tensor], min_pixels: int | None = None, max_pixels: int | None = None,
                      frame_indices: list[list[int]] | None = None, fps: float = 24.0) -> VisionFeatures:
        """One vision-tower pass over video clips, consecutive frames merged by the temporal patch.

        Args:
            clips: list of (B, T, 3, H, W) float tensors in [0, 1] (T may differ between list entries).
            frame_indices: per clip, the T source-frame indices (Qwen3-VL writes their times into the prompt);
                default 0..T-1.
            fps: frame rate of the source video, for those times.
        Returns: features of len(clips) * B clips, clip-major then b.
        """
        pvs, grids, stamps = [], [], []
        for k, clip in enumerate(clips):
            B, T = clip.shape[:2]
            size = self.video_target_size(T, clip.shape[-2], clip.shape[-1], min_pixels, max_pixels)
            x = normalize(resize_images(clip.reshape(B * T, *clip.shape[2:]), size), self.mean, self.std)
            pv, grid = qwen_video_patchify(x.view(B, T, *x.shape[1:]), self.patch_size, self.temporal_patch_size,
                                           self.merge_size)
            pvs.append(pv)
            grids.append(grid)
            idx = list(frame_indices[k]) if frame_indices is not None else list(range(T))
            stamps += [clip_timestamps(idx, fps, self.temporal_patch_size)] * B
        pixel_values, grid_thw = torch.cat(pvs), torch.cat(grids)
        out = self.model.model.get_video_features(pixel_values, grid_thw, return_dict=True)
        deep = getattr(out, "deepstack_features", None)
        return VisionFeatures(
            tuple(out.pooler_output), list(deep) if deep else None, grid_thw, modality="video",
            timestamps=stamps if self.name == "qwen3_vl" else None,
        )

    def encode(self, pixel_values: torch.Tensor, grid_thw: torch.Tensor) -> VisionFeatures:
        """One vision-tower pass over all images."""
        out = self.model.model.get_image_features(pixel_values, grid_thw, return_dict=True)
        deep = getattr(out, "deepstack_features", None)
        return VisionFeatures(tuple(out.pooler_output), list(deep) if deep else None, grid_thw)

    # ---- language model -----------------------------------------------------------------------------------------
    def answer_hidden(self, feats: VisionFeatures, layout: list[list[int]], questions: list[str],
                      share_prefix: bool = True) -> tuple[torch.Tensor, int]:
        """Final hidden state at the answer position for every (video, question).

        Args:
            feats: one vision pass's output (images or clips).
            layout: per video b, the indices into `feats` its prompt shows, in order (same count for every b).
            questions: the nq questions sharing this frame view.
            share_prefix: run the common prefix (template + visual tokens) once per video and reuse its KV cache for
                all questions (default); False runs full left-padded rows, one per (video, question).
        Returns: (hidden (B, nq, D), number of LM forward calls made).
        """
        B = len(layout)
        index = [i for row in layout for i in row]
        prefix = self.head_ids()
        for i in layout[0]:
            prefix += self.item_ids(feats, i)
        suffixes = [self.question_ids(q) for q in questions]
        dev = feats.grid_thw.device
        if share_prefix:
            return self._shared_prefix(feats, index, prefix, suffixes, B, dev), 2
        return self._full_rows(feats, index, prefix, suffixes, B, len(layout[0]), dev), 1

    def _mm_inputs(self, feats, index, ids, mask=None):
        """Token types, grid kwargs, encoder outputs and mrope position ids for rows `ids` showing feats[index]."""
        enc, grid = feats.select(index)
        pad_id = self.image_token_id if feats.modality == "image" else self.video_token_id
        is_visual = ids == pad_id
        if mask is not None:
            is_visual &= mask.bool()
        mm = is_visual.int() * (1 if feats.modality == "image" else 2)
        grid_kw = {"image_grid_thw": grid} if feats.modality == "image" else {"video_grid_thw": grid}
        # No second_per_grid_ts: Qwen2.5-VL then spaces a clip's temporal positions by its default of 1 s per
        # temporal patch (tokens_per_second apart); the reward has no fps to do better.
        pos, _ = self.model.model.get_rope_index(input_ids=ids, mm_token_type_ids=mm, attention_mask=mask, **grid_kw)
        return mm, grid_kw, {feats.modality: enc}, pos

    def _shared_prefix(self, feats, index, prefix, suffixes, B, dev):
        nq = len(suffixes)
        # (B, P + 1): identical rows, no padding. The extra last token is a text stand-in whose mrope position is
        # where the questions start. It is not max(position) + 1: after a clip the text resumes at the clip's
        # start + max(gh, gw) / merge, while Qwen2.5-VL spaces a clip's temporal positions by tokens_per_second
        # (measured: 0.86 nats off on a 4-frame clip when continuing from the max).
        ids = torch.tensor(prefix + [self.pad_id], device=dev).expand(B, -1)
        mm, grid_kw, enc, pos = self._mm_inputs(feats, index, ids)  # pos (3, B, P + 1)
        next_pos = pos[0, :, -1].repeat_interleave(nq)  # (B*nq,)
        ids, mm, pos = ids[:, :-1], mm[:, :-1], pos[..., :-1]
        out = self.model.model(
            input_ids=ids, attention_mask=torch.ones_like(ids), position_ids=pos, mm_token_type_ids=mm,
            mm_encoder_outputs=enc, use_cache=True, **grid_kw,
        )
        cache = out.cache
        cache.batch_repeat_interleave(nq)  # rows (b, q), b-major
        sids, mask, lengths = suffix_batch(suffixes, B, ids.shape[1], self.pad_id, dev)
        # Text tokens carry the same position id in all three mrope rows.
        spos = (next_pos[:, None] + torch.arange(sids.shape[1], device=dev)[None])[None].expand(3, -1, -1)
        h = self.model.model.language_model(
            input_ids=sids, attention_mask=mask, position_ids=spos, cache=cache, use_cache=True
        ).last_hidden_state  # (B*nq, S, D)
        return gather_last(h, lengths).view(B, nq, -1)

    def _full_rows(self, feats, index, prefix, suffixes, B, n_items, dev):
        nq = len(suffixes)
        # Left padding puts every row's answer position at -1; get_rope_index skips masked positions.
        ids, mask = left_pad([prefix + s for _ in range(B) for s in suffixes], self.pad_id, dev)
        row_index = [index[b * n_items + k] for b in range(B) for _ in range(nq) for k in range(n_items)]
        mm, grid_kw, enc, pos = self._mm_inputs(feats, row_index, ids, mask)
        h = self.model.model(
            input_ids=ids, attention_mask=mask, position_ids=pos, mm_token_type_ids=mm, mm_encoder_outputs=enc,
            use_cache=False, **grid_kw,
        ).last_hidden_state
        return h[:, -1].view(B, nq, -1)

    # ---- generation ---------------------------------------------------------------------------------------------
    def generate_inputs(self, ids: list[int], pixel_values, grid) -> dict:
        kwargs = {} if pixel_values is None else dict(pixel_values=pixel_values, image_grid_thw=grid)
        kwargs["mm_token_type_ids"] = (torch.tensor([ids]) == self.image_token_id).int().to(self.model.device)
        return kwargs
