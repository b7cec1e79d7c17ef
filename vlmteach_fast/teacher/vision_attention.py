"""Qwen-VL vision attention as one attention call per layer instead of one per window.

The Qwen-VL vision towers attend within windows (Qwen2.5-VL: 8 x 8 patches, 28 of 32 layers) or within images
(the other layers, and Qwen2-VL / Qwen3-VL). Without a flash-attention package, transformers runs that as a Python
loop: one attention call per window or image, so a layer over 5 frames of 480 x 832 makes about 200 calls and the
tower about 5600, each a few kernels too small to fill a GPU; the teacher's step is then bound by kernel launches.
``batch_windows`` gathers the windows into one padded (windows, heads, longest, head_dim) batch and runs a single
``scaled_dot_product_attention`` with a key-padding mask (no mask when all windows have one length, as the
image-wide layers do): the same attention, up to float rounding, in a handful of kernels per layer. The gathered
copies of q, k and v are kept for backward (the loop keeps views).
"""

from __future__ import annotations

import inspect
import sys

import torch
import torch.nn.functional as F

__all__ = ["batch_windows", "batched_window_attention"]


def _windows(cu_seqlens: torch.Tensor, total: int):
    """(gather index (n, m) into the tokens + one zero row at ``total``, key mask (n, m) or None, flat positions of
    the real entries in token order) for windows ``cu_seqlens`` (n + 1 offsets)."""
    starts, lengths = cu_seqlens[:-1].long(), cu_seqlens.diff().long()
    m = int(lengths.max())
    pos = torch.arange(m, device=cu_seqlens.device)
    valid = pos[None] < lengths[:, None]
    index = torch.where(valid, starts[:, None] + pos[None], torch.full_like(valid, total, dtype=torch.long))
    mask = None if bool((lengths == m).all()) else valid[:, None, None, :]
    return index, mask, valid.flatten().nonzero().squeeze(1)


def batched_window_attention(module, hidden_states: torch.Tensor, cu_seqlens: torch.Tensor,
                             position_embeddings=None, **kwargs) -> torch.Tensor:
    """``forward`` of a Qwen-VL ``VisionAttention`` module (hidden_states (L, D), cu_seqlens (n + 1,) int, cos / sin
    (L, head_dim)) with every window in one attention call. Returns (L, D) like the module's own forward."""
    L = hidden_states.shape[0]
    q, k, v = module.qkv(hidden_states).reshape(L, 3, module.num_heads, -1).permute(1, 0, 2, 3).unbind(0)
    cos, sin = position_embeddings
    q, k = module._vlmteach_rope(q, k, cos, sin)
    index, mask, flat = _windows(cu_seqlens, L)

    def gather(x):  # (L, H, d) -> (n, H, m, d), padded with a zero row
        return torch.cat([x, x.new_zeros(1, *x.shape[1:])])[index].transpose(1, 2)

    out = F.scaled_dot_product_attention(gather(q), gather(k), gather(v), attn_mask=mask, scale=module.scaling)
    out = out.transpose(1, 2).reshape(-1, module.num_heads, out.shape[-1])[flat]  # (L, H, d), token order
    return module.proj(out.reshape(L, -1))


def batch_windows(visual: torch.nn.Module) -> int:
    """Give every Qwen-VL vision attention module of ``visual`` the batched forward (the module instances only);
    left alone: towers that run flash attention (already one call per layer) and modules of another form. Returns
    how many modules were changed."""
    changed = 0
    for mod in visual.modules():
        if not type(mod).__name__.endswith("VisionAttention"):
            continue
        rope = getattr(sys.modules[type(mod).__module__], "apply_rotary_pos_emb_vision", None)
        impl = getattr(getattr(mod, "config", None), "_attn_implementation", None) or ""
        params = inspect.signature(type(mod).forward).parameters
        if (rope is None or "flash" in impl or not all(hasattr(mod, a) for a in ("qkv", "proj", "num_heads", "scaling"))
                or "position_embeddings" not in params or "cu_seqlens" not in params):
            continue
        mod._vlmteach_rope = rope
        mod.forward = batched_window_attention.__get__(mod)
        changed += 1
    return changed
