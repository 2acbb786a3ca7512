// BPE trainer with the semantics of sentencepiece's bpe_model_trainer.cc (spm_train
// --model_type=bpe, version 0.2): words counted from normalized sentences, rare characters (and
// the tab, spm's piece boundary) mapped to one unknown symbol that never merges, the most
// frequent adjacent pair merged first (ties: fewer characters, then bytewise smaller string), a
// merged string that was already added by another path skipped, pieces limited in length and by
// script/whitespace/digit rules. The best pair comes from a lazy max-heap, as spm 0.2's priority
// queue (older spm scanned only its most frequent 5% of candidates between refreshes).
// Measured: the same 20,000 pieces in the same order as spm_train 0.2.2 on 8 MB of IP text
// (npm run bench -- tokenizer-train).
//
// Unlike the kernels, this is a data structure that owns and grows its memory (hash tables,
// per-pair position lists); it never throws from the merge loop.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_set>
#include <vector>

namespace pg {

// Script codes the caller gives each kept character (after spm's folding of Hiragana/Katakana
// into Han): >= 0 a script, kScriptAny for digits when split_by_number is off, kScriptInherited
// for combining marks (they take the script of the character before).
constexpr int32_t kBpeScriptAny = -1;
constexpr int32_t kBpeScriptInherited = -2;

struct BpeTrainOptions {
  int32_t max_piece_length = 16;
  bool split_by_whitespace = true;
  bool split_by_unicode_script = true;
  bool split_digits = false;
  bool allow_whitespace_only_pieces = false;
};

class BpeTrainer {
 public:
  BpeTrainer(bool split_by_whitespace, bool allow_whitespace_only_pieces);

  // Counts the words of normalized sentences (UTF-8, '▁' for spaces), separated by '\n'.
  void add_sentences(const char* text, size_t bytes);
  int64_t sentences() const { return sentences_; }
  size_t unique_words() const { return words_.size(); }

  // Characters of all words (NUL excluded), weighted by word count: sorted by count descending,
  // then code point ascending (spm's Sorted()).
  void char_counts(std::vector<uint32_t>* cps, std::vector<int64_t>* counts) const;

  // Builds the symbol sequences: kept characters (cps, scripts, freqs; n of them) and every
  // other character as the unknown symbol. `reserved` are strings never added as pieces (meta
  // pieces). Returns false with *error set on bad input.
  bool begin(const uint32_t* cps, const int32_t* scripts, int32_t n, const BpeTrainOptions& opt,
             const std::vector<std::string>& reserved, std::string* error);

  // Adds up to max_pieces merged pieces; returns how many (fewer only when no pair is left).
  int32_t step(int32_t max_pieces);

  const std::vector<std::string>& pieces() const { return pieces_; }
  const std::vector<int64_t>& piece_freqs() const { return piece_freqs_; }

 private:
  struct Symbol {
    int32_t left = -1, right = -1;  // pair symbols: the two symbols merged
    int32_t nchars = 0;
    bool is_unk = false;
    bool alive = true;               // still a candidate (spm: in symbols_cache_)
    bool touched = false;            // got new positions this step
    int64_t freq = 0;                // 0 = to be recomputed (spm's ResetFreq)
    std::vector<int32_t> chars;      // kept-character indices
    std::string str;                 // UTF-8
    std::vector<uint64_t> positions; // (word << 32 | left << 16 | right), ascending
  };
  struct HeapEntry {
    int64_t freq;
    int32_t id;
  };

  // Open-addressing map (word string -> count) over an arena.
  struct WordEntry {
    uint64_t hash;
    uint32_t offset, length;
    int64_t count;
  };
  void add_word(const char* p, size_t n);
  void grow_word_table();

  // Pair map: (left << 32 | right) -> symbol id, or -2 for a pair that can never be a piece.
  int32_t pair_find(uint64_t key) const;
  void pair_set(uint64_t key, int32_t value);
  void pair_erase(uint64_t key);

  int32_t get_pair(int32_t l, int32_t r);  // creates the pair symbol if valid; -1 if none
  int32_t find_pair(int32_t l, int32_t r) const;
  bool valid_piece(const std::vector<int32_t>& chars) const;
  void compute_freq(Symbol& s);
  void add_new_pair(int32_t sid, int32_t l, int32_t r);
  void reset_freq(int32_t sid, int32_t l, int32_t r, int32_t best);
  int32_t next_index(int32_t sid, int32_t i) const;
  int32_t prev_index(int32_t sid, int32_t i) const;
  bool heap_less(const HeapEntry& a, const HeapEntry& b) const;
  void heap_push(int32_t id);

  bool split_by_whitespace_, allow_ws_only_;
  int64_t sentences_ = 0;
  std::string arena_;
  std::vector<WordEntry> words_;
  std::vector<int32_t> word_slots_;

  BpeTrainOptions opt_;
  std::vector<uint32_t> char_cp_;
  std::vector<int32_t> char_script_;
  std::vector<Symbol> syms_;
  std::vector<int32_t> seq_;          // all words' symbols, -1 = merged away
  std::vector<int64_t> seq_start_;    // word w spans seq_[seq_start_[w], seq_start_[w + 1])
  std::vector<int64_t> weight_;       // word counts
  std::vector<uint64_t> pair_keys_;
  std::vector<int32_t> pair_vals_;
  size_t pair_count_ = 0;
  std::vector<HeapEntry> heap_;
  std::vector<int32_t> touched_;
  std::unordered_set<std::string> added_;
  std::vector<std::string> pieces_;
  std::vector<int64_t> piece_freqs_;
};

}  // namespace pg
