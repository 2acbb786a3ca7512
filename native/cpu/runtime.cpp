// The persistent thread pool and SIMD detection shared by every CPU kernel.
//
// Workers are started once. Between jobs each spins for a short while (spin_micros) and then
// parks on a condition variable: back-to-back calls (a decode step's layers, a training step's
// ops) find the workers awake instead of paying a futex wake-up, which on a VM can cost tens of
// microseconds per call, while an idle pool costs no CPU. The calling thread takes a share of
// the work and spins as briefly for the others to finish.
//
// The pool owns each worker's kernel workspace (workspace.h), reserved before the worker starts;
// a size whose workspaces cannot all be reserved is refused (set_num_threads) or cut down to what
// could be (first use), never a crash.
#include "patentgpt/runtime.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <mutex>
#include <thread>
#include <vector>

#include "patentgpt/workspace.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif
#if defined(__linux__)
#include <fcntl.h>
#include <sched.h>
#include <unistd.h>
#endif

namespace pg {

namespace {

// How long a worker waits for the next job, and the caller for the workers, before sleeping:
// PATENTGPT_SPIN_US (0 parks at once: for machines whose cores other processes need), 200 by default.
int64_t spin_micros() {
  static const int64_t us = [] {
    const char* env = std::getenv("PATENTGPT_SPIN_US");
    return env != nullptr && *env != '\0' ? std::max<int64_t>(0, std::atoll(env)) : 200;
  }();
  return us;
}

// Spins until ready() or spin_micros() have passed; returns ready().
template <class Ready>
bool spin_until(Ready&& ready) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(spin_micros());
  for (int i = 0;; ++i) {
    if (ready()) return true;
#if defined(__x86_64__) || defined(__i386__)
    _mm_pause();
#endif
    if ((i & 63) == 63) {
      if (std::chrono::steady_clock::now() > until) return ready();
      std::this_thread::yield();  // more threads than cores: let the one with work run here
    }
  }
}

// The CPU the calling thread runs on (-1 where unknown), read when a job is posted.
int current_cpu() {
#if defined(__linux__)
  return sched_getcpu();
#else
  return -1;
#endif
}

// Whether at most `cpus` threads are runnable in the whole system (the fourth field of
// /proc/loadavg, the calling one included), `cpus` being how many the pool's workers may run on:
// then, where two of them share a CPU, another the workers may use is idle. False where it
// cannot tell.
bool a_cpu_is_idle(int cpus) {
#if defined(__linux__)
  static const int fd = open("/proc/loadavg", O_RDONLY | O_CLOEXEC);
  char buf[128];
  const ssize_t n = fd < 0 ? -1 : pread(fd, buf, sizeof buf - 1, 0);  // read again from the start: fresh
  if (n <= 0) return false;
  buf[n] = '\0';
  long running = 0;
  return std::sscanf(buf, "%*s %*s %*s %ld/", &running) == 1 && running <= cpus;
#else
  (void)cpus;
  return false;
#endif
}

thread_local int tls_thread_index = 0;
thread_local bool tls_in_parallel = false;

class ThreadPool {
 public:
  ~ThreadPool() { stop(); }

  int size() {
    std::lock_guard<std::mutex> lock(config_mutex_);
    ensure_started_locked();
    return nthreads_;
  }

  std::string resize(int n) {
    std::lock_guard<std::mutex> lock(config_mutex_);
    if (n <= 0) n = default_threads();
    if (started_ && n == nthreads_) return {};
    const int old = started_ ? nthreads_ : 1;
    stop();
    std::string err = reserve(n);
    nthreads_ = err.empty() ? n : old;
    if (err.empty()) start_error_.clear();  // the size asked for is now the size it has
    release_surplus();
    start();
    return err;
  }

  // Starts the pool if needed; why its first start got fewer threads than asked, if it did.
  std::string start_error() {
    std::lock_guard<std::mutex> lock(config_mutex_);
    ensure_started_locked();
    return start_error_;
  }

  int64_t yields() const { return yields_.load(); }

  void run(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
    if (n <= 0) return;
    grain = std::max<int64_t>(grain, 1);
    int workers = size();
    int64_t max_chunks = (n + grain - 1) / grain;
    int nchunks = static_cast<int>(std::min<int64_t>(workers, max_chunks));
    if (nchunks <= 1 || tls_in_parallel) {
      fn(0, n);
      return;
    }
    std::lock_guard<std::mutex> job_lock(job_mutex_);  // one parallel job at a time
    // A worker that waited for this job on the caller's CPU (spinning there when the caller moved
    // onto it) shares that core with the caller until the load balancer separates them: it steps
    // off (leave_cpu) where a CPU is idle. Only then: where every CPU is busy (two processes'
    // pools on the same cores) the moves fought the scheduler's balancing and cost 30% (a training
    // loop, 2 x 2 threads on 2 cores: 2.4 -> 3.1 s).
    const int cpu = current_cpu();
    const bool move_off = worker_waited_on(cpu) && a_cpu_is_idle(worker_cpus_.load(std::memory_order_relaxed));
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_ = &fn;
      job_n_ = n;
      job_chunks_ = nchunks;
      job_cpu_ = cpu;
      job_move_off_ = move_off;
      pending_.store(nchunks - 1, std::memory_order_relaxed);
      generation_.fetch_add(1, std::memory_order_release);  // spinning workers start here
    }
    cv_.notify_all();  // parked ones here
    // A parked worker may be woken onto the caller's CPU (wake-affine), and would get it only when
    // the caller, busy with chunk 0, is preempted at a tick (1-4 ms later): yielding once lets it
    // run at once and step off. The same for a spinning one that steps off.
    if (parked_.load(std::memory_order_acquire) > 0 || move_off) {
      yields_.fetch_add(1, std::memory_order_relaxed);
      std::this_thread::yield();
    }
    tls_in_parallel = true;
    run_chunk(0);
    tls_in_parallel = false;
    auto done = [&] { return pending_.load(std::memory_order_acquire) == 0; };
    if (!spin_until(done)) {
      std::unique_lock<std::mutex> lock(mutex_);
      done_cv_.wait(lock, done);
    }
    job_ = nullptr;
  }

 private:
  static int default_threads() {
    if (const char* env = std::getenv("PATENTGPT_NUM_THREADS")) {
      int n = std::atoi(env);
      if (n > 0) return n;
    }
    unsigned hw = std::thread::hardware_concurrency();
    return hw == 0 ? 1 : static_cast<int>(hw);
  }

  void ensure_started_locked() {
    if (started_) return;
    const int n = default_threads();
    start_error_ = reserve(n);
    nthreads_ = std::max<int>(1, static_cast<int>(workspaces_.size()));  // as many as got one
    release_surplus();
    start();
  }

  // Workspaces for workers 1..n-1 (index 0, the caller, brings its own); on failure the ones
  // reserved so far are kept and the reason is returned.
  std::string reserve(int n) {
    if (workspaces_.empty()) workspaces_.emplace_back();  // the caller's slot
    while (static_cast<int>(workspaces_.size()) < n) {
      std::string err;
      Workspace* ws = workspace_create(err);
      if (ws == nullptr) return err;
      workspaces_.emplace_back(ws);
    }
    return {};
  }

  // Frees the workspaces of workers beyond nthreads_ (they are stopped).
  void release_surplus() {
    if (static_cast<int>(workspaces_.size()) > nthreads_) workspaces_.resize(nthreads_);
  }

  void start() {
    quit_ = false;
    // Workers start from the current generation so a job posted before they run is not missed.
    uint64_t gen;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      gen = generation_.load();
    }
    for (auto& cpu : worker_cpu_) cpu.store(-1);
#if defined(__linux__)
    cpu_set_t allowed;  // the workers inherit this thread's affinity
    if (sched_getaffinity(0, sizeof allowed, &allowed) == 0) worker_cpus_.store(CPU_COUNT(&allowed));
#endif
    for (int i = 1; i < nthreads_; ++i) {
      Workspace* ws = workspaces_[i].get();
      workers_.emplace_back([this, i, gen, ws] {
        set_thread_workspace(ws);
        worker(i, gen);
      });
    }
    started_ = true;
  }

  void stop() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      quit_ = true;
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
    started_ = false;
  }

  // Whether a worker last waited for a job on this CPU.
  bool worker_waited_on(int cpu) const {
    if (cpu < 0) return false;
    const int n = std::min<int>(nthreads_, kTrackedWorkers);
    for (int i = 1; i < n; ++i)
      if (worker_cpu_[i].load(std::memory_order_relaxed) == cpu) return true;
    return false;
  }

  void run_chunk(int chunk) {
    int64_t begin = job_n_ * chunk / job_chunks_;
    int64_t end = job_n_ * (chunk + 1) / job_chunks_;
    if (begin < end) (*job_)(begin, end);
  }

  void worker(int index, uint64_t seen) {
    tls_thread_index = index;
    tls_in_parallel = true;
    for (;;) {
      auto posted = [&] { return quit_.load(std::memory_order_acquire) || generation_.load(std::memory_order_acquire) != seen; };
      if (index < kTrackedWorkers) worker_cpu_[index].store(current_cpu(), std::memory_order_relaxed);
      const bool parked = !spin_until(posted);
      if (parked) {
        std::unique_lock<std::mutex> lock(mutex_);
        parked_.fetch_add(1, std::memory_order_relaxed);  // under mutex_: seen by run() once posted
        cv_.wait(lock, posted);
        parked_.fetch_sub(1, std::memory_order_relaxed);
      }
      int chunks, caller_cpu;
      bool move_off;
      {
        // The job's generation and chunk count as one pair (both are written under this lock): a
        // worker without a chunk of this job may meanwhile see the next job posted.
        std::lock_guard<std::mutex> lock(mutex_);
        if (quit_.load()) return;
        seen = generation_.load();
        chunks = job_chunks_;
        caller_cpu = job_cpu_;
        move_off = job_move_off_;
      }
      if (index < chunks) {
        if (parked || move_off) leave_cpu(caller_cpu);
        run_chunk(index);
        if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
          std::lock_guard<std::mutex> lock(mutex_);  // the caller checks pending_ under it before it sleeps
          done_cv_.notify_one();
        }
      }
    }
  }

  std::mutex config_mutex_, job_mutex_, mutex_;
  std::condition_variable cv_, done_cv_;
  std::vector<std::thread> workers_;
  std::vector<std::unique_ptr<Workspace, WorkspaceDeleter>> workspaces_;  // [i]: worker i's
  std::string start_error_;
  const std::function<void(int64_t, int64_t)>* job_ = nullptr;
  int64_t job_n_ = 0;
  int job_chunks_ = 0;
  int job_cpu_ = -1;  // the caller's CPU when the job was posted
  bool job_move_off_ = false;  // a worker that shares it steps off (run())
  std::atomic<int> pending_{0};
  std::atomic<uint64_t> generation_{0};
  int nthreads_ = 1;
  bool started_ = false;
  std::atomic<bool> quit_{false};
  std::atomic<int> parked_{0};                     // workers waiting on cv_
  std::atomic<int64_t> yields_{0};                 // caller_yields()
  // [i]: the CPU worker i last waited on (-1: not yet). Fixed, so that a resize never frees it
  // under a job; workers past the first kTrackedWorkers are not tracked (they never step off).
  static constexpr int kTrackedWorkers = 1024;
  std::atomic<int> worker_cpu_[kTrackedWorkers];
  std::atomic<int> worker_cpus_{0};  // how many CPUs the workers may run on (set when they start)
};

ThreadPool& pool() {
  static ThreadPool* p = new ThreadPool();  // never destroyed: workers may outlive static teardown
  return *p;
}

std::atomic<int> simd_cap{static_cast<int>(SimdLevel::AVX512)};

SimdLevel detect_simd() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
    return SimdLevel::AVX512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return SimdLevel::AVX2;
#endif
  return SimdLevel::Scalar;
}

}  // namespace

// A worker woken from the condition variable is often placed by the scheduler on the CPU of the
// thread that woke it (wake-affine), and then shares that core with the caller, which runs chunk 0,
// until the load balancer moves one of them (milliseconds): a parallel job after an idle pause ran
// at one core's speed about half the time (a 2048 x 768 x 768 bf16 GEMM: 1.7 vs 3.0 TFLOP/s on 2
// cores). The same where the caller moved onto a spinning worker's CPU. Such a worker steps off the
// caller's CPU: its affinity without that CPU moves it at once, then its own affinity comes back
// (it stays where it was moved). Two system calls, only after a park or where a CPU is idle
// (a_cpu_is_idle). The caller yields once after posting to such workers, so that one runs, and
// steps off, at once rather than after the caller's time slice.
int64_t caller_yields() { return pool().yields(); }

void leave_cpu(int cpu) {
#if defined(__linux__)
  if (cpu < 0 || sched_getcpu() != cpu) return;
  cpu_set_t allowed;
  if (sched_getaffinity(0, sizeof allowed, &allowed) != 0 || CPU_COUNT(&allowed) < 2 || !CPU_ISSET(cpu, &allowed)) return;
  cpu_set_t others = allowed;
  CPU_CLR(cpu, &others);
  if (sched_setaffinity(0, sizeof others, &others) == 0) sched_setaffinity(0, sizeof allowed, &allowed);
#else
  (void)cpu;
#endif
}

SimdLevel simd_level() {
  static const SimdLevel detected = detect_simd();
  int cap = simd_cap.load(std::memory_order_relaxed);
  return static_cast<SimdLevel>(std::min(static_cast<int>(detected), cap));
}

const char* simd_level_name(SimdLevel level) {
  switch (level) {
    case SimdLevel::AVX512: return "avx512";
    case SimdLevel::AVX2: return "avx2";
    default: return "scalar";
  }
}

void force_simd_level(SimdLevel level) { simd_cap.store(static_cast<int>(level)); }

int num_threads() { return pool().size(); }
std::string set_num_threads(int n) { return pool().resize(n); }
std::string pool_reservation_error() { return pool().start_error(); }
int thread_index() { return tls_thread_index; }

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  pool().run(n, grain, fn);
}

}  // namespace pg
