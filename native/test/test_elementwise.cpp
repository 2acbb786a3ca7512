// Elementwise ops, reductions, casts and the thread pool against plain loops.
#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>

#include "check.h"
#include "patentgpt/ops.h"
#include "patentgpt/runtime.h"

TEST(add_axpy_and_triad_match_plain_loops) {
  const int64_t n = 100003;  // not a multiple of any vector width
  auto a = pgtest::randn(n, 1), b = pgtest::randn(n, 2);
  std::vector<float> out(n), ref(n);
  pg::add_forward(out.data(), a.data(), b.data(), n);
  for (int64_t i = 0; i < n; ++i) ref[i] = a[i] + b[i];
  CHECK_CLOSE(out, ref, n, 0, 0);
  pg::axpy(out.data(), a.data(), -2.0f, n);
  for (int64_t i = 0; i < n; ++i) ref[i] += -2.0f * a[i];
  CHECK_CLOSE(out, ref, n, 1e-6, 1e-6);
  pg::triad(out.data(), a.data(), b.data(), 3.0f, n);
  for (int64_t i = 0; i < n; ++i) ref[i] = a[i] + 3.0f * b[i];
  CHECK_CLOSE(out, ref, n, 1e-6, 1e-6);
}

TEST(sums_are_accurate_and_thread_count_independent) {
  const int64_t n = (1 << 20) + 7;
  std::vector<float> x(n, 0.1f);
  double expect = static_cast<double>(0.1f) * n;
  pg::set_num_threads(1);
  double one = pg::sum(x.data(), n);
  pg::set_num_threads(2);
  double two = pg::sum(x.data(), n);
  CHECK(std::fabs(one - expect) < 1e-6 * expect);
  CHECK(one == two);
  double sq = pg::sum_squares(x.data(), n);
  CHECK(std::fabs(sq - expect * 0.1f) < 1e-6 * expect);
}

TEST(bf16_and_f16_round_trip) {
  float values[] = {1.0f, -2.5f, 65504.0f, 6.1035156e-05f, 5.9604645e-08f, 0.0f, 3.14159f};
  const int n = sizeof(values) / sizeof(values[0]);
  uint16_t half[n];
  float back[n];
  pg::cast_f32_to_f16(half, values, n);
  pg::cast_f16_to_f32(back, half, n);
  CHECK_CLOSE(back, values, n, 0, 1e-3);
  CHECK(half[2] == 0x7bff);  // largest finite half
  CHECK(half[4] == 0x0001);  // smallest subnormal
  pg::cast_f32_to_bf16(half, values, n);
  pg::cast_bf16_to_f32(back, half, n);
  CHECK_CLOSE(back, values, n, 1e-30, 1e-2);
}

TEST(parallel_for_covers_every_index_once) {
  pg::set_num_threads(2);
  const int64_t n = 12345;
  std::vector<std::atomic<int>> hits(n);
  for (int rep = 0; rep < 50; ++rep)
    pg::parallel_for(n, 100, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) hits[i]++;
    });
  for (int64_t i = 0; i < n; ++i) CHECK(hits[i] == 50);
}

// Back-to-back jobs hand over to spinning workers, jobs after a pause to parked ones (the spin
// window is 200 us), from the calling thread and from a second one (jobs run one at a time).
// Every other job has 2 chunks for 3 threads: one worker sits it out and must not run the next.
TEST(parallel_for_hands_over_to_spinning_and_parked_workers) {
  pg::set_num_threads(3);
  std::atomic<int64_t> total{0}, jobs{0};
  auto job = [&] {
    const int64_t n = 2 + (jobs++ & 1);
    pg::parallel_for(n, 1, [&](int64_t b, int64_t e) { total += e - b; });
    return n;
  };
  int64_t expect = 0;
  for (int rep = 0; rep < 20000; ++rep) expect += job();
  for (int rep = 0; rep < 20; ++rep) {
    std::this_thread::sleep_for(std::chrono::microseconds(rep % 2 == 0 ? 50 : 1000));
    expect += job();
  }
  std::atomic<int64_t> other_expect{0};
  std::thread other([&] { for (int rep = 0; rep < 5000; ++rep) other_expect += job(); });
  for (int rep = 0; rep < 5000; ++rep) expect += job();
  other.join();
  CHECK(total == expect + other_expect);
  pg::set_num_threads(2);
}
