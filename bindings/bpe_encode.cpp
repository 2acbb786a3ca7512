// Bindings of native/cpu/bpe_encode.{h,cpp}: the BpeEncoder class. encodeBatch runs on a libuv
// thread (and the pool's workers) and resolves a Promise, so the event loop stays free.
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "../native/cpu/bpe_encode.h"
#include "args.h"

namespace pgnode {

namespace {

class EncodeBatchWorker : public Napi::AsyncWorker {
 public:
  EncodeBatchWorker(Napi::Env env, std::shared_ptr<const pg::BpeEncoder> encoder, Napi::Uint8Array text,
                    std::vector<int64_t> offsets, int threads, int32_t bos, int32_t eos)
      : Napi::AsyncWorker(env),
        deferred_(Napi::Promise::Deferred::New(env)),
        encoder_(std::move(encoder)),
        text_ref_(Napi::Persistent(text)),
        text_(reinterpret_cast<const char*>(text.Data())),
        offsets_(std::move(offsets)),
        threads_(threads),
        bos_(bos),
        eos_(eos) {}

  Napi::Promise Promise() const { return deferred_.Promise(); }

  void Execute() override {
    encoder_->encode_batch(text_, offsets_.data(), static_cast<int64_t>(offsets_.size()) - 1, threads_, bos_, eos_,
                           &ids_, &id_offsets_);
  }

  void OnOK() override {
    Napi::Env env = Env();
    Napi::Int32Array ids = Napi::Int32Array::New(env, ids_.size());
    if (!ids_.empty()) std::memcpy(ids.Data(), ids_.data(), ids_.size() * sizeof(int32_t));
    Napi::Float64Array offsets = Napi::Float64Array::New(env, id_offsets_.size());
    for (size_t i = 0; i < id_offsets_.size(); ++i) offsets[i] = static_cast<double>(id_offsets_[i]);
    Napi::Object out = Napi::Object::New(env);
    out.Set("ids", ids);
    out.Set("offsets", offsets);
    deferred_.Resolve(out);
  }

  void OnError(const Napi::Error& e) override {
    Napi::Object err = e.Value();
    if (!err.Has("code")) err.Set("code", Napi::String::New(Env(), kErrWorker));  // errors.h
    deferred_.Reject(err);
  }

 private:
  Napi::Promise::Deferred deferred_;
  std::shared_ptr<const pg::BpeEncoder> encoder_;
  Napi::Reference<Napi::Uint8Array> text_ref_;  // keeps the text alive while a thread reads it
  const char* text_;
  std::vector<int64_t> offsets_;
  int threads_;
  int32_t bos_, eos_;
  std::vector<int32_t> ids_;
  std::vector<int64_t> id_offsets_;
};

class BpeEncoderWrap : public Napi::ObjectWrap<BpeEncoderWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "BpeEncoder",
                       {InstanceMethod("encode", &BpeEncoderWrap::Encode),
                        InstanceMethod("encodeBatch", &BpeEncoderWrap::EncodeBatch)});
  }

  // new BpeEncoder(pieces: Uint8Array, offsets: BigInt64Array (n+1), scores: Float32Array (n),
  //                types: Int32Array (n), unkId, byteFallback, addDummyPrefix, removeExtraWhitespaces,
  //                escapeWhitespaces)
  explicit BpeEncoderWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<BpeEncoderWrap>(info) {
    Args a(info, "BpeEncoder", 9);
    if (!info[3].IsTypedArray()) a.Fail("types must be an Int32Array");
    const int64_t n = static_cast<int64_t>(info[3].As<Napi::TypedArray>().ElementLength());
    if (n < 1 || n > (1 << 30)) a.Fail("the model must have between 1 and 2^30 pieces");
    const int32_t* types = TypedArg<int32_t>(a, info[3], napi_int32_array, "types", "Int32Array", n);
    const float* scores = TypedArg<float>(a, info[2], napi_float32_array, "scores", "Float32Array", n);
    const int64_t* offsets = TypedArg<int64_t>(a, info[1], napi_bigint64_array, "offsets", "BigInt64Array", n + 1);
    if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
      a.Fail("pieces must be a Uint8Array");
    auto bytes = info[0].As<Napi::Uint8Array>();
    for (int64_t i = 0; i < n; ++i)
      if (offsets[i] < 0 || offsets[i] > offsets[i + 1] || offsets[i + 1] > static_cast<int64_t>(bytes.ByteLength()))
        a.Fail("offsets must rise from >= 0 to <= pieces.length");
    pg::BpeNormalizer normalizer;
    normalizer.add_dummy_prefix = a.Bool(6, "addDummyPrefix");
    normalizer.remove_extra_whitespaces = a.Bool(7, "removeExtraWhitespaces");
    normalizer.escape_whitespaces = a.Bool(8, "escapeWhitespaces");
    auto encoder = std::make_shared<pg::BpeEncoder>();
    std::string error;
    if (!encoder->init(reinterpret_cast<const char*>(bytes.Data()), offsets, scores, types, static_cast<int32_t>(n),
                       static_cast<int32_t>(a.Int(4, "unkId")), a.Bool(5, "byteFallback"), normalizer, &error))
      a.Fail(error);
    encoder_ = std::move(encoder);
  }

 private:
  // encode(text: Uint8Array) -> Int32Array: one text (UTF-8, normalized natively), on this thread.
  Napi::Value Encode(const Napi::CallbackInfo& info) {
    Args a(info, "BpeEncoder.encode", 1);
    if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
      a.Fail("text must be a Uint8Array");
    auto t = info[0].As<Napi::Uint8Array>();
    std::vector<int32_t> ids;
    encoder_->encode(reinterpret_cast<const char*>(t.Data()), t.ByteLength(), &ids);
    Napi::Int32Array out = Napi::Int32Array::New(info.Env(), ids.size());
    if (!ids.empty()) std::memcpy(out.Data(), ids.data(), ids.size() * sizeof(int32_t));
    return out;
  }

  // encodeBatch(text: Uint8Array, offsets: BigInt64Array (n+1), threads, bosId, eosId (-1: none))
  //   -> Promise<{ ids: Int32Array, offsets: Float64Array (n+1) }>
  Napi::Value EncodeBatch(const Napi::CallbackInfo& info) {
    Args a(info, "BpeEncoder.encodeBatch", 5);
    if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
      a.Fail("text must be a Uint8Array");
    auto text = info[0].As<Napi::Uint8Array>();
    if (!info[1].IsTypedArray()) a.Fail("offsets must be a BigInt64Array");
    const int64_t n1 = static_cast<int64_t>(info[1].As<Napi::TypedArray>().ElementLength());
    if (n1 < 1) a.Fail("offsets needs at least one element");
    const int64_t* off = TypedArg<int64_t>(a, info[1], napi_bigint64_array, "offsets", "BigInt64Array", n1);
    for (int64_t i = 0; i + 1 < n1; ++i)
      if (off[i] < 0 || off[i] > off[i + 1] || off[i + 1] > static_cast<int64_t>(text.ByteLength()))
        a.Fail("offsets must rise from >= 0 to <= text.length");
    const int64_t threads = a.Int(2, "threads");
    if (threads < 1 || threads > 256) a.Fail("threads must be in [1, 256]");
    const int64_t bos = a.Int(3, "bosId"), eos = a.Int(4, "eosId");
    auto* worker = new EncodeBatchWorker(info.Env(), encoder_, text, std::vector<int64_t>(off, off + n1),
                                         static_cast<int>(threads), static_cast<int32_t>(bos), static_cast<int32_t>(eos));
    Napi::Promise p = worker->Promise();
    worker->Queue();
    return p;
  }

  std::shared_ptr<const pg::BpeEncoder> encoder_;
};

// The class's declarations (its bodies read their Args under these names).
const Decl kDecls[] = {
    {DeclKind::Constructor, "BpeEncoder", "BpeEncoder",
     "pieces: Uint8Array, offsets: BigInt64Array, scores: Float32Array, types: Int32Array, unkId: int, "
     "byteFallback: boolean, addDummyPrefix: boolean, removeExtraWhitespaces: boolean, escapeWhitespaces: boolean",
     "NativeBpeEncoder"},
    {DeclKind::Method, "BpeEncoder.encode", "BpeEncoder.encode", "text: Uint8Array", "Int32Array"},
    {DeclKind::Method, "BpeEncoder.encodeBatch", "BpeEncoder.encodeBatch",
     "text: Uint8Array, offsets: BigInt64Array, threads: int, bosId: int, eosId: int",
     "Promise<{ ids: Int32Array; offsets: Float64Array }>"},
};

}  // namespace

void RegisterBpeEncode(Napi::Env env, Napi::Object exports) {
  Define(env, exports, kDecls);
  exports.Set("BpeEncoder", BpeEncoderWrap::Define(env));
}

}  // namespace pgnode
