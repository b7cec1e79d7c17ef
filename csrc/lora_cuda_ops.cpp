// CUDA ops of the fused LoRA linear y = x W^T + b + s (x A^T) B^T, registered as torch.library ops
// vlmteach_fast::_lora_fwd_cuda and vlmteach_fast::_lora_bwd_cuda (Python side: vlmteach_fast/ops/lora.py).
// The large GEMMs (x W^T, dY W) go to cuBLAS through ATen; the rank-r terms are added in place by
// rank_update_cuda (lora_cuda.cu). Where Triton is available, its kernels (kernels/lora.py) are preferred: they
// fold the update into the base GEMM's epilogue.
#include <c10/cuda/CUDAGuard.h>
#include <ATen/ATen.h>
#include <pybind11/pybind11.h>
#include <torch/version.h>
#include <torch/library.h>

namespace vlmteach_fast {

void rank_update_cuda(at::Tensor& out, const at::Tensor& p, const at::Tensor& q, double scale);

namespace {

std::tuple<at::Tensor, at::Tensor> lora_fwd_cuda(const at::Tensor& x, const at::Tensor& weight,
                                                 const std::optional<at::Tensor>& bias, const at::Tensor& lora_A,
                                                 const at::Tensor& lora_B, double scale) {
  const c10::cuda::CUDAGuard guard(x.device());
  auto xa = at::mm(x, lora_A.t());                                                       // (M, r)
  auto out = bias.has_value() ? at::addmm(*bias, x, weight.t()) : at::mm(x, weight.t());  // (M, N)
  rank_update_cuda(out, xa, lora_B.t(), scale);                                               // out += s xa B^T
  return {out, xa};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> lora_bwd_cuda(const at::Tensor& grad_out, const at::Tensor& x,
                                                             const at::Tensor& xa, const at::Tensor& weight,
                                                             const at::Tensor& lora_A, const at::Tensor& lora_B,
                                                             double scale) {
  const c10::cuda::CUDAGuard guard(x.device());
  auto dxa = at::mm(grad_out, lora_B).mul_(scale);     // (M, r)
  auto grad_B = at::mm(grad_out.t(), xa).mul_(scale);  // (N, r)
  auto grad_A = at::mm(dxa.t(), x);                    // (r, K)
  auto grad_x = at::mm(grad_out, weight);              // (M, K)
  rank_update_cuda(grad_x, dxa, lora_A, 1.0);               // dX += dXA A, in place
  return {grad_x, grad_A, grad_B};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(vlmteach_fast, m) {
  m.def("_lora_fwd_cuda(Tensor x, Tensor weight, Tensor? bias, Tensor lora_A, Tensor lora_B, float scale)"
        " -> (Tensor, Tensor)");
  m.def("_lora_bwd_cuda(Tensor grad_out, Tensor x, Tensor xa, Tensor weight, Tensor lora_A, Tensor lora_B,"
        " float scale) -> (Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(vlmteach_fast, CUDA, m) {
  m.impl("_lora_fwd_cuda", &lora_fwd_cuda);
  m.impl("_lora_bwd_cuda", &lora_bwd_cuda);
}

}  // namespace vlmteach_fast

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.attr("torch_version") = std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR);
}
