// The CPU build of every kernel (feature `cuda-emulation`): one translation
// unit with all kernels/*.cu, and one C entry point that runs a kernel by
// name over a grid, for the Rust side of backend/cuda/emu.rs.
#include "../common.cuh"

#include "../adam.cu"
#include "../batch_norm.cu"
#include "../conv2d.cu"
#include "../copy.cu"
#include "../elementwise.cu"
#include "../index.cu"
#include "../matmul.cu"
#include "../pool.cu"
#include "../reduce.cu"
#include "../softmax.cu"
#include "../attention.cu"  // last: it defines RW and KT

#include <cstring>
#include <string>

namespace {
struct Entry {
    const char* name;
    void (*fn)(const KernelArgs);
};

#define KILN_ENTRY(name) {#name, name}
const Entry ENTRIES[] = {
    KILN_ENTRY(adam_update_f32),
    KILN_ENTRY(attention_fwd_f32),
    KILN_ENTRY(attention_bwd_d_f32),
    KILN_ENTRY(attention_bwd_dq_f32),
    KILN_ENTRY(attention_bwd_dkv_f32),
    KILN_ENTRY(batch_norm_stats_f32),
    KILN_ENTRY(batch_norm_apply_f32),
    KILN_ENTRY(batch_norm_bwd_sums_f32),
    KILN_ENTRY(batch_norm_bwd_dx_f32),
    KILN_ENTRY(conv2d_fwd_f32),
    KILN_ENTRY(conv2d_bwd_input_f32),
    KILN_ENTRY(conv2d_bwd_weight_f32),
    KILN_ENTRY(conv2d_fwd_f16),
    KILN_ENTRY(conv2d_bwd_input_f16),
    KILN_ENTRY(conv2d_bwd_weight_f16),
    KILN_ENTRY(copy_strided_f32),
    KILN_ENTRY(copy_cast_f32_i64),
    KILN_ENTRY(copy_cast_i64_f32),
    KILN_ENTRY(copy_strided_f16),
    KILN_ENTRY(copy_cast_f32_f16),
    KILN_ENTRY(copy_cast_f16_f32),
    KILN_ENTRY(elementwise_unary_f32),
    KILN_ENTRY(elementwise_binary_f32),
    KILN_ENTRY(elementwise_where_f32),
    KILN_ENTRY(index_gather_f32),
    KILN_ENTRY(index_select_f32),
    KILN_ENTRY(index_add_f32),
    KILN_ENTRY(matmul_fwd_f32),
    KILN_ENTRY(matmul_fwd_f16),
    KILN_ENTRY(avg_pool2d_fwd_f32),
    KILN_ENTRY(avg_pool2d_bwd_f32),
    KILN_ENTRY(max_pool2d_indices_f32),
    KILN_ENTRY(reduce_rows_f32),
    KILN_ENTRY(softmax_fwd_f32),
};
}  // namespace

// Runs kernel `name` over grid × block; 0 on success, 1 for an unknown name.
extern "C" int kiln_emu_launch(const char* name, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                               unsigned bz, size_t smem, const KernelArgs* args) {
    for (const Entry& e : ENTRIES) {
        if (std::strcmp(e.name, name) == 0) {
            const KernelArgs a = *args;
            cuemu::launch(dim3(gx, gy, gz), dim3(bx, by, bz), smem, [&] { e.fn(a); });
            return 0;
        }
    }
    return 1;
}

// Every entry point, newline-separated (the Rust side checks it against the
// list NVRTC compiles).
extern "C" const char* kiln_emu_entries() {
    static std::string all = [] {
        std::string s;
        for (const Entry& e : ENTRIES) (s += e.name) += '\n';
        return s;
    }();
    return all.c_str();
}
