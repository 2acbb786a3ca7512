// SentencePiece BPE encoding (sentencepiece/src/bpe_model.cc) over a normalized string.
//
// Semantics, as bpe_model.cc has them: the text is split into characters (a user-defined piece
// that starts at a position is taken whole, longest first, and is frozen); then, repeatedly, the
// adjacent pair whose concatenation is a piece (NORMAL, USER_DEFINED or UNUSED) with the highest
// score is merged, ties going to the leftmost pair. A final symbol that is an UNUSED piece is
// split back into the two symbols it was made of. A symbol that is no piece is unknown: with
// byte_fallback it becomes the <0xNN> pieces of its UTF-8 bytes, else the unk id.
//
// Two implementations of the same thing:
// - encodeExact: the direct port (one priority queue over the whole text). The reference.
// - encode: the fast path. A merge can only create a symbol that is a piece, so no symbol ever
//   spans a place where the two neighbouring characters appear next to each other in no
//   mergeable piece. Cutting the text at every such place gives segments that BPE treats
//   independently (merges in one segment neither see nor reorder those in another), so each
//   segment is encoded alone and its ids cached by its text. Short segments use a linear scan
//   for the best pair, long ones the priority queue. Models with UNUSED pieces take encodeExact,
//   because sentencepiece resolves UNUSED pieces with a map that spans the whole sentence.
import { PieceType, type Piece } from './model.js';

/** A growable Int32Array for ids. */
export class IdBuffer {
  data: Int32Array;
  length = 0;
  constructor(capacity = 64) {
    this.data = new Int32Array(Math.max(8, capacity));
  }
  push(id: number): void {
    if (this.length === this.data.length) this.grow(1);
    this.data[this.length++] = id;
  }
  pushAll(ids: Int32Array): void {
    if (this.length + ids.length > this.data.length) this.grow(ids.length);
    this.data.set(ids, this.length);
    this.length += ids.length;
  }
  private grow(extra: number): void {
    const next = new Int32Array(Math.max(this.data.length * 2, this.length + extra));
    next.set(this.data.subarray(0, this.length));
    this.data = next;
  }
  /** A copy of the ids pushed so far. */
  toArray(): Int32Array {
    return this.data.slice(0, this.length);
  }
}

const SHORT_SEGMENT = 48; // code points; longer segments use the priority queue
const CACHE_MAX_SEGMENT = 256; // UTF-16 units; longer segments are not cached
const CACHE_MAX_ENTRIES = 1 << 18;

function codePointLength(c: number): number {
  return c >= 0x10000 ? 2 : 1;
}

export interface BpeOptions {
  pieces: readonly Piece[];
  unkId: number;
  byteFallback: boolean;
}

export class BpeModel {
  /** NORMAL, USER_DEFINED and UNUSED pieces: what a merge may produce (sentencepiece's pieces_). */
  private readonly mergeable = new Map<string, number>();
  /** CONTROL, UNKNOWN and BYTE pieces (sentencepiece's reserved_id_map_), looked up first. */
  private readonly reserved = new Map<string, number>();
  private readonly scores: Float64Array;
  private readonly unused: Uint8Array;
  private readonly hasUnused: boolean;
  private readonly maxPieceUnits: number;
  private readonly unkId: number;
  private readonly byteFallback: boolean;
  /** Id of <0xNN> for each byte (unk when the piece is missing). */
  private readonly byteIds: Int32Array;
  /** Final id of a lone BMP character, -1 when it is unknown. */
  private readonly bmpId: Int32Array;
  /** Class of each BMP character that occurs inside a mergeable piece of 2+ characters; 0 = none. */
  private readonly bmpClass: Uint16Array | Uint32Array;
  private readonly astralClass = new Map<number, number>();
  private readonly classCount: number;
  /** Bit (a * classCount + b) is set when characters of classes a, b are adjacent in some piece. */
  private readonly pairBits: Uint8Array | null;
  private readonly pairSet: Set<number> | null;
  /** User-defined pieces by first UTF-16 unit, longest first. */
  private readonly userByFirst = new Map<number, { piece: string; id: number }[]>();
  private readonly cache = new Map<string, Int32Array | number>();
  /**
   * The merges as a hash table of id pairs: (a, b) -> id of the piece a + b, for every split of
   * every mergeable piece into two parts that can be symbols (mergeable pieces, or characters,
   * which get a "pair id" >= vocab size when they are no piece themselves). A symbol with no pair
   * id takes part in no merge. Lets the merge loop of short segments run on ints, not substrings.
   */
  private readonly pairIdBmp: Int32Array;
  private readonly pairIdAstral = new Map<number, number>();
  private readonly mergeKeyA: Int32Array;
  private readonly mergeKeyB: Int32Array;
  private readonly mergeVal: Int32Array;
  private readonly mergeBits: number;

  constructor(opts: BpeOptions) {
    const { pieces } = opts;
    this.unkId = opts.unkId;
    this.byteFallback = opts.byteFallback;
    this.scores = new Float64Array(pieces.length);
    this.unused = new Uint8Array(pieces.length);
    let maxUnits = 0;
    let hasUnused = false;
    for (let id = 0; id < pieces.length; id++) {
      const p = pieces[id]!;
      this.scores[id] = p.score;
      if (p.type === PieceType.NORMAL || p.type === PieceType.USER_DEFINED || p.type === PieceType.UNUSED) {
        this.mergeable.set(p.piece, id);
        if (p.piece.length > maxUnits) maxUnits = p.piece.length;
        if (p.type === PieceType.UNUSED) {
          this.unused[id] = 1;
          hasUnused = true;
        }
        if (p.type === PieceType.USER_DEFINED) {
          const first = p.piece.charCodeAt(0);
          let list = this.userByFirst.get(first);
          if (!list) this.userByFirst.set(first, (list = []));
          list.push({ piece: p.piece, id });
          list.sort((a, b) => b.piece.length - a.piece.length);
        }
      } else {
        this.reserved.set(p.piece, id);
      }
    }
    this.hasUnused = hasUnused;
    this.maxPieceUnits = maxUnits;
    this.byteIds = new Int32Array(256);
    for (let b = 0; b < 256; b++) {
      const id = this.reserved.get(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
      this.byteIds[b] = id !== undefined && pieces[id]!.type === PieceType.BYTE ? id : this.unkId;
    }
    this.bmpId = new Int32Array(0x10000).fill(-1);
    for (let c = 0; c < 0x10000; c++) {
      if (c >= 0xd800 && c < 0xe000) continue;
      const id = this.lookup(String.fromCharCode(c));
      if (id !== this.unkId) this.bmpId[c] = id;
    }

    // Character classes and the adjacency relation of characters inside mergeable pieces.
    const classes = new Map<number, number>();
    const classOf = (cp: number): number => {
      let k = classes.get(cp);
      if (k === undefined) classes.set(cp, (k = classes.size + 1));
      return k;
    };
    const adjacent: number[] = [];
    for (const piece of this.mergeable.keys()) {
      let prev = 0;
      for (let i = 0; i < piece.length; ) {
        const cp = piece.codePointAt(i)!;
        const k = classOf(cp);
        if (i > 0) adjacent.push(prev, k);
        prev = k;
        i += codePointLength(cp);
      }
    }
    // Characters that occur only as whole one-character pieces need no class.
    const used = new Set<number>(adjacent);
    const renumber = new Map<number, number>();
    for (const [cp, k] of classes) {
      if (!used.has(k)) continue;
      const k2 = renumber.size + 1;
      renumber.set(k, k2);
      if (cp < 0x10000) continue;
      this.astralClass.set(cp, k2);
    }
    this.classCount = renumber.size + 1;
    this.bmpClass = this.classCount < 0x10000 ? new Uint16Array(0x10000) : new Uint32Array(0x10000);
    for (const [cp, k] of classes) {
      const k2 = renumber.get(k);
      if (k2 !== undefined && cp < 0x10000) this.bmpClass[cp] = k2;
    }
    const K = this.classCount;
    if (K * K <= 1 << 25) {
      this.pairBits = new Uint8Array((K * K + 7) >> 3);
      this.pairSet = null;
      for (let i = 0; i < adjacent.length; i += 2) {
        const bit = renumber.get(adjacent[i]!)! * K + renumber.get(adjacent[i + 1]!)!;
        this.pairBits[bit >> 3]! |= 1 << (bit & 7);
      }
    } else {
      this.pairBits = null;
      this.pairSet = new Set<number>();
      for (let i = 0; i < adjacent.length; i += 2) {
        this.pairSet.add(renumber.get(adjacent[i]!)! * K + renumber.get(adjacent[i + 1]!)!);
      }
    }

    // The merge table.
    this.pairIdBmp = new Int32Array(0x10000).fill(-1);
    let nextVirtual = pieces.length;
    const pairIdOf = (part: string, create: boolean): number => {
      const id = this.mergeable.get(part);
      if (id !== undefined) return id;
      const cp = part.codePointAt(0)!;
      if (part.length !== codePointLength(cp)) return -1; // no piece, more than one character
      const known = cp < 0x10000 ? this.pairIdBmp[cp]! : (this.pairIdAstral.get(cp) ?? -1);
      if (known >= 0 || !create) return known;
      const v = nextVirtual++;
      if (cp < 0x10000) this.pairIdBmp[cp] = v;
      else this.pairIdAstral.set(cp, v);
      return v;
    };
    for (const [piece, id] of this.mergeable) {
      const cp = piece.codePointAt(0)!;
      if (piece.length === codePointLength(cp)) {
        if (cp < 0x10000) this.pairIdBmp[cp] = id;
        else this.pairIdAstral.set(cp, id);
      }
    }
    const triples: number[] = [];
    for (const [piece, id] of this.mergeable) {
      for (let k = codePointLength(piece.codePointAt(0)!); k < piece.length; k += codePointLength(piece.codePointAt(k)!)) {
        const a = pairIdOf(piece.slice(0, k), true);
        const b = pairIdOf(piece.slice(k), true);
        if (a >= 0 && b >= 0) triples.push(a, b, id);
      }
    }
    let bits = 4;
    while (1 << bits < (triples.length / 3) * 2) bits++;
    this.mergeBits = bits;
    this.mergeKeyA = new Int32Array(1 << bits).fill(-1);
    this.mergeKeyB = new Int32Array(1 << bits);
    this.mergeVal = new Int32Array(1 << bits);
    const mask = (1 << bits) - 1;
    for (let t = 0; t < triples.length; t += 3) {
      const a = triples[t]!;
      const b = triples[t + 1]!;
      let h = this.mergeHash(a, b);
      while (this.mergeKeyA[h] !== -1 && !(this.mergeKeyA[h] === a && this.mergeKeyB[h] === b)) h = (h + 1) & mask;
      this.mergeKeyA[h] = a;
      this.mergeKeyB[h] = b;
      this.mergeVal[h] = triples[t + 2]!;
    }
  }

  /** sentencepiece's PieceToId: reserved pieces first, then the others, else unk. */
  lookup(piece: string): number {
    return this.reserved.get(piece) ?? this.mergeable.get(piece) ?? this.unkId;
  }

  /** Forgets the cached segment encodings. */
  clearCache(): void {
    this.cache.clear();
  }

  private emitUnknown(symbol: string, out: IdBuffer): void {
    if (!this.byteFallback) {
      out.push(this.unkId);
      return;
    }
    // The <0xNN> pieces of the symbol's UTF-8 (the text is well-formed: no lone surrogates).
    const b = this.byteIds;
    for (let i = 0; i < symbol.length; i++) {
      let c = symbol.charCodeAt(i);
      if (c < 0x80) out.push(b[c]!);
      else if (c < 0x800) {
        out.push(b[0xc0 | (c >> 6)]!);
        out.push(b[0x80 | (c & 0x3f)]!);
      } else if (c >= 0xd800 && c < 0xdc00 && i + 1 < symbol.length) {
        c = ((c - 0xd800) << 10) + (symbol.charCodeAt(++i) - 0xdc00) + 0x10000;
        out.push(b[0xf0 | (c >> 18)]!);
        out.push(b[0x80 | ((c >> 12) & 0x3f)]!);
        out.push(b[0x80 | ((c >> 6) & 0x3f)]!);
        out.push(b[0x80 | (c & 0x3f)]!);
      } else {
        if (c >= 0xd800 && c < 0xe000) c = 0xfffd;
        out.push(b[0xe0 | (c >> 12)]!);
        out.push(b[0x80 | ((c >> 6) & 0x3f)]!);
        out.push(b[0x80 | (c & 0x3f)]!);
      }
    }
  }

  private joinable(a: number, b: number): boolean {
    if (a === 0 || b === 0) return false;
    const bit = a * this.classCount + b;
    return this.pairBits ? (this.pairBits[bit >> 3]! & (1 << (bit & 7))) !== 0 : this.pairSet!.has(bit);
  }

  /** Encodes normalized text (spaces already '▁', dummy prefix added) and appends the ids to out. */
  encode(text: string, out: IdBuffer): void {
    if (this.hasUnused) {
      this.encodeExact(text, out);
      return;
    }
    const n = text.length;
    const hasUser = this.userByFirst.size > 0;
    let segStart = 0;
    let prevClass = 0;
    let i = 0;
    while (i < n) {
      let c = text.charCodeAt(i);
      if (hasUser) {
        const list = this.userByFirst.get(c);
        if (list) {
          const m = list.find((u) => text.startsWith(u.piece, i));
          if (m) {
            if (i > segStart) this.encodeSegment(text, segStart, i, out);
            out.push(m.id);
            i += m.piece.length;
            segStart = i;
            prevClass = 0;
            continue;
          }
        }
      }
      let w = 1;
      if (c >= 0xd800 && c < 0xdc00 && i + 1 < n) {
        const d = text.charCodeAt(i + 1);
        if (d >= 0xdc00 && d < 0xe000) {
          c = ((c - 0xd800) << 10) + (d - 0xdc00) + 0x10000;
          w = 2;
        }
      }
      const k = c < 0x10000 ? this.bmpClass[c]! : (this.astralClass.get(c) ?? 0);
      if (i > segStart && !this.joinable(prevClass, k)) {
        this.encodeSegment(text, segStart, i, out);
        segStart = i;
      }
      prevClass = k;
      i += w;
    }
    if (n > segStart) this.encodeSegment(text, segStart, n, out);
  }

  private encodeSegment(text: string, start: number, end: number, out: IdBuffer): void {
    if (end - start === 1) {
      const id = this.bmpId[text.charCodeAt(start)]!;
      if (id >= 0) out.push(id);
      else this.emitUnknown(text[start]!, out);
      return;
    }
    const seg = text.slice(start, end);
    const cached = this.cache.get(seg);
    if (cached !== undefined) {
      if (typeof cached === 'number') out.push(cached);
      else out.pushAll(cached);
      return;
    }
    const mark = out.length;
    this.mergeSegment(seg, out);
    if (seg.length <= CACHE_MAX_SEGMENT) {
      if (this.cache.size >= CACHE_MAX_ENTRIES) this.cache.clear();
      const count = out.length - mark;
      this.cache.set(seg, count === 1 ? out.data[mark]! : out.data.slice(mark, out.length));
    }
  }

  // Scratch arrays of mergeSegment (short segments), reused from call to call.
  private scratchSize = 0;
  private sStart = new Int32Array(0);
  private sEnd = new Int32Array(0);
  private sNext = new Int32Array(0);
  private sPrev = new Int32Array(0);
  private sSymId = new Int32Array(0);
  private sPairId = new Int32Array(0);
  private sPairScore = new Float64Array(0);
  private sMerged = new Uint8Array(0);

  private growScratch(n: number): void {
    const size = Math.max(64, n, this.scratchSize * 2);
    this.scratchSize = size;
    this.sStart = new Int32Array(size);
    this.sEnd = new Int32Array(size);
    this.sNext = new Int32Array(size);
    this.sPrev = new Int32Array(size);
    this.sSymId = new Int32Array(size);
    this.sPairId = new Int32Array(size);
    this.sPairScore = new Float64Array(size);
    this.sMerged = new Uint8Array(size);
  }

  private mergeHash(a: number, b: number): number {
    return Math.imul(Math.imul(a, 0x9e3779b1) ^ b, 0x85ebca77) >>> (32 - this.mergeBits);
  }

  /** Id of the piece that merging symbols with pair ids a and b makes, or -1. */
  private merged(a: number, b: number): number {
    const keyA = this.mergeKeyA;
    const mask = keyA.length - 1;
    for (let h = this.mergeHash(a, b); ; h = (h + 1) & mask) {
      const k = keyA[h]!;
      if (k === -1) return -1;
      if (k === a && this.mergeKeyB[h] === b) return this.mergeVal[h]!;
    }
  }

  /** Scores the pair (l, next[l]) of the scratch symbols: -Infinity when it merges into no piece. */
  private evalPair(l: number): void {
    const r = this.sNext[l]!;
    this.sPairScore[l] = -Infinity;
    if (r < 0) return;
    const a = this.sSymId[l]!;
    const b = this.sSymId[r]!;
    if (a < 0 || b < 0) return;
    const id = this.merged(a, b);
    if (id < 0) return;
    this.sPairScore[l] = this.scores[id]!;
    this.sPairId[l] = id;
  }

  /** BPE over one segment with no frozen symbols and no UNUSED pieces. */
  private mergeSegment(seg: string, out: IdBuffer): void {
    // Symbols: characters, as [start, end) in seg, linked both ways.
    const n0 = seg.length;
    if (n0 > this.scratchSize) this.growScratch(n0);
    const start = this.sStart;
    let n = 0;
    for (let i = 0; i < n0; ) {
      start[n++] = i;
      i += codePointLength(seg.codePointAt(i)!);
    }
    if (n === 1) {
      this.emitSymbol(seg, -1, out);
      return;
    }
    if (n > SHORT_SEGMENT) {
      this.mergeWithQueue(seg, start.slice(0, n), n, null, out);
      return;
    }
    const { sEnd: end, sNext: next, sPrev: prev, sSymId: symId, sPairScore: pairScore, sPairId: pairId } = this;
    // symId: the pair id of each symbol (a piece id once merged); merged[i] says it was merged.
    const merged = this.sMerged;
    for (let i = 0; i < n; i++) {
      end[i] = i + 1 < n ? start[i + 1]! : n0;
      next[i] = i + 1 < n ? i + 1 : -1;
      prev[i] = i - 1;
      const c = seg.charCodeAt(start[i]!);
      symId[i] = c >= 0xd800 && c < 0xdc00 ? (this.pairIdAstral.get(seg.codePointAt(start[i]!)!) ?? -1) : this.pairIdBmp[c]!;
      merged[i] = 0;
    }
    for (let i = 0; i < n; i++) this.evalPair(i);
    for (;;) {
      let best = -1;
      let bestScore = -Infinity;
      for (let i = 0; i >= 0; i = next[i]!) {
        if (pairScore[i]! > bestScore) {
          bestScore = pairScore[i]!;
          best = i;
        }
      }
      if (best < 0) break;
      const r = next[best]!;
      end[best] = end[r]!;
      symId[best] = pairId[best]!;
      merged[best] = 1;
      const rn = next[r]!;
      next[best] = rn;
      if (rn >= 0) prev[rn] = best;
      if (prev[best]! >= 0) this.evalPair(prev[best]!);
      this.evalPair(best);
    }
    for (let i = 0; i >= 0; i = next[i]!) {
      if (merged[i]) out.push(symId[i]!);
      else this.emitSymbol(seg.slice(start[i]!, end[i]!), -1, out);
    }
  }

  /** Appends the ids of a final symbol; `mergedId` is its id when a merge made it. */
  private emitSymbol(piece: string, mergedId: number, out: IdBuffer, revMerge?: Map<string, [string, string]>): void {
    const id = mergedId >= 0 ? mergedId : this.lookup(piece);
    if (revMerge && this.unused[id]) {
      const parts = revMerge.get(piece);
      if (parts) {
        this.emitSymbol(parts[0], -1, out, revMerge);
        this.emitSymbol(parts[1], -1, out, revMerge);
        return;
      }
    }
    if (id === this.unkId) this.emitUnknown(piece, out);
    else out.push(id);
  }

  /**
   * The priority-queue BPE of bpe_model.cc over symbols [start[i], start[i+1]) of text; `frozen`
   * marks symbols that never merge (user-defined pieces). With revMerge, UNUSED pieces are split
   * back at the end as sentencepiece does.
   */
  private mergeWithQueue(
    text: string,
    start: Int32Array,
    n: number,
    frozen: Uint8Array | null,
    out: IdBuffer,
    revMerge?: Map<string, [string, string]>,
  ): void {
    const len = new Int32Array(n);
    const next = new Int32Array(n);
    const prev = new Int32Array(n);
    const symId = new Int32Array(n).fill(-1);
    for (let i = 0; i < n; i++) {
      len[i] = (i + 1 < n ? start[i + 1]! : text.length) - start[i]!;
      next[i] = i + 1 < n ? i + 1 : -1;
      prev[i] = i - 1;
    }
    // Agenda entries: score, left, right, merged length, merged id. At most n - 1 + 2 per merge.
    const cap = 3 * n + 4;
    const eScore = new Float64Array(cap);
    const eLeft = new Int32Array(cap);
    const eRight = new Int32Array(cap);
    const eSize = new Int32Array(cap);
    const eId = new Int32Array(cap);
    const heap = new Int32Array(cap);
    let entries = 0;
    let heapSize = 0;
    const before = (a: number, b: number): boolean =>
      eScore[a]! > eScore[b]! || (eScore[a] === eScore[b] && eLeft[a]! < eLeft[b]!);
    const pushEntry = (e: number): void => {
      let i = heapSize++;
      while (i > 0) {
        const p = (i - 1) >> 1;
        if (!before(e, heap[p]!)) break;
        heap[i] = heap[p]!;
        i = p;
      }
      heap[i] = e;
    };
    const popEntry = (): number => {
      const top = heap[0]!;
      const last = heap[--heapSize]!;
      let i = 0;
      for (;;) {
        let c = 2 * i + 1;
        if (c >= heapSize) break;
        if (c + 1 < heapSize && before(heap[c + 1]!, heap[c]!)) c++;
        if (!before(heap[c]!, last)) break;
        heap[i] = heap[c]!;
        i = c;
      }
      heap[i] = last;
      return top;
    };
    const maxUnits = this.maxPieceUnits;
    const maybeAdd = (l: number, r: number): void => {
      if (l < 0 || r < 0 || (frozen && (frozen[l] || frozen[r]))) return;
      const size = len[l]! + len[r]!;
      if (size > maxUnits) return;
      const piece = text.slice(start[l]!, start[l]! + size);
      const id = this.mergeable.get(piece);
      if (id === undefined) return;
      const e = entries++;
      eScore[e] = this.scores[id]!;
      eLeft[e] = l;
      eRight[e] = r;
      eSize[e] = size;
      eId[e] = id;
      pushEntry(e);
      if (revMerge && this.unused[id]) {
        revMerge.set(piece, [text.slice(start[l]!, start[r]!), text.slice(start[r]!, start[r]! + len[r]!)]);
      }
    };
    for (let i = 1; i < n; i++) maybeAdd(i - 1, i);
    while (heapSize > 0) {
      const e = popEntry();
      const l = eLeft[e]!;
      const r = eRight[e]!;
      if (len[l] === 0 || len[r] === 0 || len[l]! + len[r]! !== eSize[e]) continue;
      len[l] = eSize[e]!;
      len[r] = 0;
      symId[l] = eId[e]!;
      const rn = next[r]!;
      next[l] = rn;
      if (rn >= 0) prev[rn] = l;
      maybeAdd(prev[l]!, l);
      maybeAdd(l, next[l]!);
    }
    for (let i = 0; i >= 0; i = next[i]!) {
      const id = frozen && frozen[i] ? this.lookup(text.slice(start[i]!, start[i]! + len[i]!)) : symId[i]!;
      this.emitSymbol(text.slice(start[i]!, start[i]! + len[i]!), id, out, revMerge);
    }
  }

  /** The direct port of bpe_model.cc's Encode over the whole text: the reference for encode(). */
  encodeExact(text: string, out: IdBuffer): void {
    if (text.length === 0) return;
    const starts: number[] = [];
    const frozenList: number[] = [];
    for (let i = 0; i < text.length; ) {
      starts.push(i);
      const list = this.userByFirst.get(text.charCodeAt(i));
      const m = list?.find((u) => text.startsWith(u.piece, i));
      if (m) {
        frozenList.push(1);
        i += m.piece.length;
      } else {
        frozenList.push(0);
        i += codePointLength(text.codePointAt(i)!);
      }
    }
    this.mergeWithQueue(text, Int32Array.from(starts), starts.length, Uint8Array.from(frozenList), out, new Map());
  }
}
