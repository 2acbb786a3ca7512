// Argument checking for op bindings: every pointer a kernel receives has been checked here for
// type, device and bounds (against the op's declared signature, signature.h), so no call from JavaScript can make a kernel read or write outside
// its buffers. Failures throw a JS Error that names the op and carries err.code (errors.h):
// E_NATIVE_ARG, or E_NATIVE_DISPOSED for a freed storage.
#pragma once
#include <napi.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "errors.h"
#include "signature.h"
#include "storage.h"

namespace pgnode {

// The arguments of one call, read against its declared Signature (signature.h). The constructor
// checks the arity and every argument's kind and keeps numbers and storages, so the accessors
// read no JS value twice; each accessor also checks that the body asks for argument i under the
// name and kind it was declared with (a mismatch is a bug in the binding: std::logic_error).
inline constexpr size_t kMaxSlots = 80;

class Args {
 public:
  Args(const Napi::CallbackInfo& info, const Signature& sig);
  // Class bodies and runtime.cpp: the declared signature `name`, which must take `count` values.
  Args(const Napi::CallbackInfo& info, const char* name, size_t count);

  [[noreturn]] void Fail(const std::string& message) const { Fail(kErrArg, message); }
  [[noreturn]] void Fail(const char* code, const std::string& message) const {
    throw CodedError(info_.Env(), code, sig_.label + ": " + message);
  }

  // The device of the call's first tensor (CPU when it has none): the kernel table's key.
  Device device() const { return device_; }

  // A tensor argument is two JS values: the Storage at index i and an element offset at i + 1.
  // `count` elements of T must fit in the storage from that offset, on the kernel's device.
  template <typename T>
  T* Ptr(size_t i, const char* name, int64_t count) const {
    Declared(i, name, Kind::Tensor, sizeof(T));
    Storage* s = storages_[i];
    if (!s) Fail(std::string(name) + " is not a tensor storage");
    if (s->device() != device_)
      Fail(std::string(name) + " is on " + DeviceName(s->device()) + ", this call's kernel runs on " +
           DeviceName(device_) + " (its first tensor's device)");
    int64_t offset = IntAt(i + 1, name);
    if (offset < 0 || count < 0) Fail(std::string(name) + ": negative offset or size");
    const int64_t capacity = static_cast<int64_t>(s->bytes() / sizeof(T));
    if (offset > capacity || count > capacity - offset)
      Fail(std::string(name) + " needs " + std::to_string(count) + " elements from offset " +
           std::to_string(offset) + " but its storage holds " + std::to_string(capacity));
    return static_cast<T*>(s->data()) + offset;
  }

  // A tensor argument declared "| null": nullptr when null.
  template <typename T>
  T* OptPtr(size_t i, const char* name, int64_t count) const {
    Declared(i, name, Kind::Tensor, sizeof(T));
    return storages_[i] ? Ptr<T>(i, name, count) : nullptr;
  }

  // A tensor-list argument (declared "f32[]"): exactly n entries, each an object { storage, offset }
  // (a TensorArg) holding `count` elements of T (const for inputs) from its offset on the kernel's
  // device; their pointers into `out`. Reads the JS array on each call: the list may name storages that
  // change from call to call (parameters replaced), never stale copies.
  template <typename T>
  void PtrList(size_t i, const char* name, int64_t n, int64_t count, std::vector<T*>& out) const {
    Declared(i, name, Kind::TensorList, sizeof(T));
    const Napi::Array arr = info_[i].As<Napi::Array>();  // Read() checked that it is an array
    if (static_cast<int64_t>(arr.Length()) != n)
      Fail(std::string(name) + " must hold " + std::to_string(n) + " tensors, has " + std::to_string(arr.Length()));
    out.resize(static_cast<size_t>(n));
    for (int64_t e = 0; e < n; ++e) {
      const auto at = [&](const std::string& why) { return std::string(name) + "[" + std::to_string(e) + "] " + why; };
      const Napi::Value el = arr.Get(static_cast<uint32_t>(e));
      if (!el.IsObject()) Fail(at("is not a tensor ({ storage, offset })"));
      const Napi::Object o = el.As<Napi::Object>();
      const Napi::Value sv = o.Get("storage"), ov = o.Get("offset");
      if (!Storage::Is(sv)) Fail(at("is not a tensor storage"));
      Storage* s = Storage::Unwrap(sv.As<Napi::Object>());
      if (s->freed()) Fail(kErrDisposed, at("was already disposed"));
      if (s->device() != device_) Fail(at("is not on this call's device (" + std::string(DeviceName(device_)) + ")"));
      if (!ov.IsNumber()) Fail(at("offset must be a number"));
      const double off = ov.As<Napi::Number>().DoubleValue();
      const int64_t capacity = static_cast<int64_t>(s->bytes() / sizeof(T));
      if (!(off >= 0 && off == std::floor(off)) || count < 0 || off > static_cast<double>(capacity) ||
          count > capacity - static_cast<int64_t>(off))
        Fail(at("needs " + std::to_string(count) + " elements from offset " + std::to_string(off) +
                " but its storage holds " + std::to_string(capacity)));
      out[static_cast<size_t>(e)] = static_cast<T*>(s->data()) + static_cast<int64_t>(off);
    }
  }

  // How many tensors a tensor-list argument holds (an empty list: an optional output left out).
  template <typename T>
  int64_t ListLength(size_t i, const char* name) const {
    Declared(i, name, Kind::TensorList, sizeof(T));
    return static_cast<int64_t>(info_[i].As<Napi::Array>().Length());
  }

  int64_t Int(size_t i, const char* name) const {
    Declared(i, name, Kind::Int, 0);
    return IntAt(i, name);
  }

  int64_t Size(size_t i, const char* name) const {
    Declared(i, name, Kind::Size, 0);
    int64_t v = IntAt(i, name);
    if (v < 0) Fail(std::string(name) + " must be >= 0, got " + std::to_string(v));
    return v;
  }

  double Num(size_t i, const char* name) const {
    Declared(i, name, Kind::Number, 0);
    return numbers_[i];
  }

  bool Bool(size_t i, const char* name) const {
    Declared(i, name, Kind::Boolean, 0);
    return numbers_[i] != 0;
  }

  // a * b, failing instead of overflowing.
  int64_t Mul(int64_t a, int64_t b) const {
    if (a != 0 && b > std::numeric_limits<int64_t>::max() / a) Fail("size overflow");
    return a * b;
  }

  Napi::Env Env() const { return info_.Env(); }
  const Signature& signature() const { return sig_; }

 private:
  static const char* DeviceName(Device d) { return d == Device::CUDA ? "cuda" : "cpu"; }
  void Read();
  int64_t IntAt(size_t i, const char* name) const {
    const double v = numbers_[i];
    if (!std::isfinite(v) || v != std::floor(v) || std::fabs(v) > 9007199254740991.0)
      Fail(std::string(name) + " must be an integer, got " + std::to_string(v));
    return static_cast<int64_t>(v);
  }
  // Fails (a binding bug) unless argument i starts the parameter `name` of a compatible kind.
  void Declared(size_t i, const char* name, Kind kind, size_t elem_bytes) const;

  const Napi::CallbackInfo& info_;
  const Signature& sig_;
  Device device_ = Device::CPU;
  double numbers_[kMaxSlots];
  Storage* storages_[kMaxSlots];
};

// Whether n elements at a and m at b share bytes. Index buffers (ids, targets) must not overlap
// what a kernel writes, or the kernel could rewrite an already checked index while it runs.
template <typename A, typename B>
bool Overlap(const A* a, int64_t n, const B* b, int64_t m) {
  const auto a0 = reinterpret_cast<uintptr_t>(a), b0 = reinterpret_cast<uintptr_t>(b);
  return n > 0 && m > 0 && a0 < b0 + m * sizeof(B) && b0 < a0 + n * sizeof(A);
}

// A plain typed-array argument (byte batches, offsets; not a tensor) of `type` holding at least
// `count` elements.
template <typename T>
T* TypedArg(const Args& a, const Napi::Value& v, napi_typedarray_type type, const char* name, const char* want,
            int64_t count) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != type)
    a.Fail(std::string(name) + " must be a " + want);
  auto arr = v.As<Napi::TypedArray>();
  if (static_cast<int64_t>(arr.ElementLength()) < count)
    a.Fail(std::string(name) + " needs " + std::to_string(count) + " elements, has " +
           std::to_string(arr.ElementLength()));
  return reinterpret_cast<T*>(static_cast<uint8_t*>(arr.ArrayBuffer().Data()) + arr.ByteOffset());
}

// UTF-8 text (a Uint8Array) cut into N documents by N+1 offsets that rise within it.
struct TextSpans {
  const uint8_t* data;
  int64_t bytes;
};
inline TextSpans TextArg(const Args& a, const Napi::Value& v, const int64_t* off, int64_t N) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
    a.Fail("text must be a Uint8Array");
  auto arr = v.As<Napi::Uint8Array>();
  const int64_t bytes = static_cast<int64_t>(arr.ElementLength());
  for (int64_t d = 0; d < N; d++)
    if (off[d] < 0 || off[d] > off[d + 1] || off[d + 1] > bytes)
      a.Fail("offsets must rise from >= 0 to <= text.length (" + std::to_string(bytes) + "); offsets[" +
             std::to_string(d) + "] = " + std::to_string(off[d]) + ", next " + std::to_string(off[d + 1]));
  return {arr.Data(), bytes};
}

// Fails unless cu_q (nseq + 1), context_lens (nseq) and block_tables (nseq, maxBlocks) describe
// Tq query rows whose cache positions all lie in blocks [0, numBlocks) (paged_attention.cpp;
// also used by the fused decoder layer in gemv.cpp).
void CheckPagedIndex(const Args& a, const int32_t* cu, const int32_t* ctx, const int32_t* tables, int64_t nseq,
                     int64_t Tq, int64_t numBlocks, int64_t blockSize, int64_t maxBlocks, int64_t partitionSize,
                     int64_t maxPartitions);

}  // namespace pgnode
