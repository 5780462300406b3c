// kernels_binding.cpp: the PyTorch binding of kernels.cu, which attention.py builds with it through
// torch.utils.cpp_extension (the host C++ compiler builds this file, nvcc kernels.cu). It checks
// the tensors, allocates the outputs and calls the two launchers. The CUDA stream comes from
// Python (torch.cuda.current_stream().cuda_stream, passed on as a void*) and the caller sets the
// current device, so no CUDA header is needed, nor torch's CUDA ones. It includes only the torch
// headers it uses, not <torch/extension.h> (all of libtorch's C++ API): 13 s to compile on a
// 2-core CPU instead of 28 s.

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <torch/csrc/utils/pybind.h>  // pybind11 and its at::Tensor <-> torch.Tensor conversion

#include <cstdint>
#include <vector>

// kernels.cu: nullptr, or what went wrong
const char* flash_attention_forward(const void* q, const void* k, const void* v, void* o, float* lse,
                                    int batch, int heads, int N, int D, void* stream);
const char* flash_attention_backward(const void* q, const void* k, const void* v, const void* o, const void* dout,
                                     const float* lse, float* delta, void* dq, void* dk, void* dv,
                                     int batch, int heads, int N, int D, void* stream);

static void check_input(const at::Tensor& x, const char* name, const at::Tensor& like) {
  TORCH_CHECK(x.is_cuda(), name, " must be a CUDA tensor");
  TORCH_CHECK(x.scalar_type() == at::kBFloat16, name, " must be bfloat16, got ", x.scalar_type());
  TORCH_CHECK(x.dim() == 4 && x.is_contiguous(), name, " must be a contiguous (batch, heads, N, head_dim) tensor");
  TORCH_CHECK(x.sizes() == like.sizes(), name, " has shape ", x.sizes(), ", expected ", like.sizes());
  TORCH_CHECK(x.get_device() == like.get_device(), name, " is on another GPU");
  TORCH_CHECK(reinterpret_cast<uintptr_t>(x.data_ptr()) % 16 == 0, name, " must be 16-byte aligned");
}

static void check_launch(const char* error, const char* what) {
  TORCH_CHECK(error == nullptr, what, " failed: ", error);
}

// q, k, v: (B, H, N, D) bf16 -> o (B, H, N, D) bf16, lse (B, H, N) fp32
std::vector<at::Tensor> forward(at::Tensor q, at::Tensor k, at::Tensor v, int64_t stream) {
  check_input(q, "q", q);
  check_input(k, "k", q);
  check_input(v, "v", q);
  const int64_t D = q.size(3);
  TORCH_CHECK(D == 64 || D == 128, "kernels.cu has head dims 64 and 128, got ", D);
  auto o = at::empty_like(q);
  auto lse = at::empty({q.size(0), q.size(1), q.size(2)}, q.options().dtype(at::kFloat));
  if (q.numel() == 0) return {o, lse};
  check_launch(flash_attention_forward(q.data_ptr(), k.data_ptr(), v.data_ptr(), o.data_ptr(), lse.data_ptr<float>(),
                                       q.size(0), q.size(1), q.size(2), D, reinterpret_cast<void*>(stream)),
               "flash attention forward");
  return {o, lse};
}

// -> dq, dk, dv (B, H, N, D) bf16
std::vector<at::Tensor> backward(at::Tensor dout, at::Tensor q, at::Tensor k, at::Tensor v, at::Tensor o,
                                 at::Tensor lse, int64_t stream) {
  check_input(dout, "dout", q);
  check_input(q, "q", q);
  check_input(k, "k", q);
  check_input(v, "v", q);
  check_input(o, "o", q);
  TORCH_CHECK(lse.is_cuda() && lse.scalar_type() == at::kFloat && lse.is_contiguous(), "lse must be contiguous fp32 on the GPU");
  const int64_t D = q.size(3);
  TORCH_CHECK(D == 64 || D == 128, "kernels.cu has head dims 64 and 128, got ", D);
  auto dq = at::empty_like(q), dk = at::empty_like(k), dv = at::empty_like(v);
  auto delta = at::empty_like(lse);
  if (q.numel() == 0) return {dq, dk, dv};
  check_launch(flash_attention_backward(q.data_ptr(), k.data_ptr(), v.data_ptr(), o.data_ptr(), dout.data_ptr(),
                                        lse.data_ptr<float>(), delta.data_ptr<float>(), dq.data_ptr(), dk.data_ptr(),
                                        dv.data_ptr(), q.size(0), q.size(1), q.size(2), D, reinterpret_cast<void*>(stream)),
               "flash attention backward");
  return {dq, dk, dv};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "causal flash attention (FlashAttention-2), bf16, head dims 64 and 128";
  m.def("forward", &forward, "o, lse = forward(q, k, v, stream)");
  m.def("backward", &backward, "dq, dk, dv = backward(dout, q, k, v, o, lse, stream)");
}
