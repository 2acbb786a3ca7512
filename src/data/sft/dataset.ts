// SFT data sets: several files, each read, normalised, rendered and split; then mixed by weight.
//   split:   a record goes to validation when hashUniform(splitSeed, its conversation) is below
//            valFraction: a pure function of the content, so the split does not move when files
//            are reordered or grow, and a duplicated record never sits on both sides.
//   mixture: a source of weight w contributes its training examples floor(w) times plus a
//            seeded fraction w - floor(w) of them once more (w = 0.5 takes half, 2 takes all
//            twice); the mixed set is then shuffled by seed. Validation is never weighted.
import { PatentGPTError } from '../../errors.js';
import { hashUniform, permutation } from '../../util/rng.js';
import { normalizeRecord, SkipCounter, type SftFieldMap, type SftLayout } from './records.js';
import { readSftRecords, type SftFileFormat } from './read.js';
import { buildExample, type ChatRenderer, type ExampleOptions, type SftExample } from './render.js';

export interface SftSource {
  path: string;
  /** Mixture weight (default 1); see the file comment. */
  weight?: number;
  format?: SftFileFormat;
  /** Default: detected per record. */
  layout?: SftLayout;
  fields?: SftFieldMap;
  /** System prompt for this source's records that have none. */
  defaultSystem?: string;
}

export interface SftDataOptions extends ExampleOptions {
  sources: SftSource[];
  renderer: ChatRenderer;
  /** Seed of the mixture and the shuffle (default 0). */
  seed?: number;
  /** Share of records held out for validation, in [0, 1) (default 0). */
  valFraction?: number;
  /** Seed of the split hash (default 0); kept apart from seed so the split survives reseeding. */
  splitSeed?: number;
  /** Shuffle the mixed training set (default true; false keeps file order, for parity runs). */
  shuffle?: boolean;
}

export interface SftSourceStats {
  path: string;
  records: number;
  train: number;
  val: number;
  /** Training examples after weighting. */
  mixed: number;
  skipped: number;
}

export interface SftData {
  train: SftExample[];
  val: SftExample[];
  skipped: SkipCounter;
  /** Examples cut to maxLength (kept: they still hold assistant tokens). */
  truncated: number;
  sources: SftSourceStats[];
}

function validate(opts: SftDataOptions): void {
  if (opts.sources.length === 0) throw new PatentGPTError('E_CONFIG', 'field "sources" must name at least one SFT data file');
  opts.sources.forEach((s, i) => {
    const w = s.weight ?? 1;
    if (!Number.isFinite(w) || w < 0) throw new PatentGPTError('E_CONFIG', `field "sources[${i}].weight" must be a finite number >= 0, got ${w}`);
  });
  const v = opts.valFraction ?? 0;
  if (!(v >= 0 && v < 1)) throw new PatentGPTError('E_CONFIG', `field "valFraction" must be in [0, 1), got ${v}`);
}

/** Is this conversation in the validation split? */
export function isValidation(key: string, valFraction: number, splitSeed = 0): boolean {
  return valFraction > 0 && hashUniform(splitSeed, 'sft-split', key) < valFraction;
}

/** Indices of a source's n examples after weight w (deterministic by seed and source). */
export function weightedIndices(n: number, weight: number, seed: number, sourceIndex: number): number[] {
  const out: number[] = [];
  const whole = Math.floor(weight);
  for (let k = 0; k < whole; k++) for (let i = 0; i < n; i++) out.push(i);
  const extra = Math.round((weight - whole) * n);
  if (extra > 0) {
    const perm = permutation(n, seed, 'sft-mix', sourceIndex);
    const pick = Array.from(perm.subarray(0, extra)).sort((a, b) => a - b);
    out.push(...pick);
  }
  return out;
}

/** Reads, renders, splits and mixes every source. Malformed records are counted, never thrown. */
export async function loadSftData(opts: SftDataOptions): Promise<SftData> {
  validate(opts);
  const seed = opts.seed ?? 0;
  const valFraction = opts.valFraction ?? 0;
  const skipped = new SkipCounter();
  const val: SftExample[] = [];
  const mixed: SftExample[] = [];
  const stats: SftSourceStats[] = [];
  let truncated = 0;
  for (const [si, src] of opts.sources.entries()) {
    const st: SftSourceStats = { path: src.path, records: 0, train: 0, val: 0, mixed: 0, skipped: 0 };
    const train: SftExample[] = [];
    for await (const item of readSftRecords(src.path, src.format)) {
      st.records++;
      if (!item.ok) {
        skipped.add(item.skip);
        st.skipped++;
        continue;
      }
      const norm = normalizeRecord(item.record, { layout: src.layout, fields: src.fields, defaultSystem: src.defaultSystem });
      if (!norm.ok) {
        skipped.add({ ...item.source, reason: norm.reason, detail: norm.detail });
        st.skipped++;
        continue;
      }
      const ex = buildExample(opts.renderer, norm.messages, item.source, opts);
      if (!ex.ok) {
        skipped.add({ ...item.source, reason: ex.reason, detail: ex.detail });
        st.skipped++;
        continue;
      }
      if (ex.example.truncated) truncated++;
      if (isValidation(JSON.stringify(norm.messages), valFraction, opts.splitSeed ?? 0)) {
        val.push(ex.example);
        st.val++;
      } else {
        train.push(ex.example);
        st.train++;
      }
    }
    for (const i of weightedIndices(train.length, src.weight ?? 1, seed, si)) mixed.push(train[i]!);
    st.mixed = mixed.length - stats.reduce((a, s) => a + s.mixed, 0);
    stats.push(st);
  }
  const trainSet = opts.shuffle === false ? mixed : Array.from(permutation(mixed.length, seed, 'sft-order'), (i) => mixed[i]!);
  return { train: trainSet, val, skipped, truncated, sources: stats };
}
