// SentencePiece BPE encoding (see bpe_encode.h): piece and adjacency hash tables built once,
// then per text: cut into segments, merge each with a max-heap agenda, cache by segment bytes.
#include "bpe_encode.h"

#include <algorithm>
#include <cstring>
#include <memory>
#include <string_view>
#include <unordered_map>

#include "patentgpt/runtime.h"

namespace pg {

namespace {

constexpr uint64_t kEmpty = ~0ull;
constexpr int32_t kNormal = 1, kUserDefined = 4, kUnused = 5, kByte = 6;  // sentencepiece piece types
constexpr size_t kCacheMaxSegment = 256;  // bytes; longer segments are not cached
constexpr size_t kCacheMaxEntries = 1 << 18;
constexpr size_t kKeyBlock = 1 << 16;  // bytes per block of cached segment keys (>= kCacheMaxSegment)

inline uint64_t hash_bytes(const char* p, size_t n) {
  uint64_t h = 1469598103934665603ull ^ n;
  for (size_t i = 0; i < n; ++i) h = (h ^ static_cast<unsigned char>(p[i])) * 1099511628211ull;
  return h ^ (h >> 29);
}

inline uint64_t mix64(uint64_t k) {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdull;
  k ^= k >> 33;
  return k;
}

// The code point at p (well-formed UTF-8 of at most `left` bytes) and its length in bytes.
inline uint32_t next_char(const unsigned char* p, size_t left, int* len) {
  const unsigned char c = p[0];
  if (c < 0x80 || left < 2) {
    *len = 1;
    return c;
  }
  if (c < 0xE0) {
    *len = 2;
    return ((c & 0x1Fu) << 6) | (p[1] & 0x3Fu);
  }
  if (c < 0xF0 || left < 4) {
    *len = left < 3 ? static_cast<int>(left) : 3;
    return ((c & 0x0Fu) << 12) | ((p[1] & 0x3Fu) << 6) | (left > 2 ? (p[2] & 0x3Fu) : 0);
  }
  *len = 4;
  return ((c & 0x07u) << 18) | ((p[1] & 0x3Fu) << 12) | ((p[2] & 0x3Fu) << 6) | (p[3] & 0x3Fu);
}

size_t table_size(size_t count) {
  size_t n = 16;
  while (n < count * 2) n <<= 1;
  return n;
}

}  // namespace

// Per-thread state of a batch: the normalized text, merge scratch and the segment cache.
struct BpeEncoder::Scratch {
  struct Entry {
    float score;
    int32_t left, right, size, id;
  };
  std::string normalized;
  std::vector<int32_t> start, len, id, next, prev;
  std::vector<Entry> heap;
  // Segment bytes -> (offset, count) in cache_ids; keys live in fixed blocks that never move.
  std::unordered_map<std::string_view, std::pair<uint32_t, uint32_t>> cache;
  std::vector<int32_t> cache_ids;
  std::vector<std::unique_ptr<char[]>> key_blocks;
  size_t key_used = kKeyBlock;

  std::string_view keep(const char* p, size_t n) {
    if (key_used + n > kKeyBlock) {
      key_blocks.emplace_back(new char[kKeyBlock]);
      key_used = 0;
    }
    char* dst = key_blocks.back().get() + key_used;
    std::memcpy(dst, p, n);
    key_used += n;
    return std::string_view(dst, n);
  }
  void clear_cache() {
    cache.clear();
    cache_ids.clear();
    key_blocks.clear();
    key_used = kKeyBlock;
  }
};

bool BpeEncoder::init(const char* bytes, const int64_t* offsets, const float* scores, const int32_t* types, int32_t n,
                      int32_t unk_id, bool byte_fallback, const BpeNormalizer& normalizer, std::string* error) {
  if (unk_id < 0 || unk_id >= n) {
    *error = "unk id " + std::to_string(unk_id) + " is out of range";
    return false;
  }
  for (int32_t i = 0; i < n; ++i) {
    if (types[i] == kUserDefined || types[i] == kUnused) {
      *error = "models with USER_DEFINED or UNUSED pieces are encoded by the TypeScript encoder";
      return false;
    }
    if (types[i] < kNormal || types[i] > kByte) {
      *error = "piece " + std::to_string(i) + " has an unknown type " + std::to_string(types[i]);
      return false;
    }
  }
  bytes_.assign(bytes, static_cast<size_t>(offsets[n]));
  offsets_.assign(offsets, offsets + n + 1);
  scores_.assign(scores, scores + n);
  unk_id_ = unk_id;
  normalizer_ = normalizer;
  max_piece_bytes_ = 0;
  byte_fallback_ = byte_fallback;
  for (int b = 0; b < 256; ++b) byte_ids_[b] = unk_id;

  size_t normals = 0;
  for (int32_t i = 0; i < n; ++i) normals += types[i] == kNormal;
  piece_hash_.assign(table_size(normals), 0);
  piece_slot_.assign(piece_hash_.size(), -1);
  bmp_ids_.assign(0x10000, -1);
  std::vector<std::pair<uint32_t, int32_t>> astral;
  std::vector<uint64_t> pairs;
  const auto set_char = [&](uint32_t cp, int32_t id, bool reserved) {
    // sentencepiece's PieceToId looks at reserved pieces (CONTROL, UNKNOWN, BYTE) first.
    if (cp < 0x10000) {
      if (reserved || bmp_ids_[cp] < 0) bmp_ids_[cp] = id;
    } else {
      astral.emplace_back(cp, id);
    }
  };
  for (int32_t i = 0; i < n; ++i) {
    const char* p = bytes_.data() + offsets_[i];
    const size_t len = static_cast<size_t>(offsets_[i + 1] - offsets_[i]);
    if (len == 0) continue;
    if (types[i] == kByte && len == 6 && std::memcmp(p, "<0x", 3) == 0 && p[5] == '>') {
      const int b = static_cast<int>(std::strtol(std::string(p + 3, 2).c_str(), nullptr, 16));
      byte_ids_[b] = i;
    }
    int clen = 0;
    const uint32_t first = next_char(reinterpret_cast<const unsigned char*>(p), len, &clen);
    if (static_cast<size_t>(clen) == len) set_char(first, i, types[i] != kNormal);
    if (types[i] != kNormal) continue;
    max_piece_bytes_ = std::max<int32_t>(max_piece_bytes_, static_cast<int32_t>(len));
    const uint64_t h = hash_bytes(p, len);
    const size_t mask = piece_hash_.size() - 1;
    size_t s = h & mask;
    while (piece_slot_[s] >= 0) s = (s + 1) & mask;
    piece_hash_[s] = h;
    piece_slot_[s] = i;
    // Adjacent characters inside the piece.
    uint32_t prev = first;
    for (size_t k = clen; k < len;) {
      int l = 0;
      const uint32_t c = next_char(reinterpret_cast<const unsigned char*>(p + k), len - k, &l);
      pairs.push_back((static_cast<uint64_t>(prev) << 32) | c);
      prev = c;
      k += l;
    }
  }
  std::stable_sort(astral.begin(), astral.end(), [&](const auto& a, const auto& b) { return a.first < b.first; });
  astral_keys_.assign(table_size(astral.size()), kEmpty);
  astral_vals_.assign(astral_keys_.size(), -1);
  for (const auto& [cp, id] : astral) {
    const size_t mask = astral_keys_.size() - 1;
    size_t s = mix64(cp) & mask;
    while (astral_keys_[s] != kEmpty && astral_keys_[s] != cp) s = (s + 1) & mask;
    const bool reserved = types[id] != kNormal;
    if (astral_keys_[s] == kEmpty || reserved) {
      astral_keys_[s] = cp;
      astral_vals_[s] = id;
    }
  }
  adjacent_.assign(table_size(pairs.size()), kEmpty);
  for (const uint64_t k : pairs) {
    const size_t mask = adjacent_.size() - 1;
    size_t s = mix64(k) & mask;
    while (adjacent_[s] != kEmpty && adjacent_[s] != k) s = (s + 1) & mask;
    adjacent_[s] = k;
  }
  return true;
}

int32_t BpeEncoder::char_id(uint32_t cp) const {
  int32_t id = -1;
  if (cp < 0x10000) {
    id = bmp_ids_[cp];
  } else {
    const size_t mask = astral_keys_.size() - 1;
    for (size_t s = mix64(cp) & mask; astral_keys_[s] != kEmpty; s = (s + 1) & mask) {
      if (astral_keys_[s] == cp) {
        id = astral_vals_[s];
        break;
      }
    }
  }
  return id == unk_id_ ? -1 : id;
}

int32_t BpeEncoder::normal_id(const char* p, size_t bytes) const {
  const uint64_t h = hash_bytes(p, bytes);
  const size_t mask = piece_hash_.size() - 1;
  for (size_t s = h & mask; piece_slot_[s] >= 0; s = (s + 1) & mask) {
    if (piece_hash_[s] != h) continue;
    const int32_t id = piece_slot_[s];
    const int64_t off = offsets_[id];
    if (static_cast<size_t>(offsets_[id + 1] - off) == bytes && std::memcmp(bytes_.data() + off, p, bytes) == 0) return id;
  }
  return -1;
}

bool BpeEncoder::joinable(uint32_t a, uint32_t b) const {
  const uint64_t k = (static_cast<uint64_t>(a) << 32) | b;
  const size_t mask = adjacent_.size() - 1;
  for (size_t s = mix64(k) & mask; adjacent_[s] != kEmpty; s = (s + 1) & mask)
    if (adjacent_[s] == k) return true;
  return false;
}

void BpeEncoder::emit_unknown(const char* p, size_t bytes, std::vector<int32_t>* out) const {
  if (!byte_fallback_) {
    out->push_back(unk_id_);
    return;
  }
  for (size_t i = 0; i < bytes; ++i) out->push_back(byte_ids_[static_cast<unsigned char>(p[i])]);
}

// The merge loop of bpe_model.cc over one segment: an agenda of candidate pairs, best score
// first, leftmost first among equal scores; stale entries are skipped when popped.
void BpeEncoder::merge_segment(const char* seg, size_t bytes, std::vector<int32_t>* out, Scratch& s) const {
  s.start.clear();
  s.len.clear();
  for (size_t i = 0; i < bytes;) {
    int l = 0;
    next_char(reinterpret_cast<const unsigned char*>(seg + i), bytes - i, &l);
    s.start.push_back(static_cast<int32_t>(i));
    s.len.push_back(l);
    i += l;
  }
  const int32_t n = static_cast<int32_t>(s.start.size());
  s.id.assign(n, -1);
  s.next.resize(n);
  s.prev.resize(n);
  for (int32_t i = 0; i < n; ++i) {
    s.next[i] = i + 1 < n ? i + 1 : -1;
    s.prev[i] = i - 1;
  }
  const auto worse = [](const Scratch::Entry& a, const Scratch::Entry& b) {
    return a.score < b.score || (a.score == b.score && a.left > b.left);
  };
  s.heap.clear();
  const auto maybe_add = [&](int32_t l, int32_t r) {
    if (l < 0 || r < 0) return;
    const int32_t size = s.len[l] + s.len[r];
    if (size > max_piece_bytes_) return;
    const int32_t id = normal_id(seg + s.start[l], static_cast<size_t>(size));
    if (id < 0) return;
    s.heap.push_back({scores_[id], l, r, size, id});
    std::push_heap(s.heap.begin(), s.heap.end(), worse);
  };
  for (int32_t i = 1; i < n; ++i) maybe_add(i - 1, i);
  while (!s.heap.empty()) {
    std::pop_heap(s.heap.begin(), s.heap.end(), worse);
    const Scratch::Entry e = s.heap.back();
    s.heap.pop_back();
    if (s.len[e.left] == 0 || s.len[e.right] == 0 || s.len[e.left] + s.len[e.right] != e.size) continue;
    s.len[e.left] = e.size;
    s.len[e.right] = 0;
    s.id[e.left] = e.id;
    const int32_t rn = s.next[e.right];
    s.next[e.left] = rn;
    if (rn >= 0) s.prev[rn] = e.left;
    maybe_add(s.prev[e.left], e.left);
    maybe_add(e.left, rn);
  }
  for (int32_t i = 0; i >= 0; i = s.next[i]) {
    if (s.id[i] >= 0) {
      out->push_back(s.id[i]);
      continue;
    }
    int l = 0;
    const uint32_t cp = next_char(reinterpret_cast<const unsigned char*>(seg + s.start[i]), bytes - s.start[i], &l);
    const int32_t id = char_id(cp);
    if (id >= 0) out->push_back(id);
    else emit_unknown(seg + s.start[i], static_cast<size_t>(s.len[i]), out);
  }
}

void BpeEncoder::encode_segment(const char* seg, size_t bytes, std::vector<int32_t>* out, Scratch& s) const {
  int first = 0;
  const uint32_t c0 = next_char(reinterpret_cast<const unsigned char*>(seg), bytes, &first);
  if (static_cast<size_t>(first) == bytes) {  // one character: no merge loop
    const int32_t id = char_id(c0);
    if (id >= 0) out->push_back(id);
    else emit_unknown(seg, bytes, out);
    return;
  }
  const bool cacheable = bytes <= kCacheMaxSegment;
  if (cacheable) {
    const auto it = s.cache.find(std::string_view(seg, bytes));
    if (it != s.cache.end()) {
      out->insert(out->end(), s.cache_ids.begin() + it->second.first,
                  s.cache_ids.begin() + it->second.first + it->second.second);
      return;
    }
  }
  const size_t mark = out->size();
  merge_segment(seg, bytes, out, s);
  if (cacheable) {
    if (s.cache.size() >= kCacheMaxEntries) s.clear_cache();
    const uint32_t count = static_cast<uint32_t>(out->size() - mark);
    s.cache.emplace(s.keep(seg, bytes), std::make_pair(static_cast<uint32_t>(s.cache_ids.size()), count));
    s.cache_ids.insert(s.cache_ids.end(), out->begin() + mark, out->end());
  }
}

// normalizeText of src/tokenizer/sentencepiece.ts: extra spaces removed (leading, runs, trailing)
// when asked, spaces escaped as '▁', the dummy prefix added to a non-empty text.
void BpeEncoder::normalize(const char* text, size_t bytes, std::string* out) const {
  static const char kWs[] = "\xe2\x96\x81";
  const char* space = normalizer_.escape_whitespaces ? kWs : " ";
  const size_t space_len = normalizer_.escape_whitespaces ? 3 : 1;
  out->clear();
  size_t i = 0;
  if (normalizer_.remove_extra_whitespaces)
    while (i < bytes && text[i] == ' ') ++i;
  if (i == bytes) return;
  if (normalizer_.add_dummy_prefix) out->append(space, space_len);
  for (; i < bytes; ++i) {
    if (text[i] != ' ') {
      out->push_back(text[i]);
      continue;
    }
    if (normalizer_.remove_extra_whitespaces && i > 0 && text[i - 1] == ' ') continue;
    out->append(space, space_len);
  }
  if (normalizer_.remove_extra_whitespaces) {
    // Trailing space symbols go (after escaping, a literal '▁' in the text goes too, as in TS).
    const size_t prefix = normalizer_.add_dummy_prefix ? space_len : 0;
    while (out->size() >= prefix + space_len && out->compare(out->size() - space_len, space_len, space, space_len) == 0)
      out->resize(out->size() - space_len);
  }
}

void BpeEncoder::encode_with(const char* raw, size_t raw_bytes, std::vector<int32_t>* out, Scratch& s) const {
  normalize(raw, raw_bytes, &s.normalized);
  const char* text = s.normalized.data();
  const size_t bytes = s.normalized.size();
  const size_t mark = out->size();
  const unsigned char* p = reinterpret_cast<const unsigned char*>(text);
  size_t seg = 0;
  uint32_t prev = 0;
  for (size_t i = 0; i < bytes;) {
    int len = 0;
    const uint32_t cp = next_char(p + i, bytes - i, &len);
    if (i > seg && !joinable(prev, cp)) {
      encode_segment(text + seg, i - seg, out, s);
      seg = i;
    }
    prev = cp;
    i += len;
  }
  if (bytes > seg) encode_segment(text + seg, bytes - seg, out, s);
  if (!byte_fallback_) {
    // sentencepiece joins a run of unknown symbols into one unk piece.
    size_t w = mark;
    for (size_t r = mark; r < out->size(); ++r) {
      if ((*out)[r] == unk_id_ && w > mark && (*out)[w - 1] == unk_id_) continue;
      (*out)[w++] = (*out)[r];
    }
    out->resize(w);
  }
}

void BpeEncoder::encode(const char* text, size_t bytes, std::vector<int32_t>* out) const {
  Scratch s;
  encode_with(text, bytes, out, s);
}

void BpeEncoder::encode_batch(const char* text, const int64_t* offsets, int64_t n, int threads, int32_t bos_id,
                              int32_t eos_id, std::vector<int32_t>* ids, std::vector<int64_t>* id_offsets) const {
  const int parts = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(threads, n)));
  // Contiguous runs of texts with about the same number of bytes each.
  std::vector<int64_t> bounds(parts + 1, n);
  bounds[0] = 0;
  const int64_t total = offsets[n] - offsets[0];
  for (int t = 1, i = 0; t < parts; ++t) {
    const int64_t target = offsets[0] + total * t / parts;
    while (i < n && offsets[i] < target) ++i;
    bounds[t] = std::max<int64_t>(i, bounds[t - 1]);
  }
  std::vector<std::vector<int32_t>> part_ids(parts);
  std::vector<int64_t> counts(n);
  parallel_for(parts, 1, [&](int64_t begin, int64_t end) {
    Scratch s;
    for (int64_t t = begin; t < end; ++t) {
      std::vector<int32_t>& out = part_ids[t];
      for (int64_t i = bounds[t]; i < bounds[t + 1]; ++i) {
        const size_t mark = out.size();
        if (bos_id >= 0) out.push_back(bos_id);
        encode_with(text + offsets[i], static_cast<size_t>(offsets[i + 1] - offsets[i]), &out, s);
        if (eos_id >= 0) out.push_back(eos_id);
        counts[i] = static_cast<int64_t>(out.size() - mark);
      }
    }
  });
  id_offsets->assign(n + 1, 0);
  for (int64_t i = 0; i < n; ++i) (*id_offsets)[i + 1] = (*id_offsets)[i] + counts[i];
  ids->clear();
  ids->reserve(static_cast<size_t>((*id_offsets)[n]));
  for (const auto& v : part_ids) ids->insert(ids->end(), v.begin(), v.end());
}

}  // namespace pg
