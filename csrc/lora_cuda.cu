// CUDA kernel for the in-place rank-r update of the fused LoRA linear (host wrapper: rank_update_cuda).
//
// out (M, N) += s * P (M, r) @ Q (r, N), fp32 accumulation. It adds the LoRA term after the cuBLAS base GEMM
// (forward: P = x A^T, Q = B^T) and the dXA A term after dY W (backward), in place, so the LoRA path allocates
// nothing of output size and costs one extra read+write of the output, against PEFT's separate matmul, scale and add
// (three output-size passes, two temporaries). The ops using it are in lora_cuda_ops.cpp. Only light ATen/c10
// headers are included so that nvcc compile checks on CPU-only machines take seconds, not minutes.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>

namespace vlmteach_fast {
namespace {

constexpr int kTileM = 64;  // output rows per block
constexpr int kTileN = 64;  // output columns per block
constexpr int kTileR = 16;  // rank slice staged in shared memory per iteration
constexpr int kThreads = 256;  // 16 x 16 threads, each owning a 4 x 4 patch of the 64 x 64 tile

template <typename scalar_t>
__global__ void rank_update_kernel(scalar_t* __restrict__ out, int64_t ldo, const scalar_t* __restrict__ p,
                                   const scalar_t* __restrict__ q, int64_t M, int64_t N, int64_t R, float scale) {
  __shared__ float ps[kTileR][kTileM];  // P tile, transposed so each thread reads a row of 4 consecutive m
  __shared__ float qs[kTileR][kTileN];
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  const int64_t m0 = static_cast<int64_t>(blockIdx.y) * kTileM, n0 = static_cast<int64_t>(blockIdx.x) * kTileN;
  float acc[4][4] = {};
  for (int64_t r0 = 0; r0 < R; r0 += kTileR) {
    for (int i = threadIdx.x; i < kTileR * kTileM; i += kThreads) {
      const int rr = i % kTileR, mm = i / kTileR;
      const int64_t m = m0 + mm, r = r0 + rr;
      ps[rr][mm] = (m < M && r < R) ? static_cast<float>(p[m * R + r]) : 0.f;
    }
    for (int i = threadIdx.x; i < kTileR * kTileN; i += kThreads) {
      const int nn = i % kTileN, rr = i / kTileN;
      const int64_t n = n0 + nn, r = r0 + rr;
      qs[rr][nn] = (n < N && r < R) ? static_cast<float>(q[r * N + n]) : 0.f;
    }
    __syncthreads();
#pragma unroll
    for (int rr = 0; rr < kTileR; ++rr) {
      float a[4], b[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) a[i] = ps[rr][ty * 4 + i];
#pragma unroll
      for (int j = 0; j < 4; ++j) b[j] = qs[rr][tx * 4 + j];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] += a[i] * b[j];
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int64_t m = m0 + ty * 4 + i;
    if (m >= M) continue;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int64_t n = n0 + tx * 4 + j;
      if (n < N) {
        scalar_t* o = out + m * ldo + n;
        *o = static_cast<scalar_t>(static_cast<float>(*o) + scale * acc[i][j]);
      }
    }
  }
}

}  // namespace

// out (M, N), row-major with unit column stride  +=  scale * p (M, r) @ q (r, N)
void rank_update_cuda(at::Tensor& out, const at::Tensor& p, const at::Tensor& q, double scale) {
  TORCH_CHECK(out.stride(1) == 1, "rank_update: out must have unit column stride");
  const int64_t M = out.size(0), N = out.size(1), R = p.size(1);
  if (M == 0 || N == 0) return;
  auto pc = p.contiguous();
  auto qc = q.contiguous();
  const dim3 grid((N + kTileN - 1) / kTileN, (M + kTileM - 1) / kTileM);
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, out.scalar_type(), "rank_update_kernel", [&] {
    rank_update_kernel<scalar_t><<<grid, kThreads, 0, stream>>>(
        out.data_ptr<scalar_t>(), out.stride(0), pc.data_ptr<scalar_t>(), qc.data_ptr<scalar_t>(), M, N, R,
        static_cast<float>(scale));
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace vlmteach_fast
