// BPE training (see bpe_train.h): word counting, then spm's merge loop over symbol sequences
// with per-pair position lists, lazily recomputed frequencies and a max-heap for the best pair.
#include "bpe_train.h"

#include <algorithm>
#include <cstring>
#include <unordered_map>

namespace pg {

namespace {

constexpr uint64_t kEmptyKey = ~0ull;
constexpr uint32_t kWsChar = 0x2581;  // '▁'

inline uint64_t hash_bytes(const char* p, size_t n) {
  // FNV-1a over 8-byte words then the tail; good enough for word strings.
  uint64_t h = 1469598103934665603ull ^ n;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    h = (h ^ w) * 1099511628211ull;
    h ^= h >> 29;
  }
  for (; i < n; ++i) h = (h ^ static_cast<unsigned char>(p[i])) * 1099511628211ull;
  return h ^ (h >> 32);
}

inline uint64_t mix64(uint64_t k) {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdull;
  k ^= k >> 33;
  k *= 0xc4ceb9fe1a85ec53ull;
  return k ^ (k >> 33);
}

// Bytes of the UTF-8 character that starts with byte c (spm's OneCharLen).
inline int one_char_len(unsigned char c) {
  static const int kLen[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
  return kLen[c >> 4];
}

inline uint32_t decode_char(const unsigned char* p, int len) {
  switch (len) {
    case 1: return p[0];
    case 2: return ((p[0] & 0x1Fu) << 6) | (p[1] & 0x3Fu);
    case 3: return ((p[0] & 0x0Fu) << 12) | ((p[1] & 0x3Fu) << 6) | (p[2] & 0x3Fu);
    default: return ((p[0] & 0x07u) << 18) | ((p[1] & 0x3Fu) << 12) | ((p[2] & 0x3Fu) << 6) | (p[3] & 0x3Fu);
  }
}

inline void append_utf8(std::string* s, uint32_t c) {
  if (c < 0x80) {
    s->push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    s->push_back(static_cast<char>(0xC0 | (c >> 6)));
    s->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    s->push_back(static_cast<char>(0xE0 | (c >> 12)));
    s->push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    s->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {
    s->push_back(static_cast<char>(0xF0 | (c >> 18)));
    s->push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
    s->push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    s->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
}

inline uint64_t encode_pos(int64_t sid, int32_t l, int32_t r) {
  return (static_cast<uint64_t>(sid) << 32) | (static_cast<uint64_t>(l) << 16) | static_cast<uint64_t>(r);
}

}  // namespace

BpeTrainer::BpeTrainer(bool split_by_whitespace, bool allow_whitespace_only_pieces)
    : split_by_whitespace_(split_by_whitespace), allow_ws_only_(allow_whitespace_only_pieces) {
  word_slots_.assign(1 << 16, -1);
}

void BpeTrainer::grow_word_table() {
  word_slots_.assign(word_slots_.size() * 2, -1);
  const size_t mask = word_slots_.size() - 1;
  for (size_t i = 0; i < words_.size(); ++i) {
    size_t s = words_[i].hash & mask;
    while (word_slots_[s] >= 0) s = (s + 1) & mask;
    word_slots_[s] = static_cast<int32_t>(i);
  }
}

void BpeTrainer::add_word(const char* p, size_t n) {
  if (n == 0) return;
  const uint64_t h = hash_bytes(p, n);
  const size_t mask = word_slots_.size() - 1;
  size_t s = h & mask;
  for (;;) {
    const int32_t i = word_slots_[s];
    if (i < 0) break;
    WordEntry& e = words_[i];
    if (e.hash == h && e.length == n && std::memcmp(arena_.data() + e.offset, p, n) == 0) {
      ++e.count;
      return;
    }
    s = (s + 1) & mask;
  }
  word_slots_[s] = static_cast<int32_t>(words_.size());
  words_.push_back({h, static_cast<uint32_t>(arena_.size()), static_cast<uint32_t>(n), 1});
  arena_.append(p, n);
  if (words_.size() * 2 > word_slots_.size()) grow_word_table();
}

// spm's SplitIntoWords (whitespace as prefix): every '▁' starts a word, except inside a run of
// '▁' when whitespace-only pieces are allowed.
void BpeTrainer::add_sentences(const char* text, size_t bytes) {
  const char* end = text + bytes;
  const char* line = text;
  while (line < end) {
    const char* eol = static_cast<const char*>(std::memchr(line, '\n', end - line));
    if (!eol) eol = end;
    if (eol > line) {
      ++sentences_;
      if (!split_by_whitespace_) {
        add_word(line, eol - line);
      } else {
        const char* word = line;
        bool in_ws = false;
        for (const char* p = line; p < eol;) {
          const int len = std::min<int>(one_char_len(static_cast<unsigned char>(*p)), static_cast<int>(eol - p));
          const bool is_ws = len == 3 && static_cast<unsigned char>(p[0]) == 0xE2 &&
                             static_cast<unsigned char>(p[1]) == 0x96 && static_cast<unsigned char>(p[2]) == 0x81;
          if (p == line || (is_ws && (!in_ws || !allow_ws_only_))) {
            add_word(word, p - word);
            word = p;
            in_ws = true;
          }
          if (in_ws && !is_ws) in_ws = false;
          p += len;
        }
        add_word(word, eol - word);
      }
    }
    line = eol + 1;
  }
}

void BpeTrainer::char_counts(std::vector<uint32_t>* cps, std::vector<int64_t>* counts) const {
  std::unordered_map<uint32_t, int64_t> m;
  for (const WordEntry& w : words_) {
    const unsigned char* p = reinterpret_cast<const unsigned char*>(arena_.data() + w.offset);
    const unsigned char* e = p + w.length;
    while (p < e) {
      const int len = std::min<int>(one_char_len(*p), static_cast<int>(e - p));
      const uint32_t c = decode_char(p, len);
      if (c != 0) m[c] += w.count;  // spm skips NUL when counting characters
      p += len;
    }
  }
  std::vector<std::pair<uint32_t, int64_t>> v(m.begin(), m.end());
  std::sort(v.begin(), v.end(), [](const auto& a, const auto& b) {
    return a.second != b.second ? a.second > b.second : a.first < b.first;
  });
  cps->resize(v.size());
  counts->resize(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    (*cps)[i] = v[i].first;
    (*counts)[i] = v[i].second;
  }
}

// ---- pair map ---------------------------------------------------------------------------------

int32_t BpeTrainer::pair_find(uint64_t key) const {
  const size_t mask = pair_keys_.size() - 1;
  for (size_t s = mix64(key) & mask;; s = (s + 1) & mask) {
    if (pair_keys_[s] == key) return pair_vals_[s];
    if (pair_keys_[s] == kEmptyKey) return -1;
  }
}

void BpeTrainer::pair_set(uint64_t key, int32_t value) {
  if ((pair_count_ + 1) * 2 > pair_keys_.size()) {
    std::vector<uint64_t> keys(pair_keys_.size() * 2, kEmptyKey);
    std::vector<int32_t> vals(keys.size(), -1);
    const size_t mask = keys.size() - 1;
    for (size_t i = 0; i < pair_keys_.size(); ++i) {
      if (pair_keys_[i] == kEmptyKey) continue;
      size_t s = mix64(pair_keys_[i]) & mask;
      while (keys[s] != kEmptyKey) s = (s + 1) & mask;
      keys[s] = pair_keys_[i];
      vals[s] = pair_vals_[i];
    }
    pair_keys_.swap(keys);
    pair_vals_.swap(vals);
  }
  const size_t mask = pair_keys_.size() - 1;
  size_t s = mix64(key) & mask;
  while (pair_keys_[s] != kEmptyKey && pair_keys_[s] != key) s = (s + 1) & mask;
  if (pair_keys_[s] == kEmptyKey) ++pair_count_;
  pair_keys_[s] = key;
  pair_vals_[s] = value;
}

void BpeTrainer::pair_erase(uint64_t key) {
  const size_t mask = pair_keys_.size() - 1;
  size_t s = mix64(key) & mask;
  while (pair_keys_[s] != key) {
    if (pair_keys_[s] == kEmptyKey) return;
    s = (s + 1) & mask;
  }
  // Backward-shift deletion keeps probe chains intact without tombstones.
  size_t hole = s;
  for (size_t j = (s + 1) & mask; pair_keys_[j] != kEmptyKey; j = (j + 1) & mask) {
    const size_t home = mix64(pair_keys_[j]) & mask;
    const bool movable = (hole <= j) ? (home <= hole || home > j) : (home <= hole && home > j);
    if (movable) {
      pair_keys_[hole] = pair_keys_[j];
      pair_vals_[hole] = pair_vals_[j];
      hole = j;
    }
  }
  pair_keys_[hole] = kEmptyKey;
  pair_vals_[hole] = -1;
  --pair_count_;
}

// ---- training ---------------------------------------------------------------------------------

bool BpeTrainer::begin(const uint32_t* cps, const int32_t* scripts, int32_t n, const BpeTrainOptions& opt,
                       const std::vector<std::string>& reserved, std::string* error) {
  if (!syms_.empty()) {
    *error = "begin() was already called";
    return false;
  }
  opt_ = opt;
  char_cp_.assign(cps, cps + n);
  char_script_.assign(scripts, scripts + n);
  std::unordered_map<uint32_t, int32_t> index;
  index.reserve(n * 2 + 1);
  syms_.resize(n + 1);
  for (int32_t i = 0; i < n; ++i) {
    if (!index.emplace(cps[i], i).second) {
      *error = "character U+" + std::to_string(cps[i]) + " is listed twice";
      return false;
    }
    Symbol& s = syms_[i];
    s.nchars = 1;
    s.chars.push_back(i);
    append_utf8(&s.str, cps[i]);
  }
  syms_[n].is_unk = true;  // every character outside the kept set
  syms_[n].nchars = 1;
  const int32_t unk = n;
  for (const std::string& r : reserved) added_.insert(r);

  pair_keys_.assign(1 << 16, kEmptyKey);
  pair_vals_.assign(1 << 16, -1);
  seq_start_.reserve(words_.size() + 1);
  weight_.reserve(words_.size());
  seq_.reserve(arena_.size());
  for (const WordEntry& w : words_) {
    const unsigned char* p = reinterpret_cast<const unsigned char*>(arena_.data() + w.offset);
    const unsigned char* e = p + w.length;
    const size_t start = seq_.size();
    while (p < e) {
      const int len = std::min<int>(one_char_len(*p), static_cast<int>(e - p));
      const auto it = index.find(decode_char(p, len));
      seq_.push_back(it == index.end() ? unk : it->second);
      p += len;
    }
    if (seq_.size() - start > 0xFFFF) {  // positions hold 16-bit indices, as spm's do
      seq_.resize(start);
      continue;
    }
    seq_start_.push_back(static_cast<int64_t>(start));
    weight_.push_back(w.count);
  }
  seq_start_.push_back(static_cast<int64_t>(seq_.size()));
  // The word table is no longer needed.
  std::string().swap(arena_);
  std::vector<WordEntry>().swap(words_);
  std::vector<int32_t>().swap(word_slots_);

  const int64_t W = static_cast<int64_t>(weight_.size());
  for (int64_t sid = 0; sid < W; ++sid) {
    const int32_t len = static_cast<int32_t>(seq_start_[sid + 1] - seq_start_[sid]);
    for (int32_t i = 1; i < len; ++i) add_new_pair(static_cast<int32_t>(sid), i - 1, i);
  }
  for (int32_t id : touched_) {
    syms_[id].touched = false;
    compute_freq(syms_[id]);
    if (syms_[id].freq > 0) heap_push(id);
  }
  touched_.clear();
  return true;
}

// spm's IsValidSentencePiece for a candidate made of kept characters.
bool BpeTrainer::valid_piece(const std::vector<int32_t>& chars) const {
  const size_t n = chars.size();
  if (n == 0 || n > static_cast<size_t>(opt_.max_piece_length)) return false;
  bool all_ws = true;
  for (int32_t c : chars) all_ws = all_ws && char_cp_[c] == kWsChar;
  int32_t prev = kBpeScriptAny;
  for (size_t pos = 0; pos < n; ++pos) {
    const uint32_t cp = char_cp_[chars[pos]];
    // NUL, space, spm's unknown mark and its piece boundary (tab) are never inside a piece.
    if (cp == 0 || cp == 0x20 || cp == 0x2585 || cp == '\t') return false;
    if (cp == kWsChar) {
      if (!opt_.allow_whitespace_only_pieces || !all_ws) {
        if ((opt_.split_by_whitespace && pos > 0) || (!opt_.split_by_whitespace && pos > 0 && pos == n - 1)) return false;
      }
      continue;
    }
    int32_t s = char_script_[chars[pos]];
    if (s == kBpeScriptInherited) s = prev;
    const bool digit = (cp >= '0' && cp <= '9') || (cp >= 0xFF10 && cp <= 0xFF19);  // spm's decimal numbers
    if (opt_.split_digits && digit && n > 1) return false;
    if (opt_.split_by_unicode_script && s != kBpeScriptAny && prev != kBpeScriptAny && prev != s) return false;
    prev = s;
  }
  return true;
}

int32_t BpeTrainer::find_pair(int32_t l, int32_t r) const {
  if (l < 0 || r < 0) return -1;
  const int32_t v = pair_find((static_cast<uint64_t>(l) << 32) | static_cast<uint32_t>(r));
  return v >= 0 ? v : -1;
}

int32_t BpeTrainer::get_pair(int32_t l, int32_t r) {
  if (syms_[l].is_unk || syms_[r].is_unk) return -1;
  const uint64_t key = (static_cast<uint64_t>(l) << 32) | static_cast<uint32_t>(r);
  const int32_t v = pair_find(key);
  if (v >= 0) return v;
  if (v == -2) return -1;
  if (syms_[l].nchars + syms_[r].nchars > opt_.max_piece_length) {
    pair_set(key, -2);
    return -1;
  }
  std::vector<int32_t> chars(syms_[l].chars);
  chars.insert(chars.end(), syms_[r].chars.begin(), syms_[r].chars.end());
  if (!valid_piece(chars)) {
    pair_set(key, -2);  // validity depends only on the two symbols: remember it
    return -1;
  }
  const int32_t id = static_cast<int32_t>(syms_.size());
  syms_.emplace_back();
  Symbol& s = syms_.back();
  s.left = l;
  s.right = r;
  s.nchars = static_cast<int32_t>(chars.size());
  s.chars.swap(chars);
  s.str = syms_[l].str + syms_[r].str;
  pair_set(key, id);
  return id;
}

void BpeTrainer::compute_freq(Symbol& s) {
  if (s.freq > 0) return;  // still exact: every change of an occurrence reset it to 0
  int64_t freq = 0;
  size_t w = 0;
  for (size_t i = 0; i < s.positions.size(); ++i) {
    const uint64_t p = s.positions[i];
    const int64_t sid = static_cast<int64_t>(p >> 32);
    const int32_t l = static_cast<int32_t>((p >> 16) & 0xFFFF), r = static_cast<int32_t>(p & 0xFFFF);
    const int32_t* seq = seq_.data() + seq_start_[sid];
    if (seq[l] != s.left || seq[r] != s.right) continue;  // stale occurrence
    freq += weight_[sid];
    s.positions[w++] = p;
  }
  s.positions.resize(w);
  s.freq = freq;
}

void BpeTrainer::add_new_pair(int32_t sid, int32_t l, int32_t r) {
  if (l < 0 || r < 0) return;
  const int32_t* seq = seq_.data() + seq_start_[sid];
  const int32_t id = get_pair(seq[l], seq[r]);
  if (id < 0) return;
  Symbol& s = syms_[id];
  s.positions.push_back(encode_pos(sid, l, r));
  if (!s.touched) {
    s.touched = true;
    touched_.push_back(id);
  }
}

void BpeTrainer::reset_freq(int32_t sid, int32_t l, int32_t r, int32_t best) {
  if (l < 0 || r < 0) return;
  const int32_t* seq = seq_.data() + seq_start_[sid];
  const int32_t id = find_pair(seq[l], seq[r]);
  if (id >= 0 && id != best) syms_[id].freq = 0;
}

int32_t BpeTrainer::next_index(int32_t sid, int32_t i) const {
  const int32_t* seq = seq_.data() + seq_start_[sid];
  const int32_t len = static_cast<int32_t>(seq_start_[sid + 1] - seq_start_[sid]);
  for (int32_t j = i + 1; j < len; ++j)
    if (seq[j] >= 0) return j;
  return -1;
}

int32_t BpeTrainer::prev_index(int32_t sid, int32_t i) const {
  const int32_t* seq = seq_.data() + seq_start_[sid];
  for (int32_t j = i - 1; j >= 0; --j)
    if (seq[j] >= 0) return j;
  return -1;
}

// Heap order: a < b when b should be merged first (higher freq, then fewer chars, then smaller
// string), so std::push_heap keeps the best at the front.
bool BpeTrainer::heap_less(const HeapEntry& a, const HeapEntry& b) const {
  if (a.freq != b.freq) return a.freq < b.freq;
  const Symbol& x = syms_[a.id];
  const Symbol& y = syms_[b.id];
  if (x.nchars != y.nchars) return x.nchars > y.nchars;
  return x.str > y.str;
}

void BpeTrainer::heap_push(int32_t id) {
  heap_.push_back({syms_[id].freq, id});
  std::push_heap(heap_.begin(), heap_.end(), [this](const HeapEntry& a, const HeapEntry& b) { return heap_less(a, b); });
}

int32_t BpeTrainer::step(int32_t max_pieces) {
  const auto cmp = [this](const HeapEntry& a, const HeapEntry& b) { return heap_less(a, b); };
  int32_t added = 0;
  while (added < max_pieces) {
    // The best pair: heap entries are upper bounds of their symbol's frequency (it only drops
    // after it is first computed), so a popped entry that is still exact is the maximum.
    int32_t best = -1;
    while (!heap_.empty()) {
      std::pop_heap(heap_.begin(), heap_.end(), cmp);
      const HeapEntry top = heap_.back();
      heap_.pop_back();
      Symbol& s = syms_[top.id];
      if (!s.alive) continue;
      if (s.freq == 0) compute_freq(s);
      if (s.freq == 0) continue;
      if (s.freq != top.freq) {
        heap_push(top.id);
        continue;
      }
      best = top.id;
      break;
    }
    if (best < 0) break;
    Symbol& b = syms_[best];
    b.alive = false;  // spm erases it from the candidates whether it is added or a duplicate
    pair_erase((static_cast<uint64_t>(b.left) << 32) | static_cast<uint32_t>(b.right));
    // The same string reached by another path ("aa"+"a" vs "a"+"aa"), or a meta piece's string.
    if (!added_.insert(b.str).second) continue;
    pieces_.push_back(b.str);
    piece_freqs_.push_back(b.freq);
    ++added;

    const std::vector<uint64_t> positions = std::move(b.positions);
    for (const uint64_t p : positions) {
      const int32_t sid = static_cast<int32_t>(p >> 32);
      const int32_t l = static_cast<int32_t>((p >> 16) & 0xFFFF), r = static_cast<int32_t>(p & 0xFFFF);
      int32_t* seq = seq_.data() + seq_start_[sid];
      if (seq[l] < 0) continue;  // the left was merged into its neighbour earlier in this loop ("aaa")
      if (seq[r] < 0) continue;
      const int32_t next = next_index(sid, r);
      const int32_t prev = prev_index(sid, l);
      reset_freq(sid, prev, l, best);
      reset_freq(sid, r, next, best);
      seq[l] = best;
      seq[r] = -1;
      add_new_pair(sid, prev, l);
      add_new_pair(sid, l, next);
    }
    for (int32_t id : touched_) {
      Symbol& s = syms_[id];
      s.touched = false;
      s.freq = 0;
      compute_freq(s);
      if (s.freq > 0) heap_push(id);
    }
    touched_.clear();
  }
  return added;
}

}  // namespace pg
