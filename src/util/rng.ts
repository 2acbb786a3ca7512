// Counter-based randomness for data order: every random choice is a pure function of
// (seed, what, index), so a stream's position is a few integers and restoring it needs no
// generator state. hash32 is murmur3's finaliser chained over 32-bit words; SeededStream is
// sfc32 seeded from such a hash, for shuffles.

function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** A 32-bit hash of non-negative integers (each up to 2^53) or strings. */
export function hash32(...parts: (number | string)[]): number {
  let h = 0x9e3779b9;
  const mix = (w: number): void => {
    h = fmix32((h ^ w) + 0x7f4a7c15 + Math.imul(h, 31));
  };
  for (const p of parts) {
    if (typeof p === 'string') {
      for (let i = 0; i < p.length; i++) mix(p.charCodeAt(i));
      mix(p.length);
    } else {
      if (!Number.isSafeInteger(p) || p < 0) throw new RangeError(`hash32: ${p} is not a non-negative safe integer`);
      mix(p % 0x100000000);
      mix(Math.floor(p / 0x100000000));
    }
  }
  return h;
}

/** A uniform number in [0, 1) with 53 random bits, a pure function of the parts. */
export function hashUniform(...parts: (number | string)[]): number {
  const hi = hash32(...parts, 0) >>> 5;
  const lo = hash32(...parts, 1) >>> 6;
  return (hi * 67108864 + lo) / 9007199254740992;
}

/** sfc32: a small fast generator; seeded from hash32 of the parts. */
export class SeededStream {
  private a: number;
  private b: number;
  private c: number;
  private d = 1;

  constructor(...parts: (number | string)[]) {
    this.a = hash32(...parts, 1);
    this.b = hash32(...parts, 2);
    this.c = hash32(...parts, 3);
    for (let i = 0; i < 12; i++) this.nextUint32();
  }

  nextUint32(): number {
    const t = (((this.a + this.b) >>> 0) + this.d) >>> 0;
    this.d = (this.d + 1) >>> 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) >>> 0;
    this.c = ((this.c << 21) | (this.c >>> 11)) >>> 0;
    this.c = (this.c + t) >>> 0;
    return t;
  }

  /** Uniform in [0, 1), 53 bits. */
  uniform(): number {
    const hi = this.nextUint32() >>> 5;
    const lo = this.nextUint32() >>> 6;
    return (hi * 67108864 + lo) / 9007199254740992;
  }

  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.uniform() * n);
  }
}

/** A permutation of [0, n) (Fisher-Yates) that depends only on the parts. */
export function permutation(n: number, ...parts: (number | string)[]): Uint32Array {
  const out = new Uint32Array(n);
  for (let i = 0; i < n; i++) out[i] = i;
  const rng = new SeededStream(...parts);
  for (let i = n - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    const t = out[i]!;
    out[i] = out[j]!;
    out[j] = t;
  }
  return out;
}
