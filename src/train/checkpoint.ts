// Training checkpoints: runs/<name>/checkpoints/step-N/, complete or absent, checksummed.
//
//   step-N/<caller files>          e.g. model.safetensors and config.json from the model's writer
//   step-N/optimizer.safetensors   optimizer moments and parameter groups (format below)
//   step-N/state.json              TrainState: step, data position, RNG, config hash, ...
//   step-N/checksums.json          sha256 and size of every file above, written last
//
// Every file is written and fsynced inside step-N.tmp/, which is then renamed to step-N/ and the
// folder fsynced: a crash at any point leaves either no step-N/ or a complete one (a stale
// step-N.tmp/ is removed by the next save). Loading verifies every checksum first and refuses a
// corrupt or truncated checkpoint with E_CHECKPOINT naming the file; latest() skips such a
// checkpoint and falls back to the newest that verifies. Only rank 0 writes.
//
// optimizer.safetensors is a plain safetensors file (8-byte little-endian header length, JSON
// header, raw little-endian data), so any safetensors reader opens it: tensors "m.<param>" and
// "v.<param>" (F32, the parameter's shape) and __metadata__ {format: "patentgpt-adamw", step,
// groups}; SGD writes "momentum.<param>" under format "patentgpt-sgd". groups (JSON: name,
// lrScale, weightDecay, params of each parameter group) is absent in files written before
// parameter groups; such files still load (as AdamW state with any grouping).
// It is written here, not with src/models' safetensors module, so the trainer's checkpoint
// code does not depend on the model layer; it reads and writes only this F32 subset.
import { promises as fsp } from 'node:fs';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { PatentGPTError } from '../errors.js';
import { fsyncDir, sha256File, writeContent, type ByteSink, type FileContent } from '../util/atomic.js';
import type { OptimizerState } from './optimizer.js';

export const STATE_FILE = 'state.json';
export const CHECKSUMS_FILE = 'checksums.json';
export const OPTIMIZER_FILE = 'optimizer.safetensors';
const RESERVED = new Set([STATE_FILE, CHECKSUMS_FILE, OPTIMIZER_FILE]);

/** What a run needs to continue exactly where it stopped. */
export interface TrainState {
  /** Optimizer updates done. */
  step: number;
  /** Tokens trained on so far (all ranks). */
  tokensSeen: number;
  /** The data stream's position (BatchStream.position()), JSON. */
  data: unknown;
  /** Hash of the resolved stage config (configHash); a resume under another config is refused by the caller. */
  configHash: string;
  /** Any generator state the run keeps (JSON). */
  rng?: unknown;
  /** Free JSON for the loop (best validation loss, stage name, ...). */
  extra?: Record<string, unknown>;
}

export interface CheckpointFile {
  /** A plain file name (no folders), not one of state.json, checksums.json, optimizer.safetensors. */
  name: string;
  /** Bytes, text, or a function that streams the bytes into a sink (e.g. a safetensors writer). */
  content: FileContent;
}

export interface Checksums {
  algorithm: 'sha256';
  files: Record<string, { sha256: string; size: number }>;
}

/**
 * A failed write (ENOSPC, EDQUOT, EFBIG, EACCES, EROFS ...) as E_IO naming the file being
 * written and the checkpoint; errors of ours pass through unchanged.
 */
function writeError(err: unknown, checkpoint: string, file: string): unknown {
  const e = err as NodeJS.ErrnoException;
  if (err instanceof PatentGPTError || typeof e?.code !== 'string' || typeof e.syscall !== 'string') return err; // not a file system error
  const why = e.code === 'ENOSPC' ? 'no space left on the device' : e.code === 'EDQUOT' ? 'disk quota exceeded' : e.code === 'EFBIG' ? 'file size limit exceeded' : e.message;
  return new PatentGPTError('E_IO',
    `${file}: cannot write the checkpoint ${checkpoint} (${e.code}: ${why}); the previous checkpoints are intact. Free space (or fix the folder) and run again to resume`);
}

function ckptError(file: string, message: string): PatentGPTError {
  return new PatentGPTError('E_CHECKPOINT', `${file}: ${message}`);
}

// ---------------------------------------------------------------- optimizer state file

/** A streamed writer of optimizer.safetensors for the state. */
export function optimizerStateContent(state: OptimizerState): (sink: ByteSink) => Promise<void> {
  return async (sink) => {
    const sgd = state.type === 'sgd';
    const meta: Record<string, string> = { format: sgd ? 'patentgpt-sgd' : 'patentgpt-adamw', step: String(state.step) };
    if (state.groups) meta.groups = JSON.stringify(state.groups);
    const header: Record<string, unknown> = { __metadata__: meta };
    let offset = 0;
    const arrays: Float32Array[] = [];
    for (const e of state.entries) {
      const parts: [string, Float32Array | undefined][] = sgd ? [['momentum', e.m]] : [['m', e.m], ['v', e.v]];
      for (const [kind, arr] of parts) {
        if (!arr) throw new PatentGPTError('E_ARGUMENT', `optimizer state: ${e.name} has no ${kind} values`);
        header[`${kind}.${e.name}`] = { dtype: 'F32', shape: e.shape, data_offsets: [offset, offset + arr.byteLength] };
        offset += arr.byteLength;
        arrays.push(arr);
      }
    }
    let json = JSON.stringify(header);
    json += ' '.repeat((8 - ((Buffer.byteLength(json) + 8) % 8)) % 8);
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
    await sink.write(len);
    await sink.write(Buffer.from(json, 'utf8'));
    for (const a of arrays) await sink.write(new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
  };
}

/** Parses optimizer.safetensors bytes back into a state; `file` names it in errors. */
export function decodeOptimizerState(bytes: Uint8Array, file: string): OptimizerState {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buf.byteLength < 8) throw ckptError(file, 'too short for a safetensors header (truncated?)');
  const n = Number(buf.readBigUInt64LE(0));
  if (8 + n > buf.byteLength) throw ckptError(file, `header of ${n} bytes runs past the end of the file (truncated?)`);
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8')) as Record<string, unknown>;
  } catch (err) {
    throw ckptError(file, `header is not JSON (${(err as Error).message})`);
  }
  const meta = header.__metadata__ as Record<string, string> | undefined;
  if (meta?.format !== 'patentgpt-adamw' && meta?.format !== 'patentgpt-sgd') throw ckptError(file, '__metadata__.format is not "patentgpt-adamw" or "patentgpt-sgd"');
  const sgd = meta.format === 'patentgpt-sgd';
  // Absent in files written before parameter groups: any grouping may load them.
  let groups: OptimizerState['groups'];
  if (meta.groups !== undefined) {
    try {
      groups = JSON.parse(meta.groups) as OptimizerState['groups'];
    } catch (err) {
      throw ckptError(file, `__metadata__.groups is not JSON (${(err as Error).message})`);
    }
    if (!Array.isArray(groups) || groups.some((g) => typeof g?.name !== 'string' || !Array.isArray(g.params)))
      throw ckptError(file, '__metadata__.groups must be a list of { name, lrScale, weightDecay, params }');
  }
  const step = Number(meta.step);
  if (!Number.isSafeInteger(step) || step < 0) throw ckptError(file, `__metadata__.step: ${meta.step} is not a step count`);
  const data = buf.subarray(8 + n);
  const read = (key: string): { shape: number[]; arr: Float32Array } => {
    const t = header[key] as { dtype?: string; shape?: number[]; data_offsets?: [number, number] };
    if (t.dtype !== 'F32') throw ckptError(file, `${key}.dtype: ${t.dtype}, expected F32`);
    const [b, e] = t.data_offsets ?? [-1, -1];
    const size = (t.shape ?? []).reduce((a, d) => a * d, 1);
    if (!(b >= 0 && e >= b && e <= data.byteLength && e - b === size * 4))
      throw ckptError(file, `${key}.data_offsets: [${b}, ${e}] does not fit shape [${t.shape}] in ${data.byteLength} data bytes`);
    const arr = new Float32Array(size);
    new Uint8Array(arr.buffer).set(data.subarray(b, e));
    return { shape: t.shape ?? [], arr };
  };
  const entries: OptimizerState['entries'] = [];
  for (const key of Object.keys(header)) {
    if (sgd) {
      if (!key.startsWith('momentum.')) continue;
      const m = read(key);
      entries.push({ name: key.slice('momentum.'.length), shape: m.shape, m: m.arr });
      continue;
    }
    if (!key.startsWith('m.')) continue;
    const name = key.slice(2);
    if (!(`v.${name}` in header)) throw ckptError(file, `v.${name}: missing (m.${name} is present)`);
    const m = read(key);
    const v = read(`v.${name}`);
    entries.push({ name, shape: m.shape, m: m.arr, v: v.arr });
  }
  return { ...(sgd ? { type: 'sgd' as const } : meta.groups !== undefined ? { type: 'adamw' as const } : {}), step, ...(groups ? { groups } : {}), entries };
}

// ---------------------------------------------------------------- checkpoints

export interface CheckpointManagerOptions {
  /** Complete checkpoints to keep (oldest removed after each save); 0 keeps all. Default 3. */
  keep?: number;
  /** Only rank 0 writes; save() on another rank returns null. Default 0. */
  rank?: number;
  /** Called when latest() passes over a checkpoint that does not verify. */
  onSkip?: (dir: string, err: PatentGPTError) => void;
}

/** A verified checkpoint on disk. */
export class Checkpoint {
  readonly dir: string;
  readonly step: number;
  readonly state: TrainState;
  readonly checksums: Checksums;

  /** @internal made by CheckpointManager.load / loadCheckpoint. */
  constructor(dir: string, state: TrainState, checksums: Checksums) {
    this.dir = dir;
    this.step = state.step;
    this.state = state;
    this.checksums = checksums;
  }

  /** The caller files it holds (besides state, checksums and optimizer state). */
  get files(): string[] {
    return Object.keys(this.checksums.files).filter((f) => !RESERVED.has(f));
  }

  has(name: string): boolean {
    return name in this.checksums.files;
  }

  /** Path of a file in the checkpoint (verified at load). */
  path(name: string): string {
    if (!this.has(name)) throw ckptError(path.join(this.dir, name), `not in this checkpoint (it holds ${Object.keys(this.checksums.files).join(', ')})`);
    return path.join(this.dir, name);
  }

  read(name: string): Promise<Buffer> {
    return fsp.readFile(this.path(name));
  }

  /** The optimizer moments, or null when the checkpoint has none (e.g. weights only). */
  async readOptimizer(): Promise<OptimizerState | null> {
    if (!this.has(OPTIMIZER_FILE)) return null;
    return decodeOptimizerState(await this.read(OPTIMIZER_FILE), path.join(this.dir, OPTIMIZER_FILE));
  }
}

const STEP_RE = /^step-(\d+)$/;

/** Verifies a checkpoint folder (every checksum, state.json fields) and returns it. */
export async function loadCheckpoint(dir: string): Promise<Checkpoint> {
  if (!fs.existsSync(dir)) throw ckptError(dir, 'no such checkpoint folder');
  const sumsPath = path.join(dir, CHECKSUMS_FILE);
  let sums: Checksums;
  try {
    sums = JSON.parse(await fsp.readFile(sumsPath, 'utf8')) as Checksums;
  } catch (err) {
    throw ckptError(sumsPath, `cannot read the checksum list (${(err as Error).message}); the checkpoint is incomplete or corrupt`);
  }
  if (sums?.algorithm !== 'sha256' || typeof sums.files !== 'object' || sums.files === null)
    throw ckptError(sumsPath, 'algorithm/files: not a checksum list written by CheckpointManager');
  if (!(STATE_FILE in sums.files)) throw ckptError(sumsPath, `files: does not list ${STATE_FILE}`);
  for (const [name, want] of Object.entries(sums.files)) {
    const file = path.join(dir, name);
    if (name.includes('/') || name.includes('\\') || name.startsWith('.')) throw ckptError(sumsPath, `files: "${name}" is not a plain file name`);
    let got;
    try {
      got = await sha256File(file);
    } catch {
      throw ckptError(file, 'missing (listed in checksums.json)');
    }
    if (got.size !== want.size) throw ckptError(file, `size is ${got.size} bytes, checksums.json says ${want.size} (truncated or overwritten)`);
    if (got.sha256 !== want.sha256) throw ckptError(file, `sha256 mismatch (file ${got.sha256}, checksums.json ${want.sha256}): corrupt`);
  }
  const statePath = path.join(dir, STATE_FILE);
  let state: TrainState;
  try {
    state = JSON.parse(await fsp.readFile(statePath, 'utf8')) as TrainState;
  } catch (err) {
    throw ckptError(statePath, `not JSON (${(err as Error).message})`);
  }
  if (typeof state !== 'object' || state === null) throw ckptError(statePath, 'must hold an object');
  if (!Number.isSafeInteger(state.step) || state.step < 0) throw ckptError(statePath, `step: ${state.step} is not a step count`);
  if (!Number.isSafeInteger(state.tokensSeen) || state.tokensSeen < 0) throw ckptError(statePath, `tokensSeen: ${state.tokensSeen} is not a token count`);
  if (typeof state.configHash !== 'string') throw ckptError(statePath, 'configHash: missing');
  if (!('data' in state)) throw ckptError(statePath, 'data: missing (the data position)');
  const m = STEP_RE.exec(path.basename(dir));
  if (m && Number(m[1]) !== state.step) throw ckptError(statePath, `step: ${state.step} but the folder is ${path.basename(dir)}`);
  return new Checkpoint(dir, state, sums);
}

export class CheckpointManager {
  /** runs/<name>/checkpoints */
  readonly dir: string;
  readonly keep: number;
  readonly rank: number;
  private readonly onSkip: ((dir: string, err: PatentGPTError) => void) | undefined;
  /** Folders this manager wrote or verified (prune() does not hash them again). */
  private readonly verified = new Set<string>();

  constructor(runDir: string, opts: CheckpointManagerOptions = {}) {
    this.dir = path.join(runDir, 'checkpoints');
    this.keep = opts.keep ?? 3;
    this.rank = opts.rank ?? 0;
    this.onSkip = opts.onSkip;
    if (!Number.isSafeInteger(this.keep) || this.keep < 0) throw new PatentGPTError('E_ARGUMENT', `CheckpointManager: keep must be an integer >= 0, got ${this.keep}`);
  }

  stepDir(step: number): string {
    return path.join(this.dir, `step-${step}`);
  }

  /** Steps of the complete checkpoint folders (verified or not), ascending. */
  steps(): number[] {
    if (!fs.existsSync(this.dir)) return [];
    return fs
      .readdirSync(this.dir, { withFileTypes: true })
      .filter((e) => e.isDirectory())
      .map((e) => STEP_RE.exec(e.name))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => Number(m[1]))
      .sort((a, b) => a - b);
  }

  /**
   * Writes step-N/ atomically: caller files, optimizer state, state.json, checksums.json. Returns
   * the folder, or null on a rank other than 0. Replaces an existing step-N/ (same step saved
   * again) only once the new one is complete. Then removes checkpoints beyond `keep`.
   */
  async save(state: TrainState, files: CheckpointFile[] = [], optimizer?: OptimizerState): Promise<string | null> {
    if (this.rank !== 0) return null;
    if (!Number.isSafeInteger(state.step) || state.step < 0) throw new PatentGPTError('E_ARGUMENT', `checkpoint: state.step must be a step count, got ${state.step}`);
    const names = new Set<string>();
    for (const f of files) {
      if (!/^[A-Za-z0-9_][A-Za-z0-9_.-]*$/.test(f.name)) throw new PatentGPTError('E_ARGUMENT', `checkpoint: file name "${f.name}" must be a plain name`);
      if (RESERVED.has(f.name)) throw new PatentGPTError('E_ARGUMENT', `checkpoint: "${f.name}" is written by the checkpoint itself`);
      if (names.has(f.name)) throw new PatentGPTError('E_ARGUMENT', `checkpoint: file "${f.name}" given twice`);
      names.add(f.name);
    }
    const final = this.stepDir(state.step);
    const tmp = `${final}.tmp`;
    let current = tmp; // what is being written, for the error
    try {
      await fsp.mkdir(this.dir, { recursive: true });
      await fsp.rm(tmp, { recursive: true, force: true });
      await fsp.mkdir(tmp);
    } catch (err) {
      throw writeError(err, final, tmp);
    }
    try {
      const sums: Checksums = { algorithm: 'sha256', files: {} };
      const put = async (name: string, content: FileContent): Promise<void> => {
        current = path.join(tmp, name);
        const fh = await fsp.open(current, 'wx');
        try {
          sums.files[name] = await writeContent(fh, content);
        } finally {
          await fh.close();
        }
      };
      for (const f of files) await put(f.name, f.content);
      if (optimizer) await put(OPTIMIZER_FILE, optimizerStateContent(optimizer));
      await put(STATE_FILE, JSON.stringify(state, null, 2) + '\n');
      await put(CHECKSUMS_FILE, JSON.stringify(sums, null, 2) + '\n');
      await fsyncDir(tmp);
      if (fs.existsSync(final)) {
        const old = `${final}.old`;
        await fsp.rm(old, { recursive: true, force: true });
        await fsp.rename(final, old);
        await fsp.rename(tmp, final);
        await fsp.rm(old, { recursive: true, force: true });
      } else await fsp.rename(tmp, final);
      await fsyncDir(this.dir);
    } catch (err) {
      await fsp.rm(tmp, { recursive: true, force: true });
      throw writeError(err, final, current);
    }
    this.verified.add(final);
    await this.prune();
    return final;
  }

  /** Loads and verifies step N (E_CHECKPOINT naming the file when it does not verify). */
  load(step: number): Promise<Checkpoint> {
    return loadCheckpoint(this.stepDir(step));
  }

  /** The newest checkpoint that verifies, or null; those that do not are reported to onSkip and passed over. */
  async latest(): Promise<Checkpoint | null> {
    for (const step of this.steps().reverse()) {
      try {
        const ck = await this.load(step);
        this.verified.add(ck.dir);
        return ck;
      } catch (err) {
        if (!(err instanceof PatentGPTError)) throw err;
        this.onSkip?.(this.stepDir(step), err);
      }
    }
    return null;
  }

  /**
   * Removes leftovers of interrupted saves, then keeps the newest `keep` checkpoints that verify:
   * a checkpoint that does not verify never counts toward `keep` (so a good one is never removed
   * to keep a corrupt one), corrupt ones older than the newest good one are removed (no resume
   * can use them), and nothing is removed while no checkpoint verifies. Each folder is verified
   * at most once per manager (what it saved or loaded counts as verified).
   */
  async prune(): Promise<void> {
    if (!fs.existsSync(this.dir)) return;
    for (const e of fs.readdirSync(this.dir, { withFileTypes: true }))
      if (e.isDirectory() && /^step-\d+\.(tmp|old)$/.test(e.name)) await fsp.rm(path.join(this.dir, e.name), { recursive: true, force: true });
    if (this.keep === 0) return;
    let good = 0;
    const remove: number[] = [];
    for (const s of this.steps().reverse()) {
      if (good >= this.keep) remove.push(s); // older than the newest `keep` good ones: not needed, whatever its state
      else if (await this.verifies(s)) good++;
      else if (good > 0) remove.push(s); // corrupt and superseded by a newer good checkpoint
    }
    if (good === 0) return;
    for (const s of remove) {
      await fsp.rm(this.stepDir(s), { recursive: true, force: true });
      this.verified.delete(this.stepDir(s));
    }
  }

  private async verifies(step: number): Promise<boolean> {
    const dir = this.stepDir(step);
    if (this.verified.has(dir)) return true;
    try {
      await loadCheckpoint(dir);
    } catch (err) {
      if (err instanceof PatentGPTError) return false;
      throw err;
    }
    this.verified.add(dir);
    return true;
  }
}
