// The device caching allocator's bookkeeping over a host backend that counts its calls and can
// be told to fail (an out-of-memory device), so it is checked on machines without a GPU.
#include <cstdlib>
#include <string>

#include "check.h"
#include "patentgpt/caching_allocator.h"

namespace {

struct CountingBackend {
  size_t limit = size_t(1) << 40;  // bytes the fake device holds
  size_t held = 0;
  int allocs = 0, frees = 0;
  std::unordered_map<void*, size_t> sizes;
  void* raw_alloc(size_t bytes, std::string& err) {
    if (held + bytes > limit) {
      err = "out of memory";
      return nullptr;
    }
    void* p = std::malloc(bytes);
    held += bytes;
    sizes[p] = bytes;
    ++allocs;
    return p;
  }
  void raw_free(void* p) {
    held -= sizes.at(p);
    sizes.erase(p);
    std::free(p);
    ++frees;
  }
};

using Allocator = pg::CachingAllocator<CountingBackend>;

}  // namespace

TEST(size_classes_round_up_by_at_most_an_eighth) {
  CHECK(Allocator::rounded(0) == 512);
  CHECK(Allocator::rounded(1) == 512);
  CHECK(Allocator::rounded(513) == 1024);
  CHECK(Allocator::rounded(1 << 20) == (1 << 20));
  CHECK(Allocator::rounded((1 << 20) + 1) == (1 << 20) + (1 << 17));
  for (size_t b : {size_t(3) << 20, size_t(123456789), size_t(5) << 30}) {
    size_t r = Allocator::rounded(b);
    CHECK(r >= b && r <= b + b / 8 + 512);
  }
}

TEST(a_freed_block_is_reused_without_calling_the_backend) {
  Allocator a;
  std::string err;
  void* p = a.allocate(1000, err);
  CHECK(p != nullptr);
  CHECK(a.deallocate(p));
  for (int step = 0; step < 100; ++step) {  // a training loop asking for the same size each step
    void* q = a.allocate(900, err);        // same class as 1000
    CHECK(q == p);
    CHECK(a.deallocate(q));
  }
  auto s = a.stats();
  CHECK(a.backend().allocs == 1);
  CHECK(s.cache_hits == 100);
  CHECK(s.allocated_bytes == 0);
  CHECK(s.cached_bytes == 1024);
  CHECK(s.reserved_bytes == 1024);
}

TEST(release_gives_cached_blocks_back) {
  Allocator a;
  std::string err;
  void* p = a.allocate(4096, err);
  void* q = a.allocate(8192, err);
  CHECK(a.deallocate(p));
  a.release_cached();
  CHECK(a.backend().frees == 1);
  CHECK(a.backend().held == 8192);
  auto s = a.stats();
  CHECK(s.cached_bytes == 0 && s.allocated_bytes == 8192 && s.reserved_bytes == 8192);
  CHECK(a.deallocate(q));
}

TEST(out_of_memory_empties_the_cache_and_retries_once) {
  Allocator a;
  a.backend().limit = 3 << 20;
  std::string err;
  void* p = a.allocate(2 << 20, err);
  CHECK(p != nullptr);
  CHECK(a.deallocate(p));                   // 2 MiB cached
  void* q = a.allocate(3 << 20, err);       // fits only once the cached block is given back
  CHECK(q != nullptr);
  CHECK(a.stats().oom_retries == 1);
  CHECK(a.stats().cached_bytes == 0);
  void* r = a.allocate(1 << 20, err);       // nothing cached: fails with a message naming the size
  CHECK(r == nullptr);
  CHECK(err.find("1048576 bytes") != std::string::npos);
  CHECK(err.find("out of memory") != std::string::npos);
  CHECK(a.deallocate(q));
}

TEST(foreign_pointers_are_refused) {
  Allocator a;
  int x = 0;
  CHECK(!a.deallocate(&x));
  CHECK(a.deallocate(nullptr));
}

TEST(a_cap_on_cached_bytes_frees_past_it) {
  Allocator a;
  a.set_max_cached(1024);
  std::string err;
  void* p = a.allocate(1024, err);
  void* q = a.allocate(1024 * 8, err);
  CHECK(a.deallocate(p));  // fits under the cap: cached
  CHECK(a.deallocate(q));  // would exceed it: freed
  CHECK(a.backend().frees == 1);
  CHECK(a.stats().cached_bytes == 1024);
  CHECK(a.stats().peak_reserved_bytes == 1024 + 8192);
}
