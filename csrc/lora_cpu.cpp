// C++ CPU kernels for the fused LoRA linear y = x W^T + b + s (x A^T) B^T, registered as torch.library ops
// vlmteach_fast::_lora_fwd_cpu and vlmteach_fast::_lora_bwd_cpu (schemas below; Python: vlmteach_fast/ops/lora.py).
//
// PEFT computes base(x) + lora_B(lora_A(x)) * s: three GEMMs, two output-size temporaries and an add, and in
// backward two more token-sized GEMMs for dX. On the CPU the rank-r GEMMs over all M tokens are the slow part: a
// (M x K) @ (K x r) product reads the whole M x K activation for 2*M*K*r flops, and BLAS runs such skinny shapes at
// a fraction of its square-GEMM speed (measured on the dev CPU, M=2048, K=N=1536, r=16: 12-16 ms each, against
// 113 ms for the square base GEMM that does 96x the flops).
//
// So when there are enough tokens, the LoRA is folded into the weight instead: W' = W + s B A costs N*K*r flops
// once per call, independent of M, and then one GEMM x W'^T gives base and LoRA together; backward's dX = dY W'
// is one GEMM as well. Folding wins when N*K*r < M*r*(N+K), i.e. M > N*K/(N+K) (768 tokens at K=N=1536; a video
// DiT has thousands). W' is a temporary of weight size, never of output size, and is not saved for backward
// (recomputed there). Below the threshold: one GEMM for the base (bias fused by addmm) plus an in-place BLAS
// rank-r update out += s xa B^T, no output-size temporary. (A hand-written OpenMP rank-r update was measured as
// fast as BLAS at r=16 and 10% slower at r=64, so BLAS, which itself runs on torch's OpenMP pool, does it.)
#include <ATen/ATen.h>
#include <pybind11/pybind11.h>
#include <torch/version.h>
#include <torch/library.h>

namespace vlmteach_fast {
namespace {

void check_2d(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.dim() == 2, name, " must be 2-D, got ", t.dim(), "-D");
  TORCH_CHECK(t.device().is_cpu(), name, " must be on the CPU, got ", t.device());
}

// Fold when the weight-sized work N*K*r is below the token-sized work M*r*(N+K) it replaces.
bool fold(int64_t M, int64_t N, int64_t K) { return M * (N + K) > N * K; }

// W' = W + s B A, accumulated in fp32 for reduced-precision weights and rounded once (N x K).
at::Tensor folded_weight(const at::Tensor& weight, const at::Tensor& lora_A, const at::Tensor& lora_B, double s) {
  if (weight.scalar_type() == at::kFloat || weight.scalar_type() == at::kDouble) {
    return at::addmm(weight, lora_B, lora_A, /*beta=*/1, /*alpha=*/s);
  }
  return at::addmm(weight.to(at::kFloat), lora_B.to(at::kFloat), lora_A.to(at::kFloat), 1, s)
      .to(weight.scalar_type());
}

std::tuple<at::Tensor, at::Tensor> lora_fwd_cpu(const at::Tensor& x, const at::Tensor& weight,
                                                const std::optional<at::Tensor>& bias, const at::Tensor& lora_A,
                                                const at::Tensor& lora_B, double scale) {
  check_2d(x, "x");
  check_2d(weight, "weight");
  check_2d(lora_A, "lora_A");
  check_2d(lora_B, "lora_B");
  auto xa = at::mm(x, lora_A.t());  // (M, r), saved for backward's dB
  if (fold(x.size(0), weight.size(0), weight.size(1))) {
    auto w = folded_weight(weight, lora_A, lora_B, scale);  // (N, K)
    auto out = bias.has_value() ? at::addmm(*bias, x, w.t()) : at::mm(x, w.t());
    return {out, xa};
  }
  auto out = bias.has_value() ? at::addmm(*bias, x, weight.t()) : at::mm(x, weight.t());  // (M, N)
  out.addmm_(xa, lora_B.t(), /*beta=*/1, /*alpha=*/scale);                               // out += s xa B^T
  return {out, xa};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> lora_bwd_cpu(const at::Tensor& grad_out, const at::Tensor& x,
                                                            const at::Tensor& xa, const at::Tensor& weight,
                                                            const at::Tensor& lora_A, const at::Tensor& lora_B,
                                                            double scale) {
  check_2d(grad_out, "grad_out");
  check_2d(x, "x");
  check_2d(xa, "xa");
  auto dxa = at::mm(grad_out, lora_B).mul_(scale);     // (M, r)
  auto grad_B = at::mm(grad_out.t(), xa).mul_(scale);  // (N, r)
  auto grad_A = at::mm(dxa.t(), x);                    // (r, K)
  at::Tensor grad_x;
  if (fold(x.size(0), weight.size(0), weight.size(1))) {
    grad_x = at::mm(grad_out, folded_weight(weight, lora_A, lora_B, scale));  // dY W' = dY W + dXA A
  } else {
    grad_x = at::mm(grad_out, weight);   // (M, K)
    grad_x.addmm_(dxa, lora_A);          // dX += dXA A, in place
  }
  return {grad_x, grad_A, grad_B};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(vlmteach_fast, m) {
  m.def("_lora_fwd_cpu(Tensor x, Tensor weight, Tensor? bias, Tensor lora_A, Tensor lora_B, float scale)"
        " -> (Tensor, Tensor)");
  m.def("_lora_bwd_cpu(Tensor grad_out, Tensor x, Tensor xa, Tensor weight, Tensor lora_A, Tensor lora_B,"
        " float scale) -> (Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(vlmteach_fast, CPU, m) {
  m.impl("_lora_fwd_cpu", &lora_fwd_cpu);
  m.impl("_lora_bwd_cpu", &lora_bwd_cpu);
}

}  // namespace vlmteach_fast

// Importable as a Python module so `import vlmteach_fast._C_cpu` loads the library and registers the ops.
PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.attr("torch_version") = std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR);
}
