// SentencePiece BPE encoding (sentencepiece's bpe_model.cc) of normalized UTF-8 text, for batch
// encoding on the thread pool: the same ids as src/tokenizer/bpe.ts.
//
// Semantics: the text is split into characters; repeatedly the adjacent pair whose concatenation
// is a NORMAL piece with the highest score is merged, ties going to the leftmost pair. A final
// symbol that is no piece is unknown: with byte fallback the <0xNN> pieces of its UTF-8 bytes,
// else the unk id (runs of unk joined into one, as sentencepiece does).
//
// Speed: no symbol ever spans two neighbouring characters that are adjacent in no piece, so the
// text is cut there into segments that merge independently (a word, mostly); each segment runs
// the merge loop alone, and a batch keeps a cache of segment encodings per thread.
//
// Models with USER_DEFINED or UNUSED pieces are refused (init() says why): the TypeScript encoder
// handles them.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace pg {

// sentencepiece's normalizer without a character map (LLaMA-2's "identity"): what it does to spaces.
struct BpeNormalizer {
  bool add_dummy_prefix = true;
  bool remove_extra_whitespaces = false;
  bool escape_whitespaces = true;
};

class BpeEncoder {
 public:
  // pieces: piece i is bytes[offsets[i], offsets[i+1]) (UTF-8); scores and sentencepiece types
  // (1 NORMAL, 2 UNKNOWN, 3 CONTROL, 4 USER_DEFINED, 5 UNUSED, 6 BYTE). Returns false with *error.
  bool init(const char* bytes, const int64_t* offsets, const float* scores, const int32_t* types, int32_t n,
            int32_t unk_id, bool byte_fallback, const BpeNormalizer& normalizer, std::string* error);

  // Encodes texts i in [0, n): text[offsets[i], offsets[i+1]) (well-formed UTF-8, normalized here),
  // with BOS/EOS when bos_id/eos_id >= 0, on up to `threads` pool threads. ids holds the ids of
  // all texts in order; id_offsets (n + 1) where each text's ids start.
  void encode_batch(const char* text, const int64_t* offsets, int64_t n, int threads, int32_t bos_id,
                    int32_t eos_id, std::vector<int32_t>* ids, std::vector<int64_t>* id_offsets) const;

  // Encodes one text (well-formed UTF-8, normalized here), appending its ids (no BOS/EOS).
  void encode(const char* text, size_t bytes, std::vector<int32_t>* out) const;

 private:
  struct Scratch;
  void normalize(const char* text, size_t bytes, std::string* out) const;
  void encode_with(const char* text, size_t bytes, std::vector<int32_t>* out, Scratch& s) const;
  void encode_segment(const char* seg, size_t bytes, std::vector<int32_t>* out, Scratch& s) const;
  void merge_segment(const char* seg, size_t bytes, std::vector<int32_t>* out, Scratch& s) const;
  void emit_unknown(const char* p, size_t bytes, std::vector<int32_t>* out) const;
  int32_t char_id(uint32_t cp) const;  // the id of a one-character symbol, -1 when unknown
  int32_t normal_id(const char* p, size_t bytes) const;  // the NORMAL piece with these bytes, -1 if none
  bool joinable(uint32_t a, uint32_t b) const;

  std::string bytes_;
  std::vector<int64_t> offsets_;
  std::vector<float> scores_;
  int32_t unk_id_ = 0;
  int32_t max_piece_bytes_ = 0;
  bool byte_fallback_ = false;
  BpeNormalizer normalizer_;
  int32_t byte_ids_[256];
  std::vector<int32_t> bmp_ids_;                  // id of each BMP character's one-char piece, -1 none
  std::vector<uint64_t> astral_keys_;             // open addressing: code point -> id
  std::vector<int32_t> astral_vals_;
  std::vector<uint64_t> piece_hash_;              // open addressing over NORMAL pieces: hash, id
  std::vector<int32_t> piece_slot_;
  std::vector<uint64_t> adjacent_;                // set of (a << 32 | b): a, b adjacent in a piece
};

}  // namespace pg
