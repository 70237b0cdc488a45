// CUDA's execution model on the host, for the CuPy stand-in's kernels (compiled with g++).
//
// A launch runs its blocks one after another. A block's threads are fibers (ucontext): each runs
// until it must wait (__syncthreads, a warp shuffle, __syncwarp) or ends, and the scheduler then
// resumes the lowest-numbered thread that can go on, or the highest-numbered: the direction flips
// at every __syncthreads, and odd blocks start where even ones end. So the threads that consume a barrier's results run as far ahead of the
// others as a missing barrier lets them (and, in the next phase, the producers do): a read of
// shared memory that no barrier orders after its write sees the value from before. A barrier that
// not every thread reaches, or a shuffle on a partial warp, stops the launch with an error. What
// fibers cannot show: races between two plain accesses with no wait between them (fibers never
// preempt one another, so every read-modify-write is atomic here).
#pragma once
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>

#include <vector>

struct uint3 {
    unsigned int x, y, z;
};

namespace nnx {
struct Fiber {
    ucontext_t context;
    uint3 index;
    bool done;
    const unsigned* waits_on;  // a barrier's generation counter while waiting, else null
    unsigned seen;             // the generation it waits to see change
};
struct Block {
    std::vector<Fiber> fibers;
    std::vector<std::vector<char>> stacks;
    std::vector<uint64_t> shuffle_slots;
    std::vector<unsigned> warp_count, warp_generation;
    std::vector<unsigned char> dynamic_shared;
    ucontext_t scheduler;
    unsigned current = 0, threads = 0, barrier_count = 0, barrier_generation = 0;
    bool forward = true;  // resume the lowest-numbered runnable thread first
    bool released = true;  // a barrier let threads go on: scan for runnable ones from the start
    void (*body)(void*) = nullptr;
    void* closure = nullptr;
};
inline Block block;
inline uint3 block_index, block_dim, grid_dim;
inline char error[512];

// __shared__ variables are statics (blocks run one at a time); each is registered on first use, so
// that every block starts with its shared memory poisoned, as uninitialised as on a device.
struct Region {
    void* address;
    size_t bytes;
};
inline std::vector<Region> static_shared;
inline bool register_shared(void* address, size_t bytes) {
    static_shared.push_back(Region{address, bytes});
    memset(address, 0xff, bytes);
    return true;
}

inline void fail(const char* message) {
    if (!error[0]) snprintf(error, sizeof error, "%s (block %u,%u,%u)", message, block_index.x, block_index.y, block_index.z);
    swapcontext(&block.fibers[block.current].context, &block.scheduler);  // never resumed
}
inline unsigned thread_rank() {
    const uint3 t = block.fibers[block.current].index;
    return t.x + block_dim.x * (t.y + block_dim.y * t.z);
}
inline void wait_while(const unsigned* generation, unsigned seen) {
    Fiber& f = block.fibers[block.current];
    f.waits_on = generation;
    f.seen = seen;
    swapcontext(&f.context, &block.scheduler);
}
inline void warp_barrier(unsigned mask) {
    const unsigned warp = thread_rank() >> 5;
    if (mask != 0xffffffffu) fail("the stand-in emulates full-warp masks (0xffffffff) only");
    if ((warp + 1) * 32 > block.threads) fail("a warp-level call on a partial warp (blockDim not a multiple of 32)");
    const unsigned seen = block.warp_generation[warp];
    if (++block.warp_count[warp] == 32) {
        block.warp_count[warp] = 0;
        block.warp_generation[warp]++;
        block.released = true;
        return;
    }
    wait_while(&block.warp_generation[warp], seen);
}
template <typename V>
V shuffle(unsigned mask, V value, int source) {
    static_assert(sizeof(V) <= 8, "shuffles of values up to 8 bytes");
    const unsigned rank = thread_rank();
    memcpy(&block.shuffle_slots[rank], &value, sizeof(V));
    warp_barrier(mask);
    V out;
    memcpy(&out, &block.shuffle_slots[(rank & ~31u) | ((unsigned)source & 31u)], sizeof(V));
    warp_barrier(mask);
    return out;
}
inline void fiber_main() {
    block.body(block.closure);
    block.fibers[block.current].done = true;
}
inline bool runnable(const Fiber& f) { return !f.done && (f.waits_on == nullptr || *f.waits_on != f.seen); }

// Runs body(closure) as every thread of every block of the grid; returns 0, or 1 with `error` set.
inline int run_grid(uint3 grid, uint3 threads_per_block, size_t shared_bytes, void (*body)(void*), void* closure) {
    error[0] = 0;
    grid_dim = grid;
    block_dim = threads_per_block;
    const unsigned n = threads_per_block.x * threads_per_block.y * threads_per_block.z;
    block.threads = n;
    block.body = body;
    block.closure = closure;
    block.fibers.assign(n, Fiber{});
    if (block.stacks.size() < n) block.stacks.resize(n, std::vector<char>(64 * 1024));
    block.shuffle_slots.assign(n, 0);
    block.warp_count.assign((n + 31) / 32, 0);
    block.warp_generation.assign((n + 31) / 32, 0);
    for (unsigned bz = 0; bz < grid.z; bz++)
        for (unsigned by = 0; by < grid.y; by++)
            for (unsigned bx = 0; bx < grid.x; bx++) {
                block_index = uint3{bx, by, bz};
                block.dynamic_shared.assign(shared_bytes, 0xff);  // uninitialised: NaN for floats
                for (const Region& r : static_shared) memset(r.address, 0xff, r.bytes);
                block.barrier_count = 0;
                for (unsigned t = 0; t < n; t++) {
                    Fiber& f = block.fibers[t];
                    f.index = uint3{t % threads_per_block.x, (t / threads_per_block.x) % threads_per_block.y,
                                    t / (threads_per_block.x * threads_per_block.y)};
                    f.done = false;
                    f.waits_on = nullptr;
                    getcontext(&f.context);
                    f.context.uc_stack.ss_sp = block.stacks[t].data();
                    f.context.uc_stack.ss_size = block.stacks[t].size();
                    f.context.uc_link = &block.scheduler;
                    makecontext(&f.context, fiber_main, 0);
                }
                block.forward = (bx + by + bz) % 2 == 0;  // odd blocks start with the highest thread
                block.released = true;
                unsigned k = 0;  // the scan's position: threads before it cannot run until a release
                for (unsigned remaining = n; remaining > 0;) {
                    if (block.released) k = 0;
                    block.released = false;
                    unsigned t = 0;
                    bool found = false;
                    for (; k < n && !found; k++) {
                        t = block.forward ? k : n - 1 - k;
                        found = runnable(block.fibers[t]);
                    }
                    k--;
                    if (!found) {
                        snprintf(error, sizeof error,
                                 "deadlock: %u of %u threads of block (%u,%u,%u) wait at a __syncthreads() or a warp "
                                 "shuffle that the others never reach",
                                 remaining, n, bx, by, bz);
                        return 1;
                    }
                    block.current = t;
                    block.fibers[t].waits_on = nullptr;
                    swapcontext(&block.scheduler, &block.fibers[t].context);
                    if (error[0]) return 1;
                    if (block.fibers[t].done) remaining--;
                }
            }
    return 0;
}
}  // namespace nnx

#define threadIdx (nnx::block.fibers[nnx::block.current].index)
#define blockIdx (nnx::block_index)
#define blockDim (nnx::block_dim)
#define gridDim (nnx::grid_dim)
#define warpSize 32
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __align__(n) alignas(n)
#define __launch_bounds__(...)

inline void __syncthreads() {
    using nnx::block;
    const unsigned seen = block.barrier_generation;
    if (++block.barrier_count == block.threads) {
        block.barrier_count = 0;
        block.barrier_generation++;
        block.forward = !block.forward;
        block.released = true;
        return;
    }
    nnx::wait_while(&block.barrier_generation, seen);
}
inline void __syncwarp(unsigned mask = 0xffffffffu) { nnx::warp_barrier(mask); }
template <typename V>
V __shfl_sync(unsigned mask, V v, int lane, int width = 32) {
    if (width != 32) nnx::fail("the stand-in emulates shuffles of width 32 only");
    return nnx::shuffle(mask, v, lane);
}
template <typename V>
V __shfl_xor_sync(unsigned mask, V v, int lane_mask, int width = 32) {
    if (width != 32) nnx::fail("the stand-in emulates shuffles of width 32 only");
    return nnx::shuffle(mask, v, (int)(nnx::thread_rank() & 31u) ^ lane_mask);
}
template <typename V>
V __shfl_down_sync(unsigned mask, V v, unsigned delta, int width = 32) {
    if (width != 32) nnx::fail("the stand-in emulates shuffles of width 32 only");
    const unsigned lane = nnx::thread_rank() & 31u;
    const V other = nnx::shuffle(mask, v, (int)(lane + delta < 32 ? lane + delta : lane));
    return other;
}
// Fibers never preempt one another, so a read-modify-write is atomic here.
template <typename V>
V atomicAdd(V* address, V value) {
    const V old = *address;
    *address = old + value;
    return old;
}
template <typename V>
V atomicMax(V* address, V value) {
    const V old = *address;
    if (value > old) *address = value;
    return old;
}
inline float __int_as_float(int i) {
    float f;
    memcpy(&f, &i, 4);
    return f;
}
inline int __float_as_int(float f) {
    int i;
    memcpy(&i, &f, 4);
    return i;
}
template <typename V>
inline V max(V a, V b) {
    return a > b ? a : b;
}
template <typename V>
inline V min(V a, V b) {
    return a < b ? a : b;
}
