"""Triton kernels for the fused LoRA linear ``y = x W^T + b + s (x A^T) B^T``.

* ``_lora_fwd_kernel``: one (BLOCK_M, BLOCK_N) output tile. The K loop feeds both the base product x W^T and the
  rank-r product x A^T from the same x tile; the LoRA term and bias are added in the epilogue, so the adapter costs
  no extra pass over x and no output-size temporary. Programs with pid_n == 0 also store xa (M, r) for backward.
* ``_lora_bwd_dx_kernel``: one (BLOCK_M, BLOCK_K) tile of dX = dY W + (s dY B) A in one pass over W and B: the N
  loop feeds both dY W and dXA = dY B from the same dY tile; dXA A is added in the epilogue; pid_k == 0 stores dXA.
* ``_lora_bwd_dw_kernel``: C = alpha * P^T Q reduced over the M tokens, for dA = dXA^T X and dB = s dY^T XA; split
  over M (SPLIT_M partial sums, summed after) so a small (r, K) result still fills the GPU.

All accumulate in fp32. Under TRITON_INTERPRET=1 (CPU tests) inputs are upcast to fp32 before tl.dot because the
interpreter's reduced-precision dot is broken (docs/architecture.md, "Tests and the dev machine"); on a GPU fp16/bf16 tiles go to the tensor cores as they are.
"""

import os

import torch
import triton
import triton.language as tl

_INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"


@triton.jit
def _lora_fwd_kernel(
    x_ptr, w_ptr, b_ptr, a_ptr, lb_ptr, out_ptr, xa_ptr,
    M, N, K, R, scale,
    stride_xm, stride_xk, stride_wn, stride_wk, stride_ar, stride_ak, stride_bn, stride_br,
    stride_om, stride_on, stride_xam, stride_xar,
    HAS_BIAS: tl.constexpr, UPCAST: tl.constexpr, PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_R: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    rr = tl.arange(0, BLOCK_R)
    rk = tl.arange(0, BLOCK_K)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    xa = tl.zeros((BLOCK_M, BLOCK_R), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        kk = k0 + rk
        x = tl.load(x_ptr + rm[:, None] * stride_xm + kk[None, :] * stride_xk,
                    mask=(rm[:, None] < M) & (kk[None, :] < K), other=0.0)  # (BM, BK)
        w = tl.load(w_ptr + rn[None, :] * stride_wn + kk[:, None] * stride_wk,
                    mask=(rn[None, :] < N) & (kk[:, None] < K), other=0.0)  # (BK, BN) = W^T tile
        a = tl.load(a_ptr + rr[None, :] * stride_ar + kk[:, None] * stride_ak,
                    mask=(rr[None, :] < R) & (kk[:, None] < K), other=0.0)  # (BK, BR) = A^T tile
        if UPCAST:
            x, w, a = x.to(tl.float32), w.to(tl.float32), a.to(tl.float32)
        acc += tl.dot(x, w, input_precision=PRECISION)
        xa += tl.dot(x, a, input_precision=PRECISION)
    lb = tl.load(lb_ptr + rr[:, None] * stride_br + rn[None, :] * stride_bn,
                 mask=(rr[:, None] < R) & (rn[None, :] < N), other=0.0)  # (BR, BN) = B^T tile
    # xa is rounded to the storage dtype before the up-projection, as the reference (and PEFT) do.
    xa_lp = xa.to(xa_ptr.dtype.element_ty)
    if UPCAST:
        acc += scale * tl.dot(xa_lp.to(tl.float32), lb.to(tl.float32), input_precision=PRECISION)
    else:
        acc += scale * tl.dot(xa_lp, lb, input_precision=PRECISION)
    if HAS_BIAS:
        acc += tl.load(b_ptr + rn, mask=rn < N, other=0.0).to(tl.float32)[None, :]
    tl.store(out_ptr + rm[:, None] * stride_om + rn[None, :] * stride_on, acc.to(out_ptr.dtype.element_ty),
             mask=(rm[:, None] < M) & (rn[None, :] < N))
    if pid_n == 0:
        tl.store(xa_ptr + rm[:, None] * stride_xam + rr[None, :] * stride_xar, xa_lp,
                 mask=(rm[:, None] < M) & (rr[None, :] < R))


@triton.jit
def _lora_bwd_dx_kernel(
    dy_ptr, w_ptr, a_ptr, lb_ptr, dx_ptr, dxa_ptr,
    M, N, K, R, scale,
    stride_dym, stride_dyn, stride_wn, stride_wk, stride_ar, stride_ak, stride_bn, stride_br,
    stride_dxm, stride_dxk, stride_dxam, stride_dxar,
    UPCAST: tl.constexpr, PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_R: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_k = tl.program_id(1)
    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rk = pid_k * BLOCK_K + tl.arange(0, BLOCK_K)
    rr = tl.arange(0, BLOCK_R)
    rn = tl.arange(0, BLOCK_N)
    acc = tl.zeros((BLOCK_M, BLOCK_K), dtype=tl.float32)
    dxa = tl.zeros((BLOCK_M, BLOCK_R), dtype=tl.float32)
    for n0 in range(0, N, BLOCK_N):
        nn = n0 + rn
        dy = tl.load(dy_ptr + rm[:, None] * stride_dym + nn[None, :] * stride_dyn,
                     mask=(rm[:, None] < M) & (nn[None, :] < N), other=0.0)  # (BM, BN)
        w = tl.load(w_ptr + nn[:, None] * stride_wn + rk[None, :] * stride_wk,
                    mask=(nn[:, None] < N) & (rk[None, :] < K), other=0.0)  # (BN, BK)
        lb = tl.load(lb_ptr + nn[:, None] * stride_bn + rr[None, :] * stride_br,
                     mask=(nn[:, None] < N) & (rr[None, :] < R), other=0.0)  # (BN, BR)
        if UPCAST:
            dy, w, lb = dy.to(tl.float32), w.to(tl.float32), lb.to(tl.float32)
        acc += tl.dot(dy, w, input_precision=PRECISION)
        dxa += tl.dot(dy, lb, input_precision=PRECISION)
    dxa_lp = (dxa * scale).to(dxa_ptr.dtype.element_ty)
    a = tl.load(a_ptr + rr[:, None] * stride_ar + rk[None, :] * stride_ak,
                mask=(rr[:, None] < R) & (rk[None, :] < K), other=0.0)  # (BR, BK)
    if UPCAST:
        acc += tl.dot(dxa_lp.to(tl.float32), a.to(tl.float32), input_precision=PRECISION)
    else:
        acc += tl.dot(dxa_lp, a, input_precision=PRECISION)
    tl.store(dx_ptr + rm[:, None] * stride_dxm + rk[None, :] * stride_dxk, acc.to(dx_ptr.dtype.element_ty),
             mask=(rm[:, None] < M) & (rk[None, :] < K))
    if pid_k == 0:
        tl.store(dxa_ptr + rm[:, None] * stride_dxam + rr[None, :] * stride_dxar, dxa_lp,
                 mask=(rm[:, None] < M) & (rr[None, :] < R))


@triton.jit
def _lora_bwd_dw_kernel(
    p_ptr, q_ptr, c_ptr, M, P, Q, alpha, rows_per_split,
    stride_pm, stride_pp, stride_qm, stride_qq, stride_cs, stride_cp, stride_cq,
    UPCAST: tl.constexpr, PRECISION: tl.constexpr,
    BLOCK_P: tl.constexpr, BLOCK_Q: tl.constexpr, BLOCK_M: tl.constexpr,
):
    pid_p = tl.program_id(0)
    pid_q = tl.program_id(1)
    pid_s = tl.program_id(2)
    rp = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)
    rq = pid_q * BLOCK_Q + tl.arange(0, BLOCK_Q)
    rm = tl.arange(0, BLOCK_M)
    acc = tl.zeros((BLOCK_P, BLOCK_Q), dtype=tl.float32)
    m_start = pid_s * rows_per_split
    m_end = tl.minimum(m_start + rows_per_split, M)
    for m0 in range(m_start, m_end, BLOCK_M):
        mm = m0 + rm
        p = tl.load(p_ptr + mm[None, :] * stride_pm + rp[:, None] * stride_pp,
                    mask=(mm[None, :] < m_end) & (rp[:, None] < P), other=0.0)  # (BP, BM) = P^T tile
        q = tl.load(q_ptr + mm[:, None] * stride_qm + rq[None, :] * stride_qq,
                    mask=(mm[:, None] < m_end) & (rq[None, :] < Q), other=0.0)  # (BM, BQ)
        if UPCAST:
            p, q = p.to(tl.float32), q.to(tl.float32)
        acc += tl.dot(p, q, input_precision=PRECISION)
    tl.store(c_ptr + pid_s * stride_cs + rp[:, None] * stride_cp + rq[None, :] * stride_cq, acc * alpha,
             mask=(rp[:, None] < P) & (rq[None, :] < Q))


def _rank_block(r: int) -> int:
    # tl.dot needs every tile dimension >= 16; the rank is padded to a power of two (masked loads fill zeros).
    return max(16, triton.next_power_of_2(r))


def _precision(dtype: torch.dtype) -> str:
    # fp32 inputs: full-precision dot ("ieee"), as torch.matmul does by default (TF32 off); fp16/bf16 use tensor cores.
    return "ieee" if dtype == torch.float32 else "tf32"


def _tiles(block_r: int):
    """(BLOCK_M, BLOCK_N/K, BLOCK_K/N, num_warps). The fp32 rank accumulator (BLOCK_M x BLOCK_R) lives in registers,
    so large ranks get a shorter M tile: 64 x 256 fp32 would be 128 registers per thread for it alone at 4 warps."""
    if block_r >= 128:
        return 32, 64, 32, 4
    return 64, 64, 32, 4


def lora_fwd_triton(x, weight, bias, lora_A, lora_B, scale: float):
    """x (M, K), weight (N, K), bias (N,) | None, lora_A (r, K), lora_B (N, r) -> (out (M, N), xa (M, r))."""
    M, K = x.shape
    N, R = weight.shape[0], lora_A.shape[0]
    out = torch.empty((M, N), device=x.device, dtype=x.dtype)
    xa = torch.empty((M, R), device=x.device, dtype=x.dtype)
    block_r = _rank_block(R)
    bm, bn, bk, warps = _tiles(block_r)
    grid = (triton.cdiv(M, bm), triton.cdiv(N, bn))
    _lora_fwd_kernel[grid](
        x, weight, bias if bias is not None else x, lora_A, lora_B, out, xa,
        M, N, K, R, float(scale),
        x.stride(0), x.stride(1), weight.stride(0), weight.stride(1), lora_A.stride(0), lora_A.stride(1),
        lora_B.stride(0), lora_B.stride(1), out.stride(0), out.stride(1), xa.stride(0), xa.stride(1),
        HAS_BIAS=bias is not None, UPCAST=_INTERPRET, PRECISION=_precision(x.dtype),
        BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, BLOCK_R=block_r, num_warps=warps,
    )
    return out, xa


def _t_matmul(p, q, alpha: float, out_dtype):
    """alpha * p^T @ q for p (M, P), q (M, Q), reduced over M in SPLIT_M fp32 partial sums."""
    M, P = p.shape
    Q = q.shape[1]
    bp, bq, bm = 32, 64, 32
    tiles = triton.cdiv(P, bp) * triton.cdiv(Q, bq)
    # Aim for >= ~256 programs (about 2 per SM on an H100's 132 SMs) without splitting below 256 rows each.
    split = max(1, min(triton.cdiv(256, tiles), triton.cdiv(M, 256)))
    rows = triton.cdiv(triton.cdiv(M, split), bm) * bm
    split = triton.cdiv(M, rows) if M > 0 else 1
    partial = torch.zeros((split, P, Q), device=p.device, dtype=torch.float32)
    grid = (triton.cdiv(P, bp), triton.cdiv(Q, bq), split)
    _lora_bwd_dw_kernel[grid](
        p, q, partial, M, P, Q, float(alpha), rows,
        p.stride(0), p.stride(1), q.stride(0), q.stride(1), partial.stride(0), partial.stride(1), partial.stride(2),
        UPCAST=_INTERPRET, PRECISION=_precision(p.dtype), BLOCK_P=bp, BLOCK_Q=bq, BLOCK_M=bm, num_warps=4,
    )
    return partial.sum(0).to(out_dtype)


def lora_bwd_triton(grad_out, x, xa, weight, lora_A, lora_B, scale: float):
    """grad_out (M, N), x (M, K), xa (M, r) -> (dx (M, K), dA (r, K), dB (N, r)); see the module docstring."""
    M, N = grad_out.shape
    K, R = x.shape[1], lora_A.shape[0]
    dx = torch.empty((M, K), device=x.device, dtype=x.dtype)
    dxa = torch.empty((M, R), device=x.device, dtype=x.dtype)
    block_r = _rank_block(R)
    bm, bk, bn, warps = _tiles(block_r)
    grid = (triton.cdiv(M, bm), triton.cdiv(K, bk))
    _lora_bwd_dx_kernel[grid](
        grad_out, weight, lora_A, lora_B, dx, dxa,
        M, N, K, R, float(scale),
        grad_out.stride(0), grad_out.stride(1), weight.stride(0), weight.stride(1), lora_A.stride(0),
        lora_A.stride(1), lora_B.stride(0), lora_B.stride(1), dx.stride(0), dx.stride(1), dxa.stride(0),
        dxa.stride(1),
        UPCAST=_INTERPRET, PRECISION=_precision(x.dtype),
        BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, BLOCK_R=block_r, num_warps=warps,
    )
    grad_A = _t_matmul(dxa, x, 1.0, lora_A.dtype)  # (r, K)
    grad_B = _t_matmul(grad_out, xa, scale, lora_B.dtype)  # (N, r)
    return dx, grad_A, grad_B
