"""Triton kernels for the fused LoRA linear ``y = x W^T + b + s (x A^T) B^T`` (design: docs/kernels.md).

Forward, two launches:
* ``_lora_rank_kernel``: S = x A^T (M, r), the one pass over x for the adapter; S is kept for backward.
* ``_lora_gemm_kernel``: the base GEMM x W^T whose fp32 accumulator also receives S (s B)^T and the bias before the
  store: no output-size temporary and no second pass over the output.
Backward, three launches plus a deterministic sum:
* ``_lora_dy_kernel``: the one pass over dY: per M tile, dS = s dY B (M, r) and a partial dB = s dY^T S for that
  tile (fp32, summed over tiles afterwards in a fixed order: two-stage, no atomics, bitwise reproducible).
* ``_lora_gemm_kernel`` again: dX = dY W with dS A added in the same accumulator.
* ``_lora_bwd_dw_kernel``: dA = dS^T x, split over M into fp32 partial sums that are summed after (two-stage).

The GEMM walks its tiles in grouped order (GROUP_M row tiles share each column band, so W stays in L2) and is
autotuned over a small set of tile configurations keyed on (M, N, K). All accumulate in fp32. Under TRITON_INTERPRET=1
(CPU tests) inputs are upcast to fp32 before tl.dot because the interpreter's reduced-precision dot is broken
(docs/architecture.md, "Tests and the dev machine"), and a single configuration is used (nothing to time on a CPU);
on a GPU fp16/bf16 tiles go to the tensor cores as they are.
"""

import os

import torch
import triton
import triton.language as tl

_INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"


def _gemm_configs():
    """Tile configurations the autotuner tries per (M, N, K). Unmeasured on a GPU so far (docs/kernels.md, "gate"):
    the set is the usual one for bf16 GEMMs of this size (Triton's matmul tutorial), kept small so the first call
    at a new shape tunes in seconds."""
    if _INTERPRET:
        return [triton.Config({"BLOCK_M": 32, "BLOCK_N": 32, "BLOCK_K": 32, "GROUP_M": 4}, num_warps=4)]
    shapes = [(128, 256, 64, 8, 3), (256, 128, 64, 8, 3), (128, 128, 64, 4, 4), (128, 128, 32, 4, 4),
              (64, 128, 64, 4, 4), (128, 64, 64, 4, 4)]
    return [triton.Config({"BLOCK_M": m, "BLOCK_N": n, "BLOCK_K": k, "GROUP_M": 8}, num_warps=w, num_stages=s)
            for m, n, k, w, s in shapes]


@triton.jit
def _grouped_tile(pid, M, N, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, GROUP_M: tl.constexpr):
    """(pid_m, pid_n) for program pid: GROUP_M consecutive row tiles per column band, so the programs that run at
    the same time share W's column tiles in L2 instead of streaming all of W per row of tiles."""
    num_m = tl.cdiv(M, BLOCK_M)
    num_n = tl.cdiv(N, BLOCK_N)
    width = GROUP_M * num_n
    first_m = (pid // width) * GROUP_M
    size_m = tl.minimum(num_m - first_m, GROUP_M)
    pid_m = first_m + (pid % width) % size_m
    pid_n = (pid % width) // size_m
    return pid_m, pid_n


@triton.jit
def _lora_rank_kernel(
    x_ptr, a_ptr, s_ptr, M, K, R,
    stride_xm, stride_xk, stride_ar, stride_ak, stride_sm, stride_sr,
    UPCAST: tl.constexpr, PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_R: tl.constexpr,
):
    """S = x A^T for one BLOCK_M row tile: x (M, K), A (r, K) -> S (M, r) in x's dtype."""
    rm = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    rr = tl.arange(0, BLOCK_R)
    rk = tl.arange(0, BLOCK_K)
    acc = tl.zeros((BLOCK_M, BLOCK_R), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        kk = k0 + rk
        x = tl.load(x_ptr + rm[:, None] * stride_xm + kk[None, :] * stride_xk,
                    mask=(rm[:, None] < M) & (kk[None, :] < K), other=0.0)  # (BM, BK)
        a = tl.load(a_ptr + rr[None, :] * stride_ar + kk[:, None] * stride_ak,
                    mask=(rr[None, :] < R) & (kk[:, None] < K), other=0.0)  # (BK, BR) = A^T tile
        if UPCAST:
            x, a = x.to(tl.float32), a.to(tl.float32)
        acc += tl.dot(x, a, input_precision=PRECISION)
    tl.store(s_ptr + rm[:, None] * stride_sm + rr[None, :] * stride_sr, acc.to(s_ptr.dtype.element_ty),
             mask=(rm[:, None] < M) & (rr[None, :] < R))


@triton.autotune(configs=_gemm_configs(), key=["M", "N", "K"])
@triton.jit
def _lora_gemm_kernel(
    p_ptr, q_ptr, s_ptr, z_ptr, b_ptr, c_ptr,
    M, N, K, R, scale,
    stride_pm, stride_pk, stride_qk, stride_qn, stride_sm, stride_sr, stride_zr, stride_zn, stride_cm, stride_cn,
    HAS_BIAS: tl.constexpr, UPCAST: tl.constexpr, PRECISION: tl.constexpr, BLOCK_R: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
):
    """C (M, N) = P (M, K) Q (K, N) + scale * S (M, r) Z (r, N) [+ bias (N,)], all in one fp32 accumulator.
    Forward: P = x, Q = W^T, S = x A^T, Z = B^T, scale = s. dX: P = dY, Q = W, S = dS (already scaled), Z = A."""
    pid_m, pid_n = _grouped_tile(tl.program_id(0), M, N, BLOCK_M, BLOCK_N, GROUP_M)
    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    rk = tl.arange(0, BLOCK_K)
    rr = tl.arange(0, BLOCK_R)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        kk = k0 + rk
        p = tl.load(p_ptr + rm[:, None] * stride_pm + kk[None, :] * stride_pk,
                    mask=(rm[:, None] < M) & (kk[None, :] < K), other=0.0)  # (BM, BK)
        q = tl.load(q_ptr + kk[:, None] * stride_qk + rn[None, :] * stride_qn,
                    mask=(kk[:, None] < K) & (rn[None, :] < N), other=0.0)  # (BK, BN)
        if UPCAST:
            p, q = p.to(tl.float32), q.to(tl.float32)
        acc += tl.dot(p, q, input_precision=PRECISION)
    s = tl.load(s_ptr + rm[:, None] * stride_sm + rr[None, :] * stride_sr,
                mask=(rm[:, None] < M) & (rr[None, :] < R), other=0.0)  # (BM, BR)
    z = tl.load(z_ptr + rr[:, None] * stride_zr + rn[None, :] * stride_zn,
                mask=(rr[:, None] < R) & (rn[None, :] < N), other=0.0)  # (BR, BN)
    if UPCAST:
        s, z = s.to(tl.float32), z.to(tl.float32)
    acc += scale * tl.dot(s, z, input_precision=PRECISION)
    if HAS_BIAS:
        acc += tl.load(b_ptr + rn, mask=rn < N, other=0.0).to(tl.float32)[None, :]
    tl.store(c_ptr + rm[:, None] * stride_cm + rn[None, :] * stride_cn, acc.to(c_ptr.dtype.element_ty),
             mask=(rm[:, None] < M) & (rn[None, :] < N))


@triton.jit
def _lora_dy_kernel(
    dy_ptr, lb_ptr, s_ptr, ds_ptr, dbp_ptr, M, N, R, scale,
    stride_dym, stride_dyn, stride_bn, stride_br, stride_sm, stride_sr, stride_dsm, stride_dsr,
    stride_pt, stride_pn, stride_pr,
    UPCAST: tl.constexpr, PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_R: tl.constexpr,
):
    """One pass over dY for one BLOCK_M row tile: dS = s dY B (M, r) stored in dY's dtype, and this tile's partial
    dB = s dY^T S (N, r) stored in fp32 at dbp[pid] (summed over tiles by the caller)."""
    pid = tl.program_id(0)
    rm = pid * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = tl.arange(0, BLOCK_N)
    rr = tl.arange(0, BLOCK_R)
    s = tl.load(s_ptr + rm[:, None] * stride_sm + rr[None, :] * stride_sr,
                mask=(rm[:, None] < M) & (rr[None, :] < R), other=0.0)  # (BM, BR)
    if UPCAST:
        s = s.to(tl.float32)
    ds = tl.zeros((BLOCK_M, BLOCK_R), dtype=tl.float32)
    for n0 in range(0, N, BLOCK_N):
        nn = n0 + rn
        dy = tl.load(dy_ptr + rm[:, None] * stride_dym + nn[None, :] * stride_dyn,
                     mask=(rm[:, None] < M) & (nn[None, :] < N), other=0.0)  # (BM, BN)
        lb = tl.load(lb_ptr + nn[:, None] * stride_bn + rr[None, :] * stride_br,
                     mask=(nn[:, None] < N) & (rr[None, :] < R), other=0.0)  # (BN, BR)
        if UPCAST:
            dy, lb = dy.to(tl.float32), lb.to(tl.float32)
        ds += tl.dot(dy, lb, input_precision=PRECISION)
        db = tl.dot(tl.trans(dy), s, input_precision=PRECISION) * scale  # (BN, BR)
        tl.store(dbp_ptr + pid * stride_pt + nn[:, None] * stride_pn + rr[None, :] * stride_pr, db,
                 mask=(nn[:, None] < N) & (rr[None, :] < R))
    tl.store(ds_ptr + rm[:, None] * stride_dsm + rr[None, :] * stride_dsr, (ds * scale).to(ds_ptr.dtype.element_ty),
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


def _rank_rows(block_r: int) -> int:
    """Row tile of the rank-r passes. Their fp32 (BLOCK_M x BLOCK_R) accumulator lives in registers: 64 x 256 fp32
    is 128 registers per thread at 4 warps, so large ranks get 32 rows."""
    return 32 if block_r >= 128 else 64


def _gemm(p, q_strides, s, z_strides, z, bias, out, scale: float):
    """out (M, N) = p (M, K) q (K, N) + scale * s (M, r) z (r, N) [+ bias]; q / z are passed as (tensor, strides)."""
    q, (sqk, sqn) = q_strides
    M, K = p.shape
    N, R = out.shape[1], s.shape[1]
    grid = lambda meta: (triton.cdiv(M, meta["BLOCK_M"]) * triton.cdiv(N, meta["BLOCK_N"]),)  # noqa: E731
    _lora_gemm_kernel[grid](
        p, q, s, z, bias if bias is not None else out, out,
        M, N, K, R, float(scale),
        p.stride(0), p.stride(1), sqk, sqn, s.stride(0), s.stride(1), z_strides[0], z_strides[1],
        out.stride(0), out.stride(1),
        HAS_BIAS=bias is not None, UPCAST=_INTERPRET, PRECISION=_precision(p.dtype), BLOCK_R=_rank_block(R),
    )
    return out


def lora_fwd_triton(x, weight, bias, lora_A, lora_B, scale: float):
    """x (M, K), weight (N, K), bias (N,) | None, lora_A (r, K), lora_B (N, r) -> (out (M, N), xa (M, r))."""
    M, K = x.shape
    N, R = weight.shape[0], lora_A.shape[0]
    block_r = _rank_block(R)
    xa = torch.empty((M, R), device=x.device, dtype=x.dtype)  # (M, r), rounded to x's dtype as the reference does
    bm = _rank_rows(block_r)
    _lora_rank_kernel[(triton.cdiv(M, bm),)](
        x, lora_A, xa, M, K, R,
        x.stride(0), x.stride(1), lora_A.stride(0), lora_A.stride(1), xa.stride(0), xa.stride(1),
        UPCAST=_INTERPRET, PRECISION=_precision(x.dtype), BLOCK_M=bm, BLOCK_K=64, BLOCK_R=block_r, num_warps=4,
    )
    out = torch.empty((M, N), device=x.device, dtype=x.dtype)
    _gemm(x, (weight, (weight.stride(1), weight.stride(0))), xa, (lora_B.stride(1), lora_B.stride(0)), lora_B,
          bias, out, scale)
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
    partial = torch.empty((split, P, Q), device=p.device, dtype=torch.float32)
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
    block_r = _rank_block(R)
    bm = _rank_rows(block_r)
    tiles = triton.cdiv(M, bm)
    dxa = torch.empty((M, R), device=x.device, dtype=x.dtype)  # dS = s dY B (M, r)
    # Partial dB per row tile, fp32 (tiles, N, r): 16384 tokens x 3072 x r 16 is 256 x 3072 x 16 x 4 B = 50 MB.
    db_partial = torch.empty((tiles, N, R), device=x.device, dtype=torch.float32)
    _lora_dy_kernel[(tiles,)](
        grad_out, lora_B, xa, dxa, db_partial, M, N, R, float(scale),
        grad_out.stride(0), grad_out.stride(1), lora_B.stride(0), lora_B.stride(1), xa.stride(0), xa.stride(1),
        dxa.stride(0), dxa.stride(1), db_partial.stride(0), db_partial.stride(1), db_partial.stride(2),
        UPCAST=_INTERPRET, PRECISION=_precision(x.dtype), BLOCK_M=bm, BLOCK_N=64, BLOCK_R=block_r, num_warps=4,
    )
    grad_B = db_partial.sum(0).to(lora_B.dtype)  # (N, r): second stage, fixed order
    dx = torch.empty((M, K), device=x.device, dtype=x.dtype)
    _gemm(grad_out, (weight, (weight.stride(0), weight.stride(1))), dxa, (lora_A.stride(0), lora_A.stride(1)),
          lora_A, None, dx, 1.0)
    grad_A = _t_matmul(dxa, x, 1.0, lora_A.dtype)  # (r, K)
    return dx, grad_A, grad_B
