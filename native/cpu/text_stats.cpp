// Text statistics for the data-prep quality filters (Gopher rules, Rae et al. 2021, app. A), in
// one pass per statistic over UTF-8 bytes instead of JavaScript strings, maps and regexes. The
// definitions are the JavaScript ones of src/data/filters.ts (its reference twin lives in
// test/data/text-stats.test.ts): lengths are UTF-16 code units, whitespace is JavaScript's \s,
// classes and lower case come from text_unicode.h (generated from Node's own tables). Equal
// strings are found by 64-bit hashes: a collision at document scale is negligible.
// Documents are independent: parallel over documents. Scratch (words, hash tables) grows with
// the document, so each thread owns vectors reused across its documents.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "patentgpt/runtime.h"
#include "text_unicode.h"

namespace pg {

namespace {

inline uint64_t mix64(uint64_t x) {  // splitmix64 finaliser
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// Classes of the ASCII characters, looked up instead of compared: most of a patent is ASCII.
enum : uint8_t { kSpace = 1, kDigit = 2, kLetNum = 4, kPunct = 8 };
struct AsciiTable {
  uint8_t f[128];
  constexpr AsciiTable() : f() {
    for (int c = 0; c < 128; c++) {
      const bool digit = c >= '0' && c <= '9', alpha = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
      f[c] = static_cast<uint8_t>((c == 0x20 || (c >= 0x09 && c <= 0x0d) ? kSpace : 0) | (digit ? kDigit : 0) |
                                  (digit || alpha ? kLetNum : (c > 0x20 && c < 0x7f ? kPunct : 0)));
    }
  }
};
constexpr AsciiTable kAscii;

// JavaScript's \s (WhiteSpace and LineTerminator).
inline bool is_space(uint32_t c) {
  if (c < 0x80) return kAscii.f[c] & kSpace;
  return c == 0xa0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 ||
         c == 0x202f || c == 0x205f || c == 0x3000 || c == 0xfeff;
}

// The CJK ranges of filters.ts: each such character is a word of its own.
inline bool is_cjk(uint32_t c) {
  if (c < 0x3040) return false;
  return (c >= 0x3040 && c <= 0x30ff) || (c >= 0x3400 && c <= 0x4dbf) || (c >= 0x4e00 && c <= 0x9fff) ||
         (c >= 0xf900 && c <= 0xfaff) || (c >= 0xac00 && c <= 0xd7af);
}

// 0 other, 1 letter/number/mark, 2 punctuation/symbol.
inline int char_class(uint32_t c) {
  if (c < 0x80) return kAscii.f[c] & kLetNum ? 1 : kAscii.f[c] & kPunct ? 2 : 0;
  if (c >= 0xd800 && c <= 0xdfff) return 0;  // a lone surrogate (a slice cut inside a pair)
  const uint32_t* end = unicode::kClassStart + unicode::kClassRanges;
  const uint32_t* it = std::upper_bound(unicode::kClassStart, end, c);
  return unicode::kClass[it - unicode::kClassStart - 1];
}

inline uint32_t to_lower(uint32_t c) {
  if (c < 0x80) return c >= 'A' && c <= 'Z' ? c + 32 : c;
  int lo = 0, hi = unicode::kLowerPairs;
  while (lo < hi) {
    const int mid = (lo + hi) / 2;
    if (unicode::kLower[mid][0] < c) lo = mid + 1;
    else hi = mid;
  }
  return lo < unicode::kLowerPairs && unicode::kLower[lo][0] == c ? unicode::kLower[lo][1] : c;
}

inline int units_of(uint32_t c) { return c >= 0x10000 ? 2 : 1; }

// One code point of a UTF-8 text: value and bytes. Invalid bytes read as U+FFFD, one byte each.
struct Cp {
  uint32_t c;
  int bytes;
};

inline Cp decode(const uint8_t* s, int64_t i, int64_t n) {
  const uint8_t b = s[i];
  if (b < 0x80) return {b, 1};
  int len = b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : b >= 0xc0 ? 2 : 0;
  if (len == 0 || b > 0xf4 || i + len > n) return {0xfffd, 1};
  uint32_t c = b & (0x3f >> (len - 1));
  for (int k = 1; k < len; k++) {
    if ((s[i + k] & 0xc0) != 0x80) return {0xfffd, 1};
    c = (c << 6) | (s[i + k] & 0x3f);
  }
  return {c, len};
}

// The first `analyze` UTF-16 units of a text, as code points; a pair cut in half by the limit
// ends the slice with its lone high surrogate, as String.prototype.slice does.
class Slice {
 public:
  Slice(const uint8_t* s, int64_t n, int64_t analyze) : s_(s), n_(n), analyze_(analyze) {}
  // Next code point and its UTF-16 units, or false at the end.
  bool next(uint32_t& c, int& units) {
    if (i_ >= n_ || u_ >= analyze_) return false;
    if (s_[i_] < 0x80) {
      c = s_[i_++];
      units = 1;
      u_++;
      return true;
    }
    Cp cp = decode(s_, i_, n_);
    c = cp.c;
    units = units_of(c);
    if (u_ + units > analyze_) {
      c = 0xd800 + ((c - 0x10000) >> 10);
      units = 1;
      i_ = n_;
      cut_ = true;
    } else {
      i_ += cp.bytes;
    }
    u_ += units;
    return true;
  }
  // After the last next(): whether the slice was the whole text.
  bool whole() const { return i_ >= n_ && !cut_; }

 private:
  const uint8_t* s_;
  int64_t n_, analyze_, i_ = 0, u_ = 0;
  bool cut_ = false;
};

// Open-addressing table of 64-bit keys: count and first index of each, one 16-byte slot per key
// (a probe touches one cache line). Keys are hashes already mixed (mix64), so their low bits
// index the table directly.
class Counter {
 public:
  void clear(size_t expected) {
    size_t cap = 16;
    while (cap < expected * 2) cap <<= 1;
    slots_.assign(cap, Slot{0, 0, 0});
    mask_ = cap - 1;
    size_ = 0;
  }
  // Adds one occurrence at index `at`; returns its slot (valid until the table grows).
  size_t add(uint64_t key, int64_t at) {
    key |= key == 0;  // 0 marks an empty slot
    if ((size_ + 1) * 2 > slots_.size()) grow();
    size_t j = key & mask_;
    while (slots_[j].key != 0 && slots_[j].key != key) j = (j + 1) & mask_;
    Slot& e = slots_[j];
    if (e.key == 0) {
      e.key = key;
      e.first = static_cast<int32_t>(at);
      size_++;
    }
    e.count++;
    return j;
  }
  uint32_t count_at(size_t slot) const { return slots_[slot].count; }
  // Highest count, ties to the earliest first occurrence (insertion order); its first index.
  void top(uint32_t& best, int64_t& at) const {
    best = 0;
    at = -1;
    for (const Slot& e : slots_)
      if (e.key != 0 && (e.count > best || (e.count == best && e.first < at))) {
        best = e.count;
        at = e.first;
      }
  }

 private:
  struct Slot {
    uint64_t key;
    uint32_t count;
    int32_t first;  // item indexes stay far below 2^31 (a document's words or lines)
  };
  void grow() {
    std::vector<Slot> old = std::move(slots_);
    clear(old.size());
    for (const Slot& e : old)
      if (e.key != 0) {
        size_t t = e.key & mask_;
        while (slots_[t].key != 0) t = (t + 1) & mask_;
        slots_[t] = e;
        size_++;
      }
  }
  std::vector<Slot> slots_;
  size_t mask_ = 0, size_ = 0;
};

struct Scratch {
  std::vector<uint64_t> word_hash;
  std::vector<int32_t> word_units;
  std::vector<uint32_t> pending;  // edge punctuation held until a letter follows (else stripped)
  std::vector<uint32_t> slots;    // table slot of each n-gram
  std::vector<uint8_t> covered;
  Counter counter, lines, paragraphs;  // reused across documents: no allocation once grown
};

// Dup share of items (lines or paragraphs), trimmed and non-empty, by count and by units.
class DupItems {
 public:
  DupItems(Counter& c, size_t expected) : c_(c) { c_.clear(expected); }
  void add(uint64_t hash, int64_t units) {
    n_++;
    units_ += units;
    if (c_.count_at(c_.add(hash, n_)) > 1) dup_++, dup_units_ += units;
  }
  double frac() const { return n_ ? static_cast<double>(dup_) / n_ : 0; }
  double unit_frac() const { return units_ ? static_cast<double>(dup_units_) / units_ : 0; }

 private:
  Counter& c_;
  int64_t n_ = 0, units_ = 0, dup_ = 0, dup_units_ = 0;
};

constexpr uint64_t kFnvOffset = 0xcbf29ce484222325ULL, kFnvPrime = 0x100000001b3ULL;

// A trimmed item being read: FNV-1a hash (over code points) and units of its content up to the
// last non-space character; the spaces after it are held apart until a character follows.
struct Item {
  uint64_t h = kFnvOffset, h_spaces = kFnvOffset;
  int64_t units = 0, units_pending = 0;
  bool any = false;
  void space(uint32_t c, int u) {
    if (!any) return;  // leading spaces are trimmed
    h_spaces = (h_spaces ^ c) * kFnvPrime;
    units_pending += u;
  }
  void chr(uint32_t c, int u) {
    if (units_pending > 0) h = (h ^ mix64(h_spaces)) * kFnvPrime;  // the spaces between characters
    h_spaces = kFnvOffset;
    units += units_pending;
    units_pending = 0;
    h = (h ^ c) * kFnvPrime;
    units += u;
    any = true;
  }
};

inline bool is_bullet(uint32_t c) {
  return c == 0x2022 || c == '-' || c == '*' || c == 0x2023 || c == 0x25e6 || c == 0x25aa;
}

constexpr int kFixed = 15;

// Statistic 0-4 (over the whole text): words, CJK characters, Latin words and their units, and
// matches of /#|\.\.\.|\u2026/, fed one code point at a time.
struct WholeCounts {
  int64_t cjk = 0, latin_words = 0, latin_units = 0, hash_ellipsis = 0;
  bool in_word = false;
  int dots = 0;  // consecutive '.' since the last match
  void add(uint32_t c, bool space, bool cjk_char, int units) {
    if (c == '.') {
      if (++dots == 3) hash_ellipsis++, dots = 0;
    } else {
      dots = 0;
      hash_ellipsis += c == '#' || c == 0x2026;
    }
    if (cjk_char) {
      cjk++;
      in_word = false;
    } else if (space) {
      in_word = false;
    } else {
      latin_words += !in_word;
      latin_units += units;
      in_word = true;
    }
  }
  void write(double* out) const {
    out[0] = static_cast<double>(cjk + latin_words);
    out[1] = static_cast<double>(cjk);
    out[2] = static_cast<double>(latin_words);
    out[3] = static_cast<double>(latin_units);
    out[4] = static_cast<double>(hash_ellipsis);
  }
};

// The whole-text counts by their own walk (when the analysed slice stops short of the end).
void whole_counts(WholeCounts& w, const uint8_t* s, int64_t n) {
  for (int64_t i = 0; i < n;) {
    if (s[i] < 0x80) {  // ASCII: no decoding, never CJK
      const uint8_t b = s[i++];
      w.add(b, kAscii.f[b] & kSpace, false, 1);
      continue;
    }
    const Cp cp = decode(s, i, n);
    i += cp.bytes;
    w.add(cp.c, is_space(cp.c), is_cjk(cp.c), units_of(cp.c));
  }
}

// A word for the n-gram statistics, hashed as it is read: lower case, FNV-1a over code points,
// edge punctuation and symbols (class 2) stripped. Inner punctuation waits in `pending` until a
// letter follows, so the hash is the one of the stripped word read in one go.
struct WordReader {
  uint64_t h = kFnvOffset;
  int32_t units = 0;
  bool any = false;
  void add(uint32_t c, Scratch& sc) {
    const uint32_t lc = to_lower(c);
    if (char_class(c) == 2) {
      if (any) sc.pending.push_back(lc);  // leading ones are stripped at once
      return;
    }
    for (uint32_t p : sc.pending) h = (h ^ p) * kFnvPrime, units += units_of(p);
    sc.pending.clear();
    h = (h ^ lc) * kFnvPrime;
    units += units_of(lc);
    any = true;
  }
  void end(Scratch& sc) {
    if (any) {
      sc.word_hash.push_back(mix64(h));
      sc.word_units.push_back(units);
    }
    sc.pending.clear();
    *this = WordReader();
  }
};

void stats_one(double* out, const uint8_t* s, int64_t n, int64_t analyze, const int32_t* ngrams, int m,
               Scratch& sc) {
  // One walk over the analysed slice: characters, lines, paragraphs, words for n-grams, and the
  // whole-text counts too, which need a second walk only when the slice stops short of the end.
  WholeCounts whole;
  int64_t chars = 0, digits = 0, symbols = 0;
  int64_t lines = 0, bullets = 0, ellipsis_lines = 0;
  // sized for about one line per 64 bytes of the analysed slice, so that few documents grow them
  const size_t expected_lines = static_cast<size_t>(std::min<int64_t>(n, analyze) / 64 + 16);
  DupItems line_dups(sc.lines, expected_lines), para_dups(sc.paragraphs, expected_lines / 4);
  Item line, para;
  bool line_bullet = false;
  uint32_t tail[3] = {0, 0, 0};  // the line's last three code points before trailing spaces
  bool space_after_tail = false;
  int para_newlines = 0;         // newlines in the current run of spaces
  const bool want_words = m > 0;  // the n-gram statistics are the only users of the words
  sc.word_hash.clear();
  sc.word_units.clear();
  sc.pending.clear();
  WordReader word;
  auto end_line = [&]() {
    if (line.any) {
      lines++;
      bullets += line_bullet;
      ellipsis_lines += tail[2] == 0x2026 || (tail[0] == '.' && tail[1] == '.' && tail[2] == '.');
      line_dups.add(mix64(line.h), line.units);
    }
    line = Item();
    line_bullet = false;
    tail[0] = tail[1] = tail[2] = 0;
    space_after_tail = false;
  };
  auto end_para = [&]() {
    if (para.any) para_dups.add(mix64(para.h), para.units);
    para = Item();
  };
  Slice slice(s, n, analyze);
  uint32_t c;
  int u;
  while (slice.next(c, u)) {
    chars++;
    const bool space = is_space(c);
    const bool cjk = is_cjk(c);
    whole.add(c, space, cjk, u);
    if (c >= '0' && c <= '9') digits++;
    else if (!space && char_class(c) != 1) symbols++;
    if (space) {
      if (c == '\n') {
        end_line();
        para_newlines++;
      } else {
        space_after_tail = true;
        line.space(c, u);
      }
      para.space(c, u);
      if (want_words) word.end(sc);
      continue;
    }
    if (!line.any) line_bullet = is_bullet(c);
    line.chr(c, u);
    if (space_after_tail) tail[0] = tail[1] = tail[2] = 0, space_after_tail = false;
    tail[0] = tail[1];
    tail[1] = tail[2];
    tail[2] = c;
    if (para_newlines >= 2) end_para();
    para_newlines = 0;
    para.chr(c, u);
    if (!want_words) continue;
    if (cjk) {  // a word of its own
      word.end(sc);
      word.add(c, sc);
      word.end(sc);
    } else {
      word.add(c, sc);
    }
  }
  end_line();
  end_para();
  if (want_words) word.end(sc);
  if (!slice.whole()) {
    whole = WholeCounts();
    whole_counts(whole, s, n);
  }
  whole.write(out);
  out[5] = static_cast<double>(chars);
  out[6] = static_cast<double>(digits);
  out[7] = static_cast<double>(symbols);
  out[8] = static_cast<double>(lines);
  out[9] = static_cast<double>(bullets);
  out[10] = static_cast<double>(ellipsis_lines);
  out[11] = line_dups.frac();
  out[12] = line_dups.unit_frac();
  out[13] = para_dups.frac();
  out[14] = para_dups.unit_frac();

  // N-grams of words: share of units in the most frequent n-gram (kind 0) or in n-grams seen
  // more than once, each word counted once (kind 1).
  const int64_t W = static_cast<int64_t>(sc.word_hash.size());
  int64_t total = 0;
  for (int32_t x : sc.word_units) total += x;
  for (int g = 0; g < m; g++) {
    const int nn = ngrams[2 * g], kind = ngrams[2 * g + 1];
    double v = 0;
    if (W >= nn && total > 0) {
      const int64_t K = W - nn + 1;
      sc.slots.resize(K);
      sc.counter.clear(static_cast<size_t>(K));  // room for every n-gram: slots never move
      // Rolling polynomial hash over the (mixed) word hashes: O(1) per n-gram whatever n.
      constexpr uint64_t kBase = 0x9e3779b97f4a7c15ULL;  // odd: invertible mod 2^64
      uint64_t top_power = 1;                            // kBase^(nn-1)
      for (int j = 1; j < nn; j++) top_power *= kBase;
      const uint64_t* wh = sc.word_hash.data();
      uint64_t h = 0;
      for (int j = 0; j < nn; j++) h = h * kBase + wh[j];
      const uint64_t salt = 0xd6e8feb86659fd93ULL * static_cast<uint64_t>(nn);
      for (int64_t i = 0; i < K; i++) {
        if (i > 0) h = (h - wh[i - 1] * top_power) * kBase + wh[i + nn - 1];
        sc.slots[i] = static_cast<uint32_t>(sc.counter.add(mix64(h ^ salt), i));
      }
      if (kind == 0) {
        uint32_t best;
        int64_t at;
        sc.counter.top(best, at);
        if (best >= 2) {
          int64_t len = 0;
          for (int j = 0; j < nn; j++) len += sc.word_units[at + j];
          v = static_cast<double>(len) * best / total;
        }
      } else {
        sc.covered.assign(W, 0);
        for (int64_t i = 0; i < K; i++)
          if (sc.counter.count_at(sc.slots[i]) > 1) std::fill(sc.covered.begin() + i, sc.covered.begin() + i + nn, 1);
        int64_t dup = 0;
        for (int64_t i = 0; i < W; i++)
          if (sc.covered[i]) dup += sc.word_units[i];
        v = static_cast<double>(dup) / total;
      }
    }
    out[kFixed + g] = v;
  }
}

}  // namespace

// out (N, 15 + m): per document text[offsets[d], offsets[d+1]) (UTF-8):
//   0 words, 1 CJK characters, 2 Latin words, 3 Latin word units, 4 '#'/'...'/U+2026 count
//   (all over the whole text); over its first `analyze` UTF-16 units: 5 code points, 6 ASCII
//   digits, 7 symbols (not letter, number, mark or space), 8 non-blank lines, 9 bullet lines,
//   10 ellipsis lines, 11/12 duplicate line share (of lines / of units), 13/14 the same for
//   paragraphs, then one value per (n, kind) pair of ngrams (m, 2): kind 0 top n-gram unit
//   share, kind 1 duplicated n-gram unit share.
void text_stats(double* out, const uint8_t* text, const int64_t* offsets, int64_t N, int64_t analyze,
                const int32_t* ngrams, int m) {
  parallel_for(N, 1, [&](int64_t d0, int64_t d1) {
    Scratch sc;
    for (int64_t d = d0; d < d1; d++)
      stats_one(out + d * (kFixed + m), text + offsets[d], offsets[d + 1] - offsets[d], analyze, ngrams, m, sc);
  });
}

}  // namespace pg
