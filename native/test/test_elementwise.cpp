// Elementwise ops, reductions, casts and the thread pool against plain loops.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>
#if defined(__linux__)
#include <sched.h>
#endif

#include "check.h"
#include "patentgpt/ops.h"
#include "../cpu/half.h"
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

// The casts run vectorised over whole arrays (PG_CLONES); each element must equal the scalar
// conversion of half.h, over a sweep of f32 bit patterns (NaN, inf, subnormals, rounding ties) and
// every 16-bit pattern.
TEST(vectorised_casts_equal_the_scalar_conversions) {
  std::vector<float> f;
  for (uint64_t u = 0; u <= 0xffffffffull; u += 65521) {
    const uint32_t b = static_cast<uint32_t>(u);
    float x;
    std::memcpy(&x, &b, 4);
    f.push_back(x);
  }
  for (uint32_t b : {0x7f800000u, 0xff800000u, 0x7fc00001u, 0x7f800001u, 0x3f808000u, 0x3f818000u, 0x477ff000u,
                     0x477fefffu, 0x33000000u, 0x33000001u, 0x80000000u}) {
    float x;
    std::memcpy(&x, &b, 4);
    f.push_back(x);
  }
  const int64_t n = static_cast<int64_t>(f.size());
  std::vector<uint16_t> b16(n), h16(n);
  pg::cast_f32_to_bf16(b16.data(), f.data(), n);
  pg::cast_f32_to_f16(h16.data(), f.data(), n);
  for (int64_t i = 0; i < n; ++i) {
    CHECK(b16[i] == pg::half::f32_to_bf16(f[i]));
    CHECK(h16[i] == pg::half::f32_to_f16(f[i]));
  }
  std::vector<uint16_t> all(65536);
  for (int i = 0; i < 65536; ++i) all[i] = static_cast<uint16_t>(i);
  std::vector<float> wb(65536), wh(65536);
  pg::cast_bf16_to_f32(wb.data(), all.data(), 65536);
  pg::cast_f16_to_f32(wh.data(), all.data(), 65536);
  for (int i = 0; i < 65536; ++i) {
    const float eb = pg::half::bf16_to_f32(all[i]), eh = pg::half::f16_to_f32(all[i]);
    CHECK(std::memcmp(&wb[i], &eb, 4) == 0);
    CHECK(std::memcmp(&wh[i], &eh, 4) == 0);
  }
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

#if defined(__linux__)
// The CPUs this thread may run on and the first of them; false (the test skips, saying why) when
// there is only one.
bool two_cpus_allowed(cpu_set_t& allowed, int& first) {
  if (sched_getaffinity(0, sizeof allowed, &allowed) != 0) CPU_ZERO(&allowed);
  if (CPU_COUNT(&allowed) < 2) {
    std::printf("  (one CPU allowed: nothing to move to; skipped)\n");
    return false;
  }
  first = 0;
  while (!CPU_ISSET(first, &allowed)) ++first;
  return true;
}

cpu_set_t only(int cpu) {
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(cpu, &one);
  return one;
}

// Runs a two-chunk job whose worker moves onto `cpu` and takes back `allowed` (it stays there
// unless the balancer moves it); whether it was on `cpu` then.
bool put_worker_on(int cpu, const cpu_set_t& allowed) {
  const cpu_set_t one = only(cpu);
  bool placed = false;
  pg::parallel_for(2, 1, [&](int64_t b, int64_t) {
    if (b == 0) return;
    CHECK(sched_setaffinity(0, sizeof one, &one) == 0);
    CHECK(sched_setaffinity(0, sizeof allowed, &allowed) == 0);
    placed = sched_getcpu() == cpu;
  });
  return placed;
}

// A thread on the CPU it is told to leave moves to another one it may run on, and its affinity is
// what it was (a pool worker woken beside the job's caller does this); elsewhere nothing changes.
TEST(leave_cpu_moves_the_thread_off_that_cpu_and_keeps_its_affinity) {
  cpu_set_t allowed;
  int first;
  if (!two_cpus_allowed(allowed, first)) return;
  std::thread([&] {
    const cpu_set_t one = only(first);
    // Onto `first`, then free again (it stays there unless the balancer moves it at that moment).
    for (int tries = 0; tries < 100 && sched_getcpu() != first; ++tries) {
      CHECK(sched_setaffinity(0, sizeof one, &one) == 0);
      CHECK(sched_setaffinity(0, sizeof allowed, &allowed) == 0);
    }
    CHECK(sched_getcpu() == first);
    pg::leave_cpu(first + 1000);  // not this CPU: stays
    CHECK(sched_getcpu() == first);
    pg::leave_cpu(first);
    CHECK(sched_getcpu() != first);
    cpu_set_t now;
    CHECK(sched_getaffinity(0, sizeof now, &now) == 0);
    CHECK(CPU_EQUAL(&now, &allowed));
  }).join();
}

// A worker parked on the CPU of the thread that posts the next job (woken there, wake-affine, it
// would get that CPU only when a tick preempts the busy caller) runs its chunk on another CPU, and
// the caller yields once after posting (counted by caller_yields) so that it runs at once. Red
// without the yield.
TEST(a_worker_parked_on_the_callers_cpu_runs_its_chunk_elsewhere) {
  cpu_set_t allowed;
  int first;
  if (!two_cpus_allowed(allowed, first)) return;
  const cpu_set_t one = only(first);
  pg::set_num_threads(2);
  CHECK(sched_setaffinity(0, sizeof one, &one) == 0);  // the caller: on `first` for the test
  int placed_runs = 0, moved = 0;
  for (int tries = 0; tries < 20; ++tries) {
    // The worker onto `first`: it stays there and parks (the spin window is 200 us) before the
    // next job.
    const bool placed = put_worker_on(first, allowed);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    if (!placed) continue;
    ++placed_runs;
    const int64_t yields = pg::caller_yields();
    std::atomic<int> worker_cpu{-1};
    pg::parallel_for(2, 1, [&](int64_t b, int64_t) {
      if (b == 1) {
        worker_cpu = sched_getcpu();
        return;
      }
      const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(20);
      while (std::chrono::steady_clock::now() < until && worker_cpu.load() < 0) {
      }
    });
    if (worker_cpu.load() != first && pg::caller_yields() > yields) ++moved;
  }
  CHECK(sched_setaffinity(0, sizeof allowed, &allowed) == 0);
  CHECK(placed_runs >= 10);
  CHECK(moved == placed_runs);
}

// A worker spinning on the CPU of the thread that posts the next job (the caller moved onto it)
// steps off it where another CPU is idle, and the caller yields once so that it does so at once;
// where every CPU is busy (another thread spinning on the second CPU, on a machine that lets the
// pool use two) neither happens: there the moves fought the scheduler's balancing. Red without
// the step-off (no yields, the worker's chunk on the caller's CPU).
TEST(a_worker_spinning_on_the_callers_cpu_steps_off_only_where_a_cpu_is_idle) {
  cpu_set_t allowed;
  int first;
  if (!two_cpus_allowed(allowed, first)) return;
  const cpu_set_t one = only(first);
  pg::set_num_threads(2);
  // Jobs posted right after the worker was put on `first` (it spins there, 200 us): how many the
  // caller yielded for, and whether each of those ran the worker's chunk on another CPU.
  auto tries = [&](int n, int& yielded, bool& all_moved) {
    yielded = 0;
    all_moved = true;
    for (int t = 0; t < n; ++t) {
      put_worker_on(first, allowed);
      const int64_t yields = pg::caller_yields();
      std::atomic<int> worker_cpu{-1};
      pg::parallel_for(2, 1, [&](int64_t b, int64_t) {
        if (b == 1) worker_cpu = sched_getcpu();
      });
      if (pg::caller_yields() == yields) continue;
      ++yielded;
      all_moved = all_moved && worker_cpu.load() != first;
    }
  };
  CHECK(sched_setaffinity(0, sizeof one, &one) == 0);  // the caller: on `first` for the test
  int yielded;
  bool all_moved;
  tries(20, yielded, all_moved);
  CHECK(yielded >= 10);
  CHECK(all_moved);
  if (CPU_COUNT(&allowed) == 2) {
    std::atomic<bool> stop{false};
    std::thread busy([&] {
      cpu_set_t second = allowed;
      CPU_CLR(first, &second);
      CHECK(sched_setaffinity(0, sizeof second, &second) == 0);
      while (!stop.load()) {
      }
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    tries(20, yielded, all_moved);
    stop = true;
    busy.join();
    CHECK(yielded == 0);
  }
  CHECK(sched_setaffinity(0, sizeof allowed, &allowed) == 0);
}
#endif

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

// Binary ops read each operand at (i / inner) % size: a column (N, 1) against a trailing row (C)
// over (N, C), checked against plain loops, forward and the backward's local gradients.
TEST(binary_broadcast_patterns_match_plain_loops) {
  const int64_t N = 301, C = 129, n = N * C;
  auto a = pgtest::randn(N, 3), b = pgtest::randn(C, 4), g = pgtest::randn(n, 5);
  for (auto& v : b) v = 0.5f + std::fabs(v);
  std::vector<float> out(n), ref(n), da(n), db(n);
  pg::binary_forward(out.data(), a.data(), b.data(), n, N, C, C, 1, pg::BinaryOp::Div);
  for (int64_t i = 0; i < n; ++i) ref[i] = a[i / C] / b[i % C];
  CHECK_CLOSE(out, ref, n, 0, 0);
  pg::binary_backward(da.data(), db.data(), g.data(), a.data(), b.data(), n, N, C, C, 1, pg::BinaryOp::Div);
  for (int64_t i = 0; i < n; ++i) ref[i] = -g[i] * a[i / C] / (b[i % C] * b[i % C]);
  CHECK_CLOSE(db, ref, n, 1e-6, 1e-5);
  // The adjoint of the broadcast: db summed over rows, thread count independent.
  std::vector<float> red1(C), red2(C);
  std::vector<double> refd(C, 0.0);
  pg::set_num_threads(1);
  pg::sum_broadcast(red1.data(), db.data(), n, C, 1);
  pg::set_num_threads(2);
  pg::sum_broadcast(red2.data(), db.data(), n, C, 1);
  for (int64_t i = 0; i < n; ++i) refd[i % C] += db[i];
  std::vector<float> reff(refd.begin(), refd.end());
  CHECK_CLOSE(red1, reff, C, 1e-5, 1e-5);
  CHECK(std::memcmp(red1.data(), red2.data(), C * sizeof(float)) == 0);
}

TEST(where_and_unary_ops_match_plain_loops) {
  const int64_t n = 70001;
  auto x = pgtest::randn(n, 6, 4.0f), y = pgtest::randn(n, 7);
  std::vector<int32_t> cond(n);
  for (int64_t i = 0; i < n; ++i) cond[i] = (i % 3) == 0;
  std::vector<float> out(n), ref(n);
  const float s = 2.5f;  // a scalar b
  pg::where_forward(out.data(), cond.data(), x.data(), &s, n, n, 1, 1, 1);
  for (int64_t i = 0; i < n; ++i) ref[i] = cond[i] ? x[i] : s;
  CHECK_CLOSE(out, ref, n, 0, 0);
  pg::unary_forward(out.data(), x.data(), n, pg::UnaryOp::LogSigmoid, 0, 0);
  for (int64_t i = 0; i < n; ++i) ref[i] = static_cast<float>(-std::log1p(std::exp(-static_cast<double>(x[i]))));
  CHECK_CLOSE(out, ref, n, 1e-6, 1e-5);
  pg::unary_forward(out.data(), x.data(), n, pg::UnaryOp::Clamp, -1.0f, 2.0f);
  for (int64_t i = 0; i < n; ++i) ref[i] = std::min(std::max(x[i], -1.0f), 2.0f);
  CHECK_CLOSE(out, ref, n, 0, 0);
}

// (outer, D, inner) reductions and indexing against plain loops, identical on 1 and 2 threads.
TEST(dim_reductions_and_gather_scatter_match_plain_loops) {
  const int64_t outer = 7, D = 33, inner = 131, K = 40;
  auto x = pgtest::randn(outer * D * inner, 8);
  std::vector<float> s1(outer * inner), s2(outer * inner), mx(outer * inner), ref(outer * inner);
  std::vector<int32_t> at(outer * inner);
  pg::set_num_threads(1);
  pg::sum_dim_forward(s1.data(), x.data(), outer, D, inner, 1.0f);
  pg::set_num_threads(2);
  pg::sum_dim_forward(s2.data(), x.data(), outer, D, inner, 1.0f);
  CHECK(std::memcmp(s1.data(), s2.data(), s1.size() * sizeof(float)) == 0);
  pg::max_dim_forward(mx.data(), at.data(), x.data(), outer, D, inner);
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t j = 0; j < inner; ++j) {
      double s = 0;
      float m = x[o * D * inner + j];
      int32_t mi = 0;
      for (int64_t d = 0; d < D; ++d) {
        float v = x[(o * D + d) * inner + j];
        s += v;
        if (v > m) m = v, mi = static_cast<int32_t>(d);
      }
      ref[o * inner + j] = static_cast<float>(s);
      CHECK(mx[o * inner + j] == m && at[o * inner + j] == mi);
    }
  CHECK_CLOSE(s1, ref, ref.size(), 1e-5, 1e-5);
  std::vector<int32_t> index(outer * K * inner);
  for (size_t i = 0; i < index.size(); ++i) index[i] = static_cast<int32_t>((i * 7919) % D);
  std::vector<float> gathered(index.size()), acc1(x.size(), 0.0f), acc2(x.size(), 0.0f);
  pg::gather_forward(gathered.data(), x.data(), index.data(), outer, D, K, inner);
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t k = 0; k < K; ++k)
      for (int64_t j = 0; j < inner; ++j) {
        const int64_t r = (o * K + k) * inner + j;
        CHECK(gathered[r] == x[(o * D + index[r]) * inner + j]);
      }
  pg::set_num_threads(1);
  pg::scatter_add(acc1.data(), gathered.data(), index.data(), outer, D, K, inner);
  pg::set_num_threads(2);
  pg::scatter_add(acc2.data(), gathered.data(), index.data(), outer, D, K, inner);
  CHECK(std::memcmp(acc1.data(), acc2.data(), acc1.size() * sizeof(float)) == 0);
}

TEST(softmax_rows_sum_to_one_and_log_softmax_matches) {
  const int64_t N = 17, C = 1000;
  auto x = pgtest::randn(N * C, 9, 10.0f);
  std::vector<float> p(N * C), lp(N * C);
  pg::softmax_forward(p.data(), x.data(), N, C);
  pg::log_softmax_forward(lp.data(), x.data(), N, C);
  for (int64_t r = 0; r < N; ++r) {
    double s = 0;
    for (int64_t c = 0; c < C; ++c) {
      s += p[r * C + c];
      // lp carries f32 rounding of |x| ~ 30: relative, not absolute, agreement
      CHECK(std::fabs(std::exp(lp[r * C + c]) - p[r * C + c]) <= 1e-9 + 1e-5 * p[r * C + c]);
    }
    CHECK(std::fabs(s - 1.0) < 1e-5);
  }
}
