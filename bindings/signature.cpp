// Declarations (signature.h): parsing, the process-wide registry, the per-device dispatcher, the
// Args reader built from a declaration, and signatures() for JavaScript.
#include "signature.h"

#include <deque>
#include <mutex>
#include <stdexcept>
#include <unordered_map>

#include "args.h"

namespace pgnode {

namespace {

std::string Trim(const std::string& s) {
  const size_t a = s.find_first_not_of(' '), b = s.find_last_not_of(' ');
  return a == std::string::npos ? std::string() : s.substr(a, b - a + 1);
}

[[noreturn]] void Bug(const std::string& message) { throw std::logic_error("patentgpt binding bug: " + message); }

Param ParseParam(const std::string& decl, const std::string& entry) {
  const size_t colon = entry.find(':');
  if (colon == std::string::npos) Bug(decl + ": parameter '" + entry + "' has no type");
  Param p;
  p.name = Trim(entry.substr(0, colon));
  if (!p.name.empty() && p.name.back() == '?') {
    p.optional = true;
    p.name.pop_back();
  }
  std::string t = Trim(entry.substr(colon + 1));
  p.type = t;
  const std::string null_suffix = "| null";
  if (t.size() > null_suffix.size() && t.compare(t.size() - null_suffix.size(), null_suffix.size(), null_suffix) == 0) {
    p.nullable = true;
    t = Trim(t.substr(0, t.size() - null_suffix.size()));
  }
  struct Named {
    const char* type;
    Kind kind;
    int bytes;
    napi_typedarray_type array;
  };
  static const Named kNamed[] = {
      {"f32", Kind::Tensor, 4, {}},
      {"i32", Kind::Tensor, 4, {}},
      {"bf16", Kind::Tensor, 2, {}},
      {"f16", Kind::Tensor, 2, {}},
      {"tensor", Kind::Tensor, 0, {}},
      {"f32[]", Kind::TensorList, 4, {}},
      {"int", Kind::Int, 0, {}},
      {"size", Kind::Size, 0, {}},
      {"number", Kind::Number, 0, {}},
      {"boolean", Kind::Boolean, 0, {}},
      {"string", Kind::String, 0, {}},
      {"string[]", Kind::StringArray, 0, {}},
      {"Storage", Kind::Storage, 0, {}},
      {"Uint8Array", Kind::TypedArray, 0, napi_uint8_array},
      {"Uint32Array", Kind::TypedArray, 0, napi_uint32_array},
      {"Int32Array", Kind::TypedArray, 0, napi_int32_array},
      {"Float32Array", Kind::TypedArray, 0, napi_float32_array},
      {"Float64Array", Kind::TypedArray, 0, napi_float64_array},
      {"BigInt64Array", Kind::TypedArray, 0, napi_bigint64_array},
  };
  for (const Named& n : kNamed)
    if (t == n.type) {
      p.kind = n.kind, p.elem_bytes = n.bytes, p.array_type = n.array;
      return p;
    }
  if (t == "ArrayBufferView") {
    p.kind = Kind::TypedArray, p.any_array = true;
    return p;
  }
  if (!t.empty() && t[0] == '\'') {
    p.kind = Kind::Enum;
    size_t from = 0;
    while (from <= t.size()) {
      size_t bar = t.find('|', from);
      std::string opt = Trim(t.substr(from, bar == std::string::npos ? std::string::npos : bar - from));
      if (opt.size() < 2 || opt.front() != '\'' || opt.back() != '\'') Bug(decl + ": bad option " + opt);
      p.options.push_back(opt.substr(1, opt.size() - 2));
      if (bar == std::string::npos) break;
      from = bar + 1;
    }
    return p;
  }
  Bug(decl + ": unknown type '" + t + "' of " + p.name);
}

Signature Parse(const Decl& d) {
  Signature s;
  s.what = d.what, s.name = d.name, s.label = d.label, s.result = d.result;
  s.kernels[static_cast<int>(Device::CPU)] = d.cpu;
  s.kernels[static_cast<int>(Device::CUDA)] = d.cuda;
  s.raw = d.raw != nullptr;
  const std::string params = d.params;
  size_t from = 0;
  while (from < params.size()) {
    size_t comma = params.find(',', from);
    std::string entry = Trim(params.substr(from, comma == std::string::npos ? std::string::npos : comma - from));
    if (!entry.empty()) s.params.push_back(ParseParam(s.name, entry));
    if (comma == std::string::npos) break;
    from = comma + 1;
  }
  for (size_t p = 0; p < s.params.size(); ++p) {
    const Param& q = s.params[p];
    for (size_t other = 0; other < p; ++other)
      if (s.params[other].name == q.name) Bug(s.name + ": parameter " + q.name + " declared twice");
    if (!q.optional && s.min_arity != s.param_of_slot.size()) Bug(s.name + ": an optional parameter before " + q.name);
    s.slot_of_param.push_back(static_cast<int>(s.param_of_slot.size()));
    const int slots = q.kind == Kind::Tensor ? 2 : 1;
    for (int k = 0; k < slots; ++k) s.param_of_slot.push_back(static_cast<int>(p));
    if (!q.optional) s.min_arity = s.param_of_slot.size();
  }
  s.max_arity = s.param_of_slot.size();
  if (s.max_arity > kMaxSlots) Bug(s.name + ": more than " + std::to_string(kMaxSlots) + " JS arguments");
  return s;
}

struct Registry {
  std::mutex mutex;
  std::deque<Signature> all;  // stable addresses, declaration order
  std::unordered_map<std::string, const Signature*> by_name;
};
Registry& registry() {
  static Registry* r = new Registry();  // never destroyed: worker addon instances may outlive statics
  return *r;
}

Napi::Value Dispatch(const Napi::CallbackInfo& info) {
  const Signature& sig = *static_cast<const Signature*>(info.Data());
  Args a(info, sig);
  const Kernel k = sig.kernels[static_cast<int>(a.device())];
  if (!k) a.Fail(kErrDevice, std::string("no ") + (a.device() == Device::CUDA ? "cuda" : "cpu") + " kernel for " + sig.name);
  return k(info, a);
}

}  // namespace

const Signature& Declare(const Decl& d) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  auto it = r.by_name.find(d.name);
  if (it != r.by_name.end()) return *it->second;
  r.all.push_back(Parse(d));
  r.by_name.emplace(d.name, &r.all.back());
  return r.all.back();
}

const Signature& Find(const char* name) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  auto it = r.by_name.find(name);
  if (it == r.by_name.end()) Bug(std::string(name) + " is not declared");
  return *it->second;
}

void DefineOne(Napi::Env env, Napi::Object exports, const Decl& d) {
  const Signature& s = Declare(d);
  if (d.what != DeclKind::Function) return;
  if (d.raw) {
    exports.Set(d.name, Napi::Function::New(env, d.raw, d.name));
    return;
  }
  if (!d.cpu) Bug(s.name + ": every op has a CPU kernel");
  exports.Set(d.name, Napi::Function::New(env, Dispatch, d.name, const_cast<Signature*>(&s)));
}

Napi::Value SignaturesValue(Napi::Env env) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  static const char* kWhat[] = {"function", "constructor", "method", "getter"};
  Napi::Array out = Napi::Array::New(env, r.all.size());
  uint32_t i = 0;
  for (const Signature& s : r.all) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("name", s.name);
    o.Set("label", s.label);
    o.Set("what", kWhat[static_cast<int>(s.what)]);
    Napi::Array params = Napi::Array::New(env, s.params.size());
    for (uint32_t p = 0; p < s.params.size(); ++p) {
      Napi::Object q = Napi::Object::New(env);
      q.Set("name", s.params[p].name);
      q.Set("type", s.params[p].type);
      q.Set("optional", s.params[p].optional);
      params.Set(p, q);
    }
    o.Set("params", params);
    o.Set("result", s.result);
    Napi::Array devices = Napi::Array::New(env);
    if (s.what != DeclKind::Function || s.raw || s.kernels[0]) devices.Set(devices.Length(), "cpu");
    if (s.kernels[1]) devices.Set(devices.Length(), "cuda");
    o.Set("devices", devices);
    out.Set(i++, o);
  }
  return out;
}

Args::Args(const Napi::CallbackInfo& info, const Signature& sig) : info_(info), sig_(sig) { Read(); }

Args::Args(const Napi::CallbackInfo& info, const char* name, size_t count) : info_(info), sig_(Find(name)) {
  if (sig_.max_arity != count) Bug(sig_.name + " is declared with " + std::to_string(sig_.max_arity) + " values, read as " + std::to_string(count));
  Read();
}

void Args::Read() {
  const size_t n = info_.Length();
  if (n < sig_.min_arity || n > sig_.max_arity)
    Fail("expected " + std::to_string(sig_.min_arity) +
         (sig_.min_arity == sig_.max_arity ? std::string() : " to " + std::to_string(sig_.max_arity)) + " arguments, got " +
         std::to_string(n));
  bool have_device = false;
  for (size_t p = 0; p < sig_.params.size(); ++p) {
    const Param& q = sig_.params[p];
    const size_t i = static_cast<size_t>(sig_.slot_of_param[p]);
    if (i >= n) break;  // optional parameters left out
    const Napi::Value v = info_[i];
    if (q.optional && v.IsUndefined()) continue;
    const std::string& name = q.name;
    switch (q.kind) {
      case Kind::Tensor: {
        storages_[i] = nullptr;
        if (!(q.nullable && v.IsNull())) {
          if (!Storage::Is(v)) Fail(name + " is not a tensor storage");
          Storage* s = Storage::Unwrap(v.As<Napi::Object>());
          if (s->freed()) Fail(kErrDisposed, name + " was already disposed");
          storages_[i] = s;
          if (!have_device) device_ = s->device(), have_device = true;
        }
        const Napi::Value off = info_[i + 1];
        if (!off.IsNumber()) Fail(name + " offset must be a number");
        numbers_[i + 1] = off.As<Napi::Number>().DoubleValue();
        break;
      }
      case Kind::Int:
      case Kind::Size:
      case Kind::Number:
        if (!v.IsNumber()) Fail(name + " must be a number");
        numbers_[i] = v.As<Napi::Number>().DoubleValue();
        break;
      case Kind::Boolean:
        if (!v.IsBoolean()) Fail(name + " must be a boolean");
        numbers_[i] = v.As<Napi::Boolean>().Value() ? 1 : 0;
        break;
      case Kind::String:
        if (!v.IsString()) Fail(name + " must be a string");
        break;
      case Kind::Enum: {
        std::string got = v.IsString() ? v.As<Napi::String>().Utf8Value() : std::string();
        bool ok = false;
        for (const std::string& o : q.options) ok = ok || (v.IsString() && got == o);
        if (!ok) {
          std::string want;
          for (size_t k = 0; k < q.options.size(); ++k)
            want += (k == 0 ? "'" : k + 1 == q.options.size() ? " or '" : ", '") + q.options[k] + "'";
          Fail(name + " must be " + want + (v.IsString() ? ", got '" + got + "'" : std::string()));
        }
        break;
      }
      case Kind::TypedArray:
        if (!v.IsTypedArray() || (!q.any_array && v.As<Napi::TypedArray>().TypedArrayType() != q.array_type))
          Fail(name + " must be " + (q.any_array ? "a typed array" : "a " + q.type));
        break;
      case Kind::StringArray:
        if (!v.IsArray()) Fail(name + " must be an array of strings");
        break;
      case Kind::TensorList:  // its entries are read (and checked) by Args::PtrList
        if (!v.IsArray()) Fail(name + " must be an array of tensors ({ storage, offset })");
        break;
      case Kind::Storage:
        if (!Storage::Is(v)) Fail(name + " is not a Storage");
        break;
    }
  }
}

void Args::Declared(size_t i, const char* name, Kind kind, size_t elem_bytes) const {
  if (i >= sig_.param_of_slot.size()) Bug(sig_.name + " reads argument " + std::to_string(i) + " beyond its declaration");
  const int p = sig_.param_of_slot[i];
  const Param& q = sig_.params[static_cast<size_t>(p)];
  if (sig_.slot_of_param[static_cast<size_t>(p)] != static_cast<int>(i) || q.name != name || q.kind != kind ||
      ((kind == Kind::Tensor || kind == Kind::TensorList) && q.elem_bytes != 0 && static_cast<size_t>(q.elem_bytes) != elem_bytes))
    Bug(sig_.name + " reads argument " + std::to_string(i) + " as " + name + ", declared there: " + q.name + ": " + q.type);
  if (static_cast<size_t>(sig_.slot_of_param[static_cast<size_t>(p)]) >= info_.Length()) Bug(sig_.name + " reads optional " + q.name);
}

}  // namespace pgnode
