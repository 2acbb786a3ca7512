// External sort of fixed-width records, for the dedup merge: records are `width` unsigned 64-bit
// words compared in order; they collect in a buffer of a fixed byte budget, which is sorted and
// spilled to a run file whenever it fills; reading merges the runs (a heap over one block of each
// run). Below the budget nothing touches the disk. Records are Uint32Array views in native
// layout, word w at [2w] (low half) and [2w + 1] (high half); I/O is synchronous (the merge phase
// has nothing else to do meanwhile).
import * as fs from 'node:fs';
import * as path from 'node:path';

/** Records read per run per refill while merging. */
const BLOCK_RECORDS = 4096;

function compare(a: Uint32Array, ai: number, b: Uint32Array, bi: number, u32s: number): number {
  for (let w = 0; w < u32s; w += 2) {
    const ah = a[ai + w + 1]!;
    const bh = b[bi + w + 1]!;
    if (ah !== bh) return ah < bh ? -1 : 1;
    const al = a[ai + w]!;
    const bl = b[bi + w]!;
    if (al !== bl) return al < bl ? -1 : 1;
  }
  return 0;
}

class RunReader {
  private readonly buf: Uint32Array;
  private count = 0;
  /** u32 offset of the current record in buf. */
  at = 0;
  private filePos = 0;

  constructor(private readonly fd: number, private readonly u32s: number) {
    this.buf = new Uint32Array(BLOCK_RECORDS * u32s);
  }

  get record(): Uint32Array {
    return this.buf;
  }

  /** Moves to the next record; false at the end of the run. */
  next(): boolean {
    this.at += this.u32s;
    if (this.at < this.count * this.u32s) return true;
    const bytes = fs.readSync(this.fd, this.buf, 0, this.buf.byteLength, this.filePos);
    this.filePos += bytes;
    this.count = bytes / (4 * this.u32s);
    this.at = 0;
    return this.count > 0;
  }
}

export class RunSorter {
  private readonly u32s: number;
  private readonly capacity: number;
  private buf: Uint32Array;
  private count = 0;
  private readonly runs: string[] = [];
  private order = new Uint32Array(0);
  private sorted = new Uint32Array(0);
  /** Records added in all. */
  size = 0;

  /** @param budgetBytes the buffer's size with the sort's scratch (an order and a copy for records
   *  of several words; single words sort in place); at least 16 records. */
  constructor(private readonly dir: string, private readonly name: string, readonly width: number, budgetBytes: number) {
    this.u32s = 2 * width;
    const bytesPerRecord = width === 1 ? 8 : 2 * 8 * width + 4;
    this.capacity = Math.max(16, Math.floor(budgetBytes / bytesPerRecord));
    this.buf = new Uint32Array(Math.min(this.capacity, 1024) * this.u32s);
  }

  /** Run files written so far, removed or not (tests force spills with a small budget). */
  spilled = 0;

  /** Adds a record of one word: (hi, lo) 32-bit halves. */
  add1(hi: number, lo: number): void {
    const at = this.slot();
    this.buf[at] = lo;
    this.buf[at + 1] = hi;
  }

  /** Adds a record from 2 * width 32-bit halves, most significant first: (hi0, lo0, hi1, lo1, ...). */
  add(halves: ArrayLike<number>): void {
    const at = this.slot();
    for (let w = 0; w < this.u32s; w += 2) {
      this.buf[at + w + 1] = halves[w]!;
      this.buf[at + w] = halves[w + 1]!;
    }
  }

  private slot(): number {
    if (this.count === this.capacity) this.spill();
    if ((this.count + 1) * this.u32s > this.buf.length) {
      // grow geometrically up to the budget, so small inputs stay small
      const grown = new Uint32Array(Math.min(this.capacity, 2 * (this.buf.length / this.u32s)) * this.u32s);
      grown.set(this.buf);
      this.buf = grown;
    }
    this.size++;
    return this.count++ * this.u32s;
  }

  private sortBuffer(): Uint32Array {
    const n = this.count;
    const u = this.u32s;
    if (this.width === 1) {
      const words = new BigUint64Array(this.buf.buffer, 0, n);
      words.sort();
      return this.buf.subarray(0, n * u);
    }
    // scratch kept across spills: a fresh pair per spill would leave garbage of the budget's size
    if (this.order.length < n) this.order = new Uint32Array(n);
    if (this.sorted.length < n * u) this.sorted = new Uint32Array(n * u);
    const order = this.order.subarray(0, n);
    for (let i = 0; i < n; i++) order[i] = i;
    const b = this.buf;
    order.sort((x, y) => compare(b, x * u, b, y * u, u));
    const out = this.sorted.subarray(0, n * u);
    for (let i = 0; i < n; i++) out.set(b.subarray(order[i]! * u, order[i]! * u + u), i * u);
    return out;
  }

  private spill(): void {
    const sorted = this.sortBuffer();
    const file = path.join(this.dir, `${this.name}-${this.runs.length}.run`);
    fs.mkdirSync(this.dir, { recursive: true });
    fs.writeFileSync(file, sorted);
    this.runs.push(file);
    this.spilled++;
    this.count = 0;
  }

  /** Calls `each` with every record in ascending order (the view is valid during the call), then frees the buffer and run files. */
  forEach(each: (rec: Uint32Array, at: number) => void): void {
    if (this.runs.length === 0) {
      const sorted = this.sortBuffer();
      for (let at = 0; at < sorted.length; at += this.u32s) each(sorted, at);
      this.dispose();
      return;
    }
    if (this.count > 0) this.spill();
    this.buf = new Uint32Array(0);
    const fds = this.runs.map((f) => fs.openSync(f, 'r'));
    try {
      const readers = fds.map((fd) => new RunReader(fd, this.u32s)).filter((r) => ((r.at = -this.u32s), r.next()));
      // binary min-heap of readers by their current record
      const heap = readers;
      const less = (i: number, j: number): boolean => compare(heap[i]!.record, heap[i]!.at, heap[j]!.record, heap[j]!.at, this.u32s) < 0;
      const down = (i: number): void => {
        for (;;) {
          const l = 2 * i + 1;
          const r = l + 1;
          let m = i;
          if (l < heap.length && less(l, m)) m = l;
          if (r < heap.length && less(r, m)) m = r;
          if (m === i) return;
          [heap[i], heap[m]] = [heap[m]!, heap[i]!];
          i = m;
        }
      };
      for (let i = (heap.length >> 1) - 1; i >= 0; i--) down(i);
      while (heap.length > 0) {
        const top = heap[0]!;
        each(top.record, top.at);
        if (!top.next()) {
          heap[0] = heap[heap.length - 1]!;
          heap.pop();
        }
        if (heap.length > 0) down(0);
      }
    } finally {
      for (const fd of fds) fs.closeSync(fd);
      this.dispose();
    }
  }

  dispose(): void {
    this.buf = new Uint32Array(0);
    this.order = new Uint32Array(0);
    this.sorted = new Uint32Array(0);
    this.count = 0;
    for (const f of this.runs) fs.rmSync(f, { force: true });
    this.runs.length = 0;
  }
}
