// Errors the addon throws to JavaScript. Each carries a stable `code` property, so callers (and
// src/tensor) branch on err.code, never on the message, which may be reworded:
//   E_NATIVE_ARG       an argument of the wrong type, size, range or bounds (a bug in the caller)
//   E_NATIVE_DISPOSED  a storage used after free()
//   E_NATIVE_OOM       host or device memory exhausted
//   E_NATIVE_DEVICE    a device (CUDA) call failed
//   E_NATIVE_WORKER    a background job (AsyncWorker) failed
#pragma once
#include <napi.h>

#include <string>

namespace pgnode {

inline constexpr const char* kErrArg = "E_NATIVE_ARG";
inline constexpr const char* kErrDisposed = "E_NATIVE_DISPOSED";
inline constexpr const char* kErrOom = "E_NATIVE_OOM";
inline constexpr const char* kErrDevice = "E_NATIVE_DEVICE";
inline constexpr const char* kErrWorker = "E_NATIVE_WORKER";

// An Error (or TypeError / RangeError) with err.code = code; throw the result.
template <typename E = Napi::Error>
inline E CodedError(Napi::Env env, const char* code, const std::string& message) {
  E err = E::New(env, message);
  err.Set("code", Napi::String::New(env, code));
  return err;
}

// The tail of a device index check's message (native/cuda/index_check.cu), reported at the next
// sync point: a bad argument of an earlier call, not a device fault.
inline constexpr const char* kIndexCheckMark = "(an index checked on the device)";

// A device call's failure: a bad index an earlier call's device check found, out of memory when
// the runtime says so, else a device error.
inline const char* DeviceErrorCode(const std::string& err) {
  if (err.find(kIndexCheckMark) != std::string::npos) return kErrArg;
  return err.find("out of memory") != std::string::npos ? kErrOom : kErrDevice;
}

}  // namespace pgnode
