// Per-thread scratch of the CPU kernels, reserved by the runtime outside them.
//
// "Kernels do not allocate": every thread that runs kernels owns one Workspace, a 64-byte-aligned
// block per purpose whose size is fixed by the kernels' blocking constants (the GEMM's mc/kc/nc
// over every ISA, the attention tiles at kMaxHeadDim), never by a call's shape. The pool reserves
// one for each of its workers when it is sized (set_num_threads, or its first use); any other
// thread that calls kernels (the JS main thread, a worker_thread, a test's main) reserves its own
// with reserve_workspace(), which the addon's initialisation calls on every JS thread that loads it.
// Kernels only look their thread's up, once per call or task. A failed reservation is an error
// string for the caller to report (E_NATIVE_OOM in JS), never an abort.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>

namespace pg {

// Largest head dimension attention accepts: its tile scratch is reserved for this size. The
// presets use 128; bindings refuse larger D before calling the kernels.
constexpr int64_t kMaxHeadDim = 256;

struct Workspace {
  float* gemm_a;                    // packed A blocks (two), or op(A) rows on the few-rows path
  float* gemm_b;                    // this thread's packed B block
  std::atomic<int64_t>* gemm_units;  // per compute unit: progress flags of a product this thread runs
  float* attn;                      // attention tile scratch (fused and paged attention)
};

// Floats (flags for units) of each block, as the kernels' files bound them (gemm.cpp, attention.cpp).
struct WorkspaceSizes {
  size_t gemm_a, gemm_b, gemm_units, attn;
};
WorkspaceSizes gemm_workspace_sizes();      // gemm_a, gemm_b, gemm_units filled
size_t attention_workspace_floats();        // attn
WorkspaceSizes workspace_sizes();           // all of them

// A new workspace, or nullptr with err set (nothing is left allocated then).
Workspace* workspace_create(std::string& err);
void workspace_destroy(Workspace* ws);
struct WorkspaceDeleter {
  void operator()(Workspace* ws) const { workspace_destroy(ws); }
};

// The calling thread's workspace: a pool worker's own, or what reserve_workspace() gave this
// thread. Kernels call it once per call or task. On a thread that never reserved one (a C++
// embedder's own thread; unreachable from JS, whose threads all reserve at addon load) it
// reserves one then, and stops the process with a message if even that fails.
Workspace& thread_workspace();
Workspace* this_thread_workspace();  // nullptr when none was reserved
void set_thread_workspace(Workspace* ws);  // the pool, for its workers

// Reserves the calling thread's workspace (once; kept until the thread exits) and starts the
// pool, reserving its workers'. Returns an empty string, or why not (out of memory).
std::string reserve_workspace();

// Starts the pool if it has not started; returns why it runs on fewer threads than asked (its
// workers' workspaces could not all be reserved), or an empty string. (runtime.cpp)
std::string pool_reservation_error();

// Test hooks: after `n` more block allocations succeed, every one fails until this is called with
// n < 0 (the default: none fail); and how many blocks have been allocated in this process so far.
void workspace_fail_allocations_after(int64_t n);
int64_t workspace_blocks_allocated();

}  // namespace pg
