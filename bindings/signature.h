// Signatures: every native function, class and method is declared once, next to its C++ body,
// as a table of Decl rows (name, error label, parameters, result, kernel per device). From that
// one declaration:
//   - Args (args.h) checks the call's arity and each argument's kind before the body runs, and
//     checks that the body reads each argument under the name and kind it was declared with;
//   - the dispatcher picks the kernel for the tensors' device ({cpu, cuda} per op), failing with
//     E_NATIVE_DEVICE "no cuda kernel for <op>" where a device has none;
//   - the addon's signatures() describes them to JavaScript, from which
//     scripts/gen-addon-types.mjs writes src/native/addon-types.ts and test/fuzz.test.ts fuzzes.
//
// Parameter list: "name: type, ..." with these types (a tensor is two JS values: a Storage and
// an element offset):
//   f32 | i32 | bf16 | f16 | tensor   a tensor of that dtype (tensor: any); "| null" allows null
//   f32[]                             a list of f32 tensors: one JS array of { storage, offset }
//                                     (TensorArg), e.g. each expert's own weight (Args::PtrList)
//   int | size | number | boolean     an integer, an integer >= 0, any number, a boolean
//   string | 'a' | 'b'                a string, or one of the quoted strings
//   Uint8Array | Uint32Array | Int32Array | Float32Array | Float64Array | BigInt64Array |
//   ArrayBufferView | string[] | Storage
// A name ending in '?' is an optional trailing parameter. The result is a TypeScript type.
#pragma once
#include <napi.h>

#include <cstdint>
#include <string>
#include <vector>

#include "storage.h"

namespace pgnode {

class Args;

// A kernel entry: the body of an op for one device, after Args has checked the call.
using Kernel = Napi::Value (*)(const Napi::CallbackInfo& info, const Args& a);

enum class DeclKind : uint8_t { Function, Constructor, Method, Getter };

struct Decl {
  DeclKind what;
  const char* name;    // JS name: "rmsnormForward", "BpeTrainer" (class), "BpeTrainer.step"
  const char* label;   // what its errors start with: "rmsnorm", "rmsnorm backward"
  const char* params;  // see above
  const char* result;  // TypeScript type of the result
  Kernel cpu = nullptr;
  Kernel cuda = nullptr;  // absent until native/cuda has the op
  // Instead of a kernel table: a plain callback that builds Args itself (runtime functions).
  Napi::Function::Callback raw = nullptr;
};

enum class Kind : uint8_t { Tensor, Int, Size, Number, Boolean, String, Enum, TypedArray, StringArray, Storage, TensorList };

struct Param {
  std::string name, type;  // type as declared (normalized spaces)
  Kind kind;
  int elem_bytes = 0;                  // tensors: bytes per element (0: any dtype)
  napi_typedarray_type array_type{};   // typed arrays (any when any_array)
  bool any_array = false, nullable = false, optional = false;
  std::vector<std::string> options;    // Enum
};

struct Signature {
  DeclKind what;
  std::string name, label, result;
  std::vector<Param> params;
  std::vector<int> slot_of_param;  // first JS argument of each parameter
  std::vector<int> param_of_slot;  // parameter of each JS argument (tensor: both of its slots)
  size_t min_arity = 0, max_arity = 0;
  Kernel kernels[2] = {nullptr, nullptr};  // by Device
  bool raw = false;
};

// Parses and keeps the declarations (once per process; addon instances in workers share them).
const Signature& Declare(const Decl& d);
// A declared signature by name; throws std::logic_error for an undeclared one (a binding bug).
const Signature& Find(const char* name);

// Exports every Function row of `decls` (its kernel table chosen from the tensors' device) and
// declares the other rows (classes and methods, whose bodies build Args themselves).
template <size_t N>
void Define(Napi::Env env, Napi::Object exports, const Decl (&decls)[N]);
void DefineOne(Napi::Env env, Napi::Object exports, const Decl& d);
template <size_t N>
void Define(Napi::Env env, Napi::Object exports, const Decl (&decls)[N]) {
  for (const Decl& d : decls) DefineOne(env, exports, d);
}

// signatures() -> [{ name, label, what, params: [{ name, type, optional }], result, devices }]
Napi::Value SignaturesValue(Napi::Env env);

}  // namespace pgnode
