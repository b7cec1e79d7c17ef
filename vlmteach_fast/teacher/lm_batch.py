"""Batched scoring of many questions against one visual prefix: padding helpers and the 1-D-position LM paths.

Two ways to score nq questions per video, both forming only the answer position's hidden state:
- shared prefix (default): run [template head + image tokens] once per video with a KV cache, repeat the cache nq
  times, then run all question suffixes in one right-padded pass and gather each row's last real position;
- full rows: one left-padded row per (video, question) holding prefix + question; the answer position is -1.
The Qwen family uses the padding helpers with its own multimodal RoPE; Idefics3/SmolVLM (Llama LM, 1-D positions)
use `shared_prefix_1d` / `full_rows_1d` as they are.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers.modeling_outputs import BaseModelOutputWithPooling


@dataclass
class TowerFeatures:
    """One vision pass over N images for families without extra per-image metadata: N tensors (tokens, D)."""

    pooled: tuple

    def select(self, index: list[int]) -> BaseModelOutputWithPooling:
        """Encoder output for `model.model(mm_encoder_outputs={"image": ...})` holding the images in `index`."""
        return BaseModelOutputWithPooling(pooler_output=[self.pooled[i] for i in index])


def right_pad(seqs: list[list[int]], pad_id: int, device=None):
    """(ids (n, S) int64, mask (n, S) int64, lengths (n,) int64) with pads after each sequence."""
    lengths = torch.tensor([len(s) for s in seqs], device=device)
    ids = torch.full((len(seqs), int(lengths.max())), pad_id, dtype=torch.long, device=device)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long, device=device)
    mask = (torch.arange(ids.shape[1], device=device)[None] < lengths[:, None]).long()
    return ids, mask, lengths


def left_pad(seqs: list[list[int]], pad_id: int, device=None):
    """(ids (n, L) int64, mask (n, L) int64) with pads before each sequence, so every row ends at position -1."""
    L = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), L), pad_id, dtype=torch.long, device=device)
    mask = torch.zeros_like(ids)
    for i, s in enumerate(seqs):
        ids[i, L - len(s):] = torch.tensor(s, dtype=torch.long, device=device)
        mask[i, L - len(s):] = 1
    return ids, mask


def suffix_batch(suffixes: list[list[int]], num_videos: int, prefix_len: int, pad_id: int, device=None):
    """Right-padded suffix rows for every (video, question), b-major, with the attention mask over cache + suffix.

    Right padding keeps every real suffix token before the pads, so causality alone keeps pads out of the answer
    position; the mask is still passed so no attention kernel sees them.
    Returns: ids (B*nq, S), mask (B*nq, P + S), lengths (B*nq,).
    """
    ids, smask, lengths = right_pad(suffixes, pad_id, device)
    ids, smask, lengths = ids.repeat(num_videos, 1), smask.repeat(num_videos, 1), lengths.repeat(num_videos)
    mask = torch.cat([torch.ones(ids.shape[0], prefix_len, dtype=torch.long, device=device), smask], dim=1)
    return ids, mask, lengths


def gather_last(hidden: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """hidden (n, S, D) -> (n, D) at each row's last real position (lengths - 1)."""
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), lengths - 1]


def shared_prefix_1d(base_model, text_model, prefix: list[int], suffixes: list[list[int]], num_videos: int,
                     encoder_output, pad_id: int, device=None) -> torch.Tensor:
    """Shared-prefix scoring for models with 1-D positions (Llama-style LMs). Returns (B, nq, D) hidden states.

    Args:
        base_model: the `*Model` accepting input_ids / attention_mask / position_ids / mm_encoder_outputs / use_cache.
        text_model: its language model, accepting input_ids / attention_mask / position_ids / cache.
        prefix: token ids up to and including the last image token group (identical for all videos).
        suffixes: per question, the ids after the images.
        encoder_output: `mm_encoder_outputs["image"]` for the B videos' images in prefix order, b-major.
    """
    B, nq, P = num_videos, len(suffixes), len(prefix)
    ids = torch.tensor(prefix, device=device).expand(B, -1)
    pos = torch.arange(P, device=device).expand(B, -1)
    out = base_model(
        input_ids=ids, attention_mask=torch.ones_like(ids), position_ids=pos,
        mm_encoder_outputs={"image": encoder_output}, use_cache=True,
    )
    cache = out.cache
    cache.batch_repeat_interleave(nq)
    sids, mask, lengths = suffix_batch(suffixes, B, P, pad_id, device)
    spos = P + torch.arange(sids.shape[1], device=device).expand(sids.shape[0], -1)
    h = text_model(input_ids=sids, attention_mask=mask, position_ids=spos, cache=cache, use_cache=True)
    return gather_last(h.last_hidden_state, lengths).view(B, nq, -1)


def full_rows_1d(base_model, prefix: list[int], suffixes: list[list[int]], num_videos: int, encoder_output,
                 pad_id: int, device=None) -> torch.Tensor:
    """One left-padded row per (video, question); `encoder_output` must hold the images of every row, in order."""
    B, nq = num_videos, len(suffixes)
    ids, mask = left_pad([prefix + s for _ in range(B) for s in suffixes], pad_id, device)
    # Positions count real tokens only, so a left-padded row sees the same positions as an unpadded one.
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    h = base_model(
        input_ids=ids, attention_mask=mask, position_ids=pos, mm_encoder_outputs={"image": encoder_output},
        use_cache=False,
    ).last_hidden_state
    return h[:, -1].view(B, nq, -1)


def generate_greedy(model, tokenizer, ids: list[int], pad_id: int, max_new_tokens: int, **model_kwargs) -> str:
    """Greedy continuation of one prompt (token ids) with `model.generate`; returns the decoded new text."""
    input_ids = torch.tensor([ids], device=model.device)
    out = model.generate(
        input_ids=input_ids, attention_mask=torch.ones_like(input_ids), max_new_tokens=max_new_tokens,
        do_sample=False, pad_token_id=pad_id, **model_kwargs,
    )
    return tokenizer.decode(out[0, input_ids.shape[1]:], skip_special_tokens=True)


def answer_hidden_1d(family, language_model, feats: TowerFeatures, layout: list[list[int]], questions: list[str],
                     share_prefix: bool = True) -> tuple[torch.Tensor, int]:
    """``answer_hidden`` of the families with 1-D positions and a fixed number of tokens per image (Idefics3 /
    SmolVLM, LLaVA): (hidden (B, nq, D) at the answer position, LM calls). ``language_model`` is the decoder that
    takes the KV cache (``text_model`` in Idefics3, ``language_model`` in LLaVA). See `QwenVLFamily.answer_hidden`.
    """
    B, nq = len(layout), len(questions)
    prefix = family.head_ids()
    for _ in layout[0]:
        prefix += family.image_ids()
    suffixes = [family.question_ids(q) for q in questions]
    dev = feats.pooled[0].device
    base = family.model.model
    if share_prefix:
        index = [i for row in layout for i in row]
        return shared_prefix_1d(base, language_model, prefix, suffixes, B, feats.select(index), family.pad_id,
                                dev), 2
    rows = [i for row in layout for _ in range(nq) for i in row]
    return full_rows_1d(base, prefix, suffixes, B, feats.select(rows), family.pad_id, dev), 1
