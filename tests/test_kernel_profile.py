"""Where a profiled step's GPU time goes (training/kernel_profile.py): kernel kinds from real kernel names, and the
summary's arithmetic (busy time, busy share, the shares by kind, the ranking)."""

from __future__ import annotations

import pytest

from psp_hub.training.kernel_profile import KINDS, kernel_kind, kernel_summary

# Names as torch.profiler reports them on CUDA (ATen, cuDNN, cuBLAS/nvjet, MAGMA, inductor)
NAMES = {
    "sm90_xmma_fprop_implicit_gemm_bf16bf16_bf16f32_f32_nhwckrsc_nhwc_tilesize128x128x64": "conv_matmul",
    "sm90_xmma_wgrad_implicit_gemm_indexed_bf16bf16_bf16f32_f32_nhwckrsc_nhwc": "conv_matmul",
    "nvjet_hsh_128x256_64x4_1x2_h_bz_coopA_NNT": "conv_matmul",
    "magma_sgemmEx_kernel<float, float, float, 1, 0, 6, 3, 5, 3, 3>": "conv_matmul",
    "triton_tem_fused_bmm_3": "conv_matmul",
    "void at::native::direct_copy_kernel_cuda(at::TensorIteratorBase&)": "copy",
    "void cudnn::ops::nchwToNhwcKernel<__nv_bfloat16, __nv_bfloat16, float, false, true>": "copy",
    "Memcpy HtoD (Pageable -> Device)": "copy",
    "void at::native::vectorized_elementwise_kernel<4, at::native::FillFunctor<float>, std::array<char*, 1ul>>": "copy",
    "triton_poi_fused_add_convolution_leaky_relu_mul_0": "elementwise",  # a bias add, named after the conv it follows
    "void at::native::vectorized_elementwise_kernel<4, at::native::CUDAFunctor_add<c10::BFloat16>>": "elementwise",
    "void at::native::(anonymous namespace)::upsample_bilinear2d_out_frame<float, float>": "elementwise",
    "triton_red_fused__to_copy_mean_pow_rsqrt_1": "reduction",
    "triton_per_fused_sum_2": "reduction",
    "void at::native::reduce_kernel<512, 1, at::native::ReduceOp<float, at::native::MeanOps<float, float>>>": "reduction",
    "void (anonymous namespace)::softmax_warp_forward<c10::BFloat16, float, 7, false>": "reduction",
    "void at::native::_scatter_gather_elementwise_kernel": "elementwise",
    "ncclDevKernel_AllReduce_Sum_f32_RING_LL": "communication",
    "void at_cuda_detail::cub::DeviceRadixSortOnesweepKernel": "other",
}


@pytest.mark.parametrize("name", list(NAMES))
def test_each_kernel_gets_its_kind(name):
    assert kernel_kind(name) == NAMES[name]


def test_the_summary_adds_up():
    step = [
        ("sm90_xmma_fprop_implicit_gemm_bf16", 500.0),
        ("sm90_xmma_fprop_implicit_gemm_bf16", 100.0),
        ("void at::native::direct_copy_kernel_cuda(at::TensorIteratorBase&)", 300.0),
        ("triton_poi_fused_add_convolution_mul_0", 100.0),
    ]
    s = kernel_summary(step * 2, wall_s=0.004, steps=2)  # 2 ms of wall time a step, 1 ms of kernels
    assert s["profiled_steps"] == 2 and s["kernels_per_step"] == 4
    assert s["wall_ms_per_step"] == 2.0 and s["gpu_busy_ms_per_step"] == 1.0 and s["gpu_busy_share"] == 0.5
    assert list(s["gpu_time_shares"]) == list(KINDS)
    shares = {"copy": 0.3, "conv_matmul": 0.6, "reduction": 0.0, "elementwise": 0.1, "communication": 0.0, "other": 0.0}
    assert s["gpu_time_shares"] == shares
    first, second, third = s["top_kernels"]
    assert (first["kind"], first["ms_per_step"], first["calls_per_step"]) == ("conv_matmul", 0.6, 2.0)
    assert (second["kind"], second["ms_per_step"]) == ("copy", 0.3) and third["kind"] == "elementwise"
    # no GPU (a CPU run): nothing to share out, and no busy share rather than a zero that looks measured
    none = kernel_summary([], wall_s=0.5, steps=5)
    assert none["gpu_busy_share"] is None and none["gpu_time_shares"] == {} and none["top_kernels"] == []
