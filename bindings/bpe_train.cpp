// Bindings of native/cpu/bpe_train.{h,cpp}: the BpeTrainer class. Arguments are plain JS values
// (Uint8Array of sentences, Uint32Array/Int32Array of characters and scripts), checked here.
#include <memory>
#include <string>
#include <vector>

#include "../native/cpu/bpe_train.h"
#include "args.h"

namespace pgnode {

namespace {

class BpeTrainerWrap : public Napi::ObjectWrap<BpeTrainerWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "BpeTrainer",
                       {InstanceMethod("addSentences", &BpeTrainerWrap::AddSentences),
                        InstanceMethod("charCounts", &BpeTrainerWrap::CharCounts),
                        InstanceMethod("begin", &BpeTrainerWrap::Begin),
                        InstanceMethod("step", &BpeTrainerWrap::Step),
                        InstanceMethod("pieces", &BpeTrainerWrap::Pieces),
                        InstanceAccessor("sentences", &BpeTrainerWrap::Sentences, nullptr),
                        InstanceAccessor("uniqueWords", &BpeTrainerWrap::UniqueWords, nullptr)});
  }

  explicit BpeTrainerWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<BpeTrainerWrap>(info) {
    Args a(info, "BpeTrainer", 2);
    trainer_ = std::make_unique<pg::BpeTrainer>(a.Bool(0, "splitByWhitespace"), a.Bool(1, "allowWhitespaceOnlyPieces"));
  }

 private:
  // addSentences(utf8: Uint8Array): normalized sentences separated by '\n'.
  Napi::Value AddSentences(const Napi::CallbackInfo& info) {
    Args a(info, "BpeTrainer.addSentences", 1);
    if (began_) a.Fail("called after begin()");
    if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
      a.Fail("text must be a Uint8Array");
    Napi::Uint8Array t = info[0].As<Napi::Uint8Array>();
    trainer_->add_sentences(reinterpret_cast<const char*>(t.Data()), t.ByteLength());
    return info.Env().Undefined();
  }

  // charCounts() -> { cps: Uint32Array, counts: Float64Array }, most frequent first.
  Napi::Value CharCounts(const Napi::CallbackInfo& info) {
    Args a(info, "BpeTrainer.charCounts", 0);
    std::vector<uint32_t> cps;
    std::vector<int64_t> counts;
    trainer_->char_counts(&cps, &counts);
    Napi::Uint32Array c = Napi::Uint32Array::New(info.Env(), cps.size());
    Napi::Float64Array n = Napi::Float64Array::New(info.Env(), counts.size());
    for (size_t i = 0; i < cps.size(); ++i) {
      c[i] = cps[i];
      n[i] = static_cast<double>(counts[i]);
    }
    Napi::Object out = Napi::Object::New(info.Env());
    out.Set("cps", c);
    out.Set("counts", n);
    return out;
  }

  // begin(cps: Uint32Array, scripts: Int32Array, maxPieceLength, splitByWhitespace,
  //       splitByUnicodeScript, splitDigits, allowWhitespaceOnlyPieces, reserved: string[])
  Napi::Value Begin(const Napi::CallbackInfo& info) {
    Args a(info, "BpeTrainer.begin", 8);
    if (began_) a.Fail("already called");
    if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array)
      a.Fail("cps must be a Uint32Array");
    if (!info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
      a.Fail("scripts must be an Int32Array");
    Napi::Uint32Array cps = info[0].As<Napi::Uint32Array>();
    Napi::Int32Array scripts = info[1].As<Napi::Int32Array>();
    if (cps.ElementLength() != scripts.ElementLength()) a.Fail("cps and scripts differ in length");
    if (cps.ElementLength() > (1u << 30)) a.Fail("too many characters");
    for (size_t i = 0; i < cps.ElementLength(); ++i) {
      if (cps[i] > 0x10FFFF || (cps[i] >= 0xD800 && cps[i] <= 0xDFFF))
        a.Fail("cps[" + std::to_string(i) + "] is not a Unicode scalar value");
      if (scripts[i] < pg::kBpeScriptInherited) a.Fail("scripts[" + std::to_string(i) + "] is below -2");
    }
    pg::BpeTrainOptions opt;
    const int64_t maxLen = a.Int(2, "maxPieceLength");
    if (maxLen < 1 || maxLen > 0xFFFF) a.Fail("maxPieceLength must be in [1, 65535]");
    opt.max_piece_length = static_cast<int32_t>(maxLen);
    opt.split_by_whitespace = a.Bool(3, "splitByWhitespace");
    opt.split_by_unicode_script = a.Bool(4, "splitByUnicodeScript");
    opt.split_digits = a.Bool(5, "splitDigits");
    opt.allow_whitespace_only_pieces = a.Bool(6, "allowWhitespaceOnlyPieces");
    if (!info[7].IsArray()) a.Fail("reserved must be an array of strings");
    Napi::Array r = info[7].As<Napi::Array>();
    std::vector<std::string> reserved;
    for (uint32_t i = 0; i < r.Length(); ++i) {
      Napi::Value v = r.Get(i);
      if (!v.IsString()) a.Fail("reserved[" + std::to_string(i) + "] is not a string");
      reserved.push_back(v.As<Napi::String>().Utf8Value());
    }
    std::string error;
    if (!trainer_->begin(cps.Data(), scripts.Data(), static_cast<int32_t>(cps.ElementLength()), opt, reserved, &error))
      a.Fail(error);
    began_ = true;
    return info.Env().Undefined();
  }

  // step(maxPieces) -> number of pieces added (fewer when no pair is left).
  Napi::Value Step(const Napi::CallbackInfo& info) {
    Args a(info, "BpeTrainer.step", 1);
    if (!began_) a.Fail("begin() must be called first");
    const int64_t n = a.Int(0, "maxPieces");
    if (n < 0 || n > (1 << 30)) a.Fail("maxPieces must be in [0, 2^30]");
    return Napi::Number::New(info.Env(), trainer_->step(static_cast<int32_t>(n)));
  }

  // pieces(from) -> { pieces: string[], freqs: Float64Array } of the pieces added from index `from`.
  Napi::Value Pieces(const Napi::CallbackInfo& info) {
    Args a(info, "BpeTrainer.pieces", 1);
    const auto& p = trainer_->pieces();
    const int64_t from = a.Int(0, "from");
    if (from < 0 || from > static_cast<int64_t>(p.size())) a.Fail("from is out of range");
    Napi::Array out = Napi::Array::New(info.Env(), p.size() - from);
    Napi::Float64Array f = Napi::Float64Array::New(info.Env(), p.size() - from);
    for (size_t i = from; i < p.size(); ++i) {
      out.Set(static_cast<uint32_t>(i - from), Napi::String::New(info.Env(), p[i]));
      f[i - from] = static_cast<double>(trainer_->piece_freqs()[i]);
    }
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("pieces", out);
    o.Set("freqs", f);
    return o;
  }

  Napi::Value Sentences(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(trainer_->sentences()));
  }
  Napi::Value UniqueWords(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(trainer_->unique_words()));
  }

  std::unique_ptr<pg::BpeTrainer> trainer_;
  bool began_ = false;
};

// The class's declarations (its bodies read their Args under these names).
const Decl kDecls[] = {
    {DeclKind::Constructor, "BpeTrainer", "BpeTrainer", "splitByWhitespace: boolean, allowWhitespaceOnlyPieces: boolean",
     "NativeBpeTrainer"},
    {DeclKind::Method, "BpeTrainer.addSentences", "BpeTrainer.addSentences", "text: Uint8Array", "void"},
    {DeclKind::Method, "BpeTrainer.charCounts", "BpeTrainer.charCounts", "", "{ cps: Uint32Array; counts: Float64Array }"},
    {DeclKind::Method, "BpeTrainer.begin", "BpeTrainer.begin",
     "cps: Uint32Array, scripts: Int32Array, maxPieceLength: int, splitByWhitespace: boolean, "
     "splitByUnicodeScript: boolean, splitDigits: boolean, allowWhitespaceOnlyPieces: boolean, reserved: string[]",
     "void"},
    {DeclKind::Method, "BpeTrainer.step", "BpeTrainer.step", "maxPieces: int", "number"},
    {DeclKind::Method, "BpeTrainer.pieces", "BpeTrainer.pieces", "from: int", "{ pieces: string[]; freqs: Float64Array }"},
    {DeclKind::Getter, "BpeTrainer.sentences", "BpeTrainer.sentences", "", "number"},
    {DeclKind::Getter, "BpeTrainer.uniqueWords", "BpeTrainer.uniqueWords", "", "number"},
};

}  // namespace

void RegisterBpeTrain(Napi::Env env, Napi::Object exports) {
  Define(env, exports, kDecls);
  exports.Set("BpeTrainer", BpeTrainerWrap::Define(env));
}

}  // namespace pgnode
