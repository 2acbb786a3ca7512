// A minimal test harness for the native tests (no dependencies, runs under ctest):
// CHECK(cond), CHECK_CLOSE(a, b, atol, rtol), and a main() that runs every TEST.
#pragma once
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <vector>

namespace pgtest {

struct Case {
  const char* name;
  std::function<void()> fn;
};
inline std::vector<Case>& cases() {
  static std::vector<Case> c;
  return c;
}
inline int& failures() {
  static int f = 0;
  return f;
}
struct Register {
  Register(const char* name, std::function<void()> fn) { cases().push_back({name, std::move(fn)}); }
};

inline std::vector<float> randn(size_t n, unsigned seed, float scale = 1.0f) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(gen);
  return v;
}

}  // namespace pgtest

#define TEST(name)                                            \
  static void name();                                         \
  static pgtest::Register register_##name(#name, name);       \
  static void name()

#define CHECK(cond)                                                                 \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      ++pgtest::failures();                                                         \
      return;                                                                       \
    }                                                                               \
  } while (0)

// Elementwise |a - b| <= atol + rtol * |b| over n values; reports the first miss.
#define CHECK_CLOSE(a, b, n, atol, rtol)                                                            \
  do {                                                                                              \
    for (size_t i_ = 0; i_ < static_cast<size_t>(n); ++i_) {                                        \
      double x_ = (a)[i_], y_ = (b)[i_];                                                            \
      if (!(std::fabs(x_ - y_) <= (atol) + (rtol) * std::fabs(y_))) {                               \
        std::fprintf(stderr, "%s:%d: %s[%zu] = %.8g, expected %.8g\n", __FILE__, __LINE__, #a, i_, \
                     x_, y_);                                                                       \
        ++pgtest::failures();                                                                       \
        return;                                                                                     \
      }                                                                                             \
    }                                                                                               \
  } while (0)

int main() {
  for (auto& c : pgtest::cases()) {
    int before = pgtest::failures();
    c.fn();
    std::printf("%s %s\n", pgtest::failures() == before ? "ok  " : "FAIL", c.name);
  }
  std::printf("%d failed\n", pgtest::failures());
  return pgtest::failures() == 0 ? 0 : 1;
}
