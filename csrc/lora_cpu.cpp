// C++ CPU kernels for the fused LoRA linear y = x W^T + b + s (x A^T) B^T, registered as torch.library ops
// vlmteach_fast::_lora_fwd_cpu and vlmteach_fast::_lora_bwd_cpu (schemas below; Python: vlmteach_fast/ops/lora.py).
//
// PEFT computes base(x) + lora_B(lora_A(x)) * s: three GEMMs, two output-size temporaries (lora_B's output and its
// scaled copy) and an add. Here: one GEMM for the base (bias fused by addmm), one rank-r GEMM for xa = x A^T, and the
// rank-r update out += s * xa B^T done in place by an OpenMP loop (rank_update_), so nothing of output size is
// allocated beyond the output itself. Backward reuses the same in-place update for dX += dXA A.
#include <ATen/Parallel.h>
#include <ATen/ATen.h>
#include <pybind11/pybind11.h>
#include <torch/version.h>
#include <torch/library.h>

namespace vlmteach_fast {
namespace {

// out (M, N) row stride ldo  +=  scale * xa (M, R) @ bt (R, N); xa, bt contiguous.
// Each row of out stays in L1 while R contiguous axpys of length N stream over bt (R*N elements, L2-resident for
// the ranks LoRA uses: r=64, N=3072 fp32 is 768 KiB), which the compiler vectorizes.
template <typename T>
void rank_update_(T* out, int64_t ldo, const T* xa, const T* bt, int64_t M, int64_t N, int64_t R, T scale) {
  at::parallel_for(0, M, /*grain_size=*/16, [&](int64_t begin, int64_t end) {
    for (int64_t m = begin; m < end; ++m) {
      T* orow = out + m * ldo;
      const T* xrow = xa + m * R;
      for (int64_t j = 0; j < R; ++j) {
        const T c = scale * xrow[j];
        const T* brow = bt + j * N;
#pragma omp simd
        for (int64_t n = 0; n < N; ++n) orow[n] += c * brow[n];
      }
    }
  });
}

// out += scale * xa @ bt, choosing the hand loop for fp32/fp64 and BLAS for reduced precision (whose CPU kernels
// accumulate in fp32 internally; a hand loop in half would lose precision).
void rank_update(at::Tensor& out, const at::Tensor& xa, const at::Tensor& bt, double scale) {
  if ((out.scalar_type() == at::kFloat || out.scalar_type() == at::kDouble) && out.stride(1) == 1) {
    auto xa_c = xa.contiguous();
    auto bt_c = bt.contiguous();
    AT_DISPATCH_FLOATING_TYPES(out.scalar_type(), "rank_update_", [&] {
      rank_update_<scalar_t>(out.data_ptr<scalar_t>(), out.stride(0), xa_c.data_ptr<scalar_t>(),
                             bt_c.data_ptr<scalar_t>(), out.size(0), out.size(1), xa.size(1),
                             static_cast<scalar_t>(scale));
    });
  } else {
    out.addmm_(xa, bt, /*beta=*/1, /*alpha=*/scale);
  }
}

void check_2d(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.dim() == 2, name, " must be 2-D, got ", t.dim(), "-D");
  TORCH_CHECK(t.device().is_cpu(), name, " must be on the CPU, got ", t.device());
}

std::tuple<at::Tensor, at::Tensor> lora_fwd_cpu(const at::Tensor& x, const at::Tensor& weight,
                                                const std::optional<at::Tensor>& bias, const at::Tensor& lora_A,
                                                const at::Tensor& lora_B, double scale) {
  check_2d(x, "x");
  check_2d(weight, "weight");
  check_2d(lora_A, "lora_A");
  check_2d(lora_B, "lora_B");
  auto xa = at::mm(x, lora_A.t());                                                       // (M, r)
  auto out = bias.has_value() ? at::addmm(*bias, x, weight.t()) : at::mm(x, weight.t());  // (M, N)
  rank_update(out, xa, lora_B.t(), scale);                                               // out += s xa B^T
  return {out, xa};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> lora_bwd_cpu(const at::Tensor& grad_out, const at::Tensor& x,
                                                            const at::Tensor& xa, const at::Tensor& weight,
                                                            const at::Tensor& lora_A, const at::Tensor& lora_B,
                                                            double scale) {
  check_2d(grad_out, "grad_out");
  check_2d(x, "x");
  check_2d(xa, "xa");
  auto dxa = at::mm(grad_out, lora_B).mul_(scale);         // (M, r)
  auto grad_B = at::mm(grad_out.t(), xa).mul_(scale);      // (N, r)
  auto grad_A = at::mm(dxa.t(), x);                        // (r, K)
  auto grad_x = at::mm(grad_out, weight);                  // (M, K)
  rank_update(grad_x, dxa, lora_A, 1.0);                   // dX += dXA A, in place
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
