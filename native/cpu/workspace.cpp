// Per-thread kernel workspaces (workspace.h): allocation, the calling thread's lookup, and the
// test hooks. The pool (runtime.cpp) owns its workers' workspaces; other threads own theirs
// through a thread_local, freed when the thread exits.
#include "patentgpt/workspace.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <new>

#include "patentgpt/paged_attention.h"
#include "patentgpt/runtime.h"

namespace pg {

namespace {

std::atomic<int64_t> fail_after{-1};  // test hook: successes left before failing; < 0 never
std::atomic<int64_t> blocks_allocated{0};

void* alloc_block(size_t bytes, std::string& err, const char* what) {
  bytes = std::max<size_t>(64, (bytes + 63) / 64 * 64);
  int64_t f = fail_after.load(std::memory_order_relaxed);
  while (f > 0 && !fail_after.compare_exchange_weak(f, f - 1)) {
  }
  void* p = nullptr;
  if (f == 0 || posix_memalign(&p, 64, bytes) != 0 || p == nullptr) {
    err = "out of memory: could not reserve " + std::to_string(bytes) + " bytes of kernel workspace (" + what +
          "); use fewer threads (setNumThreads) or free memory";
    return nullptr;
  }
  blocks_allocated.fetch_add(1, std::memory_order_relaxed);
  return p;
}

thread_local Workspace* tls_workspace = nullptr;

// A non-pool thread's own workspace, destroyed with the thread.
struct Owned {
  Workspace* ws = nullptr;
  ~Owned() {
    if (tls_workspace == ws) tls_workspace = nullptr;
    workspace_destroy(ws);
  }
};
thread_local Owned tls_owned;

}  // namespace

WorkspaceSizes workspace_sizes() {
  WorkspaceSizes s = gemm_workspace_sizes();
  // The fused and the paged attention kernels never run at once on one thread: one block serves both.
  s.attn = std::max(attention_workspace_floats(), static_cast<size_t>(paged_attention_workspace_floats()));
  return s;
}

Workspace* workspace_create(std::string& err) {
  static const WorkspaceSizes s = workspace_sizes();
  std::unique_ptr<Workspace, WorkspaceDeleter> ws(new (std::nothrow) Workspace{});
  if (!ws) {
    err = "out of memory: could not reserve a kernel workspace";
    return nullptr;
  }
  if (!(ws->gemm_a = static_cast<float*>(alloc_block(s.gemm_a * sizeof(float), err, "gemm A panels"))) ||
      !(ws->gemm_b = static_cast<float*>(alloc_block(s.gemm_b * sizeof(float), err, "gemm B panels"))) ||
      !(ws->attn = static_cast<float*>(alloc_block(s.attn * sizeof(float), err, "attention tiles"))))
    return nullptr;
  void* units = alloc_block(s.gemm_units * sizeof(std::atomic<int64_t>), err, "gemm progress flags");
  if (units == nullptr) return nullptr;
  ws->gemm_units = new (units) std::atomic<int64_t>[s.gemm_units];
  return ws.release();
}

void workspace_destroy(Workspace* ws) {
  if (ws == nullptr) return;
  std::free(ws->gemm_a);
  std::free(ws->gemm_b);
  std::free(ws->attn);
  std::free(ws->gemm_units);  // std::atomic<int64_t> is trivially destructible
  delete ws;
}

Workspace* this_thread_workspace() { return tls_workspace; }
void set_thread_workspace(Workspace* ws) { tls_workspace = ws; }

std::string reserve_workspace() {
  std::string err;
  if (tls_workspace == nullptr) {
    Workspace* ws = workspace_create(err);
    if (ws == nullptr) return err;
    tls_owned.ws = ws;
    tls_workspace = ws;
  }
  return pool_reservation_error();
}

Workspace& thread_workspace() {
  if (Workspace* ws = tls_workspace) return *ws;
  // Only a C++ embedder's own thread gets here (every JS thread reserved at addon load).
  std::string err = reserve_workspace();
  if (tls_workspace == nullptr) {
    std::fprintf(stderr, "patentgpt: a kernel ran on a thread without a workspace and none could be reserved: %s\n",
                 err.c_str());
    std::abort();
  }
  return *tls_workspace;
}

void workspace_fail_allocations_after(int64_t n) { fail_after.store(n < 0 ? -1 : n); }
int64_t workspace_blocks_allocated() { return blocks_allocated.load(); }

}  // namespace pg
