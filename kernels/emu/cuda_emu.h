// cuda_emu.h: runs kiln's CUDA C++ kernels on the CPU (g++ -std=c++20) so
// their logic is tested where no GPU exists. It models what the kernels use:
// blocks on worker threads; the CUDA threads of a block as fibers
// (makecontext + _setjmp/_longjmp) that switch at __syncthreads and warp
// shuffles; `__shared__` as `static thread_local`; atomics on std::atomic_ref.
// It says nothing about speed, coalescing or the memory model.
// Rules for kernel files (so both compilers accept them): no system
// includes; `extern "C"` entry points; dynamic shared memory through
// KILN_DYN_SHARED; every live lane of a warp reaches each shuffle.
#pragma once
#include <algorithm>
#include <atomic>
#include <cmath>
#include <csetjmp>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <thread>
#include <ucontext.h>
#include <vector>

struct uint3 {
    unsigned x, y, z;
};
struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __launch_bounds__(...)
#define __restrict__ __restrict
#define __shared__ static thread_local
#define KILN_DYN_SHARED(T, name) T* name = reinterpret_cast<T*>(::cuemu::ctx->dyn_smem)

inline thread_local uint3 threadIdx, blockIdx;
inline thread_local dim3 blockDim, gridDim;
constexpr int warpSize = 32;

namespace cuemu {

struct Fiber {
    ucontext_t uc;
    jmp_buf jb;
    uint3 tid;
    bool done, started;
};

struct Ctx {
    unsigned nt = 0, alive = 0, arrived = 0, gen = 0;
    std::vector<unsigned> w_alive, w_arrived, w_gen;
    std::vector<Fiber> fib;
    std::vector<std::unique_ptr<char[]>> stacks;
    std::vector<uint64_t> xchg;
    std::vector<unsigned char> dyn;
    unsigned char* dyn_smem = nullptr;
    jmp_buf sched;
    unsigned cur = 0;
    void (*tramp_body)(void*) = nullptr;
    void* tramp_arg = nullptr;

    void yield() {
        if (!_setjmp(fib[cur].jb)) _longjmp(sched, 1);
    }
    void wait_gen(const unsigned& g, unsigned seen) {
        while (g == seen) yield();
    }
    void sync_block();
    void sync_warp();
    void thread_exit();
};

inline thread_local Ctx* ctx = nullptr;
inline thread_local unsigned ltid = 0;  // linear thread id inside the block

inline void Ctx::sync_block() {
    unsigned seen = gen;
    if (++arrived == alive) {
        arrived = 0;
        ++gen;
        return;
    }
    wait_gen(gen, seen);
}

inline void Ctx::sync_warp() {
    unsigned w = ltid / 32, seen = w_gen[w];
    if (++w_arrived[w] == w_alive[w]) {
        w_arrived[w] = 0;
        ++w_gen[w];
        return;
    }
    wait_gen(w_gen[w], seen);
}

// Exited threads stop counting at barriers, as on hardware.
inline void Ctx::thread_exit() {
    fib[cur].done = true;
    --alive;
    unsigned w = ltid / 32;
    --w_alive[w];
    if (arrived && arrived == alive) {
        arrived = 0;
        ++gen;
    }
    if (w_arrived[w] && w_arrived[w] == w_alive[w]) {
        w_arrived[w] = 0;
        ++w_gen[w];
    }
}

inline void fiber_entry() {
    Ctx& c = *ctx;
    c.tramp_body(c.tramp_arg);
    c.thread_exit();
    _longjmp(c.sched, 1);
}

inline unsigned worker_count() {
    return std::max(1u, std::thread::hardware_concurrency());
}

// Runs `body` as every thread of every block of the grid.
template <class F>
void launch(dim3 grid, dim3 block, size_t dyn_bytes, F&& body) {
    const unsigned nt = block.x * block.y * block.z;
    const unsigned nblocks = grid.x * grid.y * grid.z;
    // Per-thread stacks: kernels keep up to a few KiB of registers in arrays.
    constexpr size_t STACK = 64 * 1024;
    std::atomic<unsigned> next{0};
    auto worker = [&] {
        Ctx c;
        ctx = &c;
        blockDim = block;
        gridDim = grid;
        c.nt = nt;
        c.fib.resize(nt);
        c.xchg.resize(((nt + 31) / 32) * 32);
        c.dyn.resize(dyn_bytes + 64);
        c.dyn_smem = c.dyn.data() + (64 - reinterpret_cast<uintptr_t>(c.dyn.data()) % 64) % 64;
        for (unsigned t = 0; t < nt; ++t) c.stacks.emplace_back(new char[STACK]);
        c.tramp_body = [](void* p) { (*static_cast<std::remove_reference_t<F>*>(p))(); };
        c.tramp_arg = static_cast<void*>(&body);
        // One getcontext per worker (it is a system call): each fiber starts
        // from a copy of this template.
        ucontext_t tmpl;
        getcontext(&tmpl);
        for (unsigned b; (b = next.fetch_add(1)) < nblocks;) {
            blockIdx = {b % grid.x, (b / grid.x) % grid.y, b / (grid.x * grid.y)};
            c.alive = nt;
            c.arrived = 0;
            c.w_alive.assign((nt + 31) / 32, 0);
            c.w_arrived.assign((nt + 31) / 32, 0);
            c.w_gen.assign((nt + 31) / 32, 0);
            for (unsigned t = 0; t < nt; ++t) {
                Fiber& f = c.fib[t];
                f.tid = {t % block.x, (t / block.x) % block.y, t / (block.x * block.y)};
                f.done = false;
                f.started = false;
                ++c.w_alive[t / 32];
                f.uc = tmpl;
                f.uc.uc_stack.ss_sp = c.stacks[t].get();
                f.uc.uc_stack.ss_size = STACK;
                f.uc.uc_link = nullptr;
                makecontext(&f.uc, fiber_entry, 0);
            }
            for (unsigned left = nt; left;) {  // round-robin until every fiber finished
                for (unsigned t = 0; t < nt; ++t) {
                    if (c.fib[t].done) continue;
                    c.cur = t;
                    ltid = t;
                    threadIdx = c.fib[t].tid;
                    if (!_setjmp(c.sched)) {
                        Fiber& f = c.fib[t];
                        if (!f.started) {
                            f.started = true;
                            ucontext_t tmp;
                            swapcontext(&tmp, &f.uc);
                        } else {
                            _longjmp(f.jb, 1);
                        }
                    }
                    if (c.fib[t].done) --left;
                }
            }
        }
    };
    const unsigned nw = std::min(worker_count(), nblocks);
    std::vector<std::thread> ws;
    for (unsigned i = 1; i < nw; ++i) ws.emplace_back(worker);
    worker();
    for (auto& w : ws) w.join();
}

template <class T>
T shfl_impl(T v, unsigned (*src_of)(unsigned lane, int arg, int width), int arg, int width) {
    static_assert(sizeof(T) <= 8, "shuffle of >8-byte types not emulated");
    auto& c = *ctx;
    const unsigned lane = ltid % 32, base = ltid - lane;
    uint64_t slot = 0;
    std::memcpy(&slot, &v, sizeof(T));
    c.xchg[ltid] = slot;
    c.sync_warp();  // every lane published
    unsigned src = src_of(lane, arg, width);
    T r;
    std::memcpy(&r, &c.xchg[base + src], sizeof(T));
    c.sync_warp();  // every lane read before the slots are reused
    return r;
}

}  // namespace cuemu

inline void __syncthreads() {
    cuemu::ctx->sync_block();
}
inline void __syncwarp(unsigned = 0xffffffffu) {
    cuemu::ctx->sync_warp();
}

// `mask` is ignored: every live lane of the warp must call the shuffle.
template <class T>
T __shfl_xor_sync(unsigned, T v, int lane_mask, int width = 32) {
    return cuemu::shfl_impl(
        v, [](unsigned l, int m, int w) { unsigned s = l ^ m; return (s / w == l / w) ? s : l; }, lane_mask, width);
}
template <class T>
T __shfl_down_sync(unsigned, T v, unsigned d, int width = 32) {
    return cuemu::shfl_impl(
        v, [](unsigned l, int dd, int w) { unsigned s = l + dd; return (s / w == l / w) ? s : l; }, (int)d, width);
}

template <class T>
T atomicAdd(T* p, T v) {
    return std::atomic_ref<T>(*p).fetch_add(v);
}

inline float __uint_as_float(unsigned x) {
    float f;
    std::memcpy(&f, &x, 4);
    return f;
}
inline unsigned __float_as_uint(float f) {
    unsigned x;
    std::memcpy(&x, &f, 4);
    return x;
}
inline int __float_as_int(float f) {
    int x;
    std::memcpy(&x, &f, 4);
    return x;
}
inline float rsqrtf(float x) {
    return 1.0f / std::sqrt(x);
}
template <class T>
inline T min(T a, T b) {
    return a < b ? a : b;
}
template <class T>
inline T max(T a, T b) {
    return a > b ? a : b;
}
