// `patentgpt pretrain` end to end in child processes: the README's stage-1 command on the
// built-in sample, exact resume after kill -9, a checkpoint on SIGINT, stage 2 from stage 1's
// run with an extended context, text data given with --data, and config errors that name the field.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readMetrics } from '../../src/train/metrics.js';
import { exited, sha, trainLosses, waitFor } from './child-run.js';

const repo = new URL('../../', import.meta.url).pathname;
const main = path.join(repo, 'src/cli/main.ts');
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'pgpt-pretrain-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

const cli = (...args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', main, 'pretrain', ...args], { encoding: 'utf8', cwd: repo });
const start = (...args: string[]): ChildProcess =>
  spawn(process.execPath, ['--import', 'tsx', main, 'pretrain', ...args], { cwd: repo, stdio: ['ignore', 'pipe', 'pipe'] });

/** A small stage config: 2-layer model of dim 64 over the byte vocabulary. */
function writeConfig(name: string, extra: Record<string, unknown> = {}): string {
  const file = path.join(root, `${name}.json`);
  const cfg = {
    name,
    model: { vocabSize: 259, dim: 64, nLayers: 2, nHeads: 4, nKvHeads: 2, ffnDim: 160, maxSeqLen: 64 },
    tokenizer: 'byte',
    data: { sample: true, weights: { patent: 0.6, law: 0.25, qa: 0.15 }, valFraction: 0.05 },
    seqLen: 64,
    batchSize: 4,
    gradAccum: 2,
    steps: 40,
    optimizer: { lr: 0.003 },
    schedule: { kind: 'cosine', warmupSteps: 4 },
    evalEvery: 10,
    evalBatches: 2,
    checkpointEvery: 5,
    keepCheckpoints: 2,
    seed: 3,
    threads: 1,
    ...extra,
  };
  fs.writeFileSync(file, JSON.stringify(cfg, null, 2));
  return file;
}



describe('patentgpt pretrain', () => {
  it('runs the README stage-1 config on the built-in sample and leaves config, metrics, checkpoints and the report', () => {
    const runDir = path.join(root, 'readme');
    const r = cli('--config', 'examples/tiny-stage1.json', '--run-dir', runDir, '--steps', '4');
    expect(r.status, r.stderr).toBe(0);
    const summary = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { status: string; step: number; checkpoint: string; valLoss: number };
    expect(summary).toMatchObject({ status: 'completed', step: 4, checkpoint: path.join(runDir, 'checkpoints', 'step-4') });
    expect(r.stdout).toMatch(/"event":"progress"/); // piped: JSON progress lines
    const resolved = JSON.parse(fs.readFileSync(path.join(runDir, 'config.json'), 'utf8')) as { stage: { name: string }; model: { vocabSize: number } };
    expect(resolved.stage.name).toBe('tiny-stage1');
    expect(resolved.model.vocabSize).toBeGreaterThanOrEqual(259);
    const recs = readMetrics(path.join(runDir, 'metrics.jsonl'));
    expect(recs.filter((x) => x.loss !== undefined).map((x) => x.step)).toEqual([1, 2, 3, 4]);
    expect(recs.at(-2)!.mfu).toBeGreaterThan(0);
    expect(recs.some((x) => x.valLoss !== undefined)).toBe(true);
    const ck = path.join(runDir, 'checkpoints', 'step-4');
    expect(fs.readdirSync(ck).sort()).toEqual([
      'checksums.json', 'config.json', 'generation_config.json', 'model.safetensors', 'optimizer.safetensors', 'state.json', 'tokenizer_spec.json',
    ]);
    // A checkpoint is a complete model folder: special ids and the tokenizer it was trained with.
    const hf = JSON.parse(fs.readFileSync(path.join(ck, 'config.json'), 'utf8')) as { architectures: string[]; bos_token_id: number; eos_token_id: number };
    expect(hf.architectures).toEqual(['LlamaForCausalLM']);
    const gen = JSON.parse(fs.readFileSync(path.join(ck, 'generation_config.json'), 'utf8')) as { bos_token_id: number; eos_token_id: number };
    expect([gen.bos_token_id, gen.eos_token_id]).toEqual([hf.bos_token_id, hf.eos_token_id]);
    expect(JSON.parse(fs.readFileSync(path.join(ck, 'tokenizer_spec.json'), 'utf8'))).toEqual({ type: 'byte' });
    expect(fs.readFileSync(path.join(runDir, 'report.svg'), 'utf8')).toMatch(/<svg/);
  });

  it('resumes after kill -9 with exactly the loss sequence and weights of an uninterrupted run', async () => {
    const cfg = writeConfig('resume');
    const ref = path.join(root, 'resume-ref');
    const r0 = cli('--config', cfg, '--run-dir', ref, '--quiet');
    expect(r0.status, r0.stderr).toBe(0);
    const full = trainLosses(ref);
    expect(full).toHaveLength(40);

    const runDir = path.join(root, 'resume-killed');
    const child = start('--config', cfg, '--run-dir', runDir, '--quiet');
    const done = exited(child);
    // kill once step 5 is checkpointed, wherever the process is inside a later step (step 5, not
    // later: on a loaded machine the poll can lag behind a fast run by many steps)
    await waitFor(() => fs.existsSync(path.join(runDir, 'checkpoints', 'step-5')), child, 'checkpoint step-5');
    child.kill('SIGKILL');
    expect((await done).signal).toBe('SIGKILL');
    expect(fs.existsSync(path.join(runDir, 'checkpoints', 'step-40'))).toBe(false);
    const before = trainLosses(runDir).length;
    expect(before).toBeGreaterThanOrEqual(5);
    expect(before).toBeLessThan(40);

    const r1 = cli('--config', cfg, '--run-dir', runDir);
    expect(r1.status, r1.stderr).toBe(0);
    expect(r1.stdout).toMatch(/resuming from .*step-(5|10|15|20|25|30|35)\b/);
    expect(trainLosses(runDir)).toEqual(full); // bit-exact, step for step
    expect(sha(path.join(runDir, 'checkpoints', 'step-40', 'model.safetensors'))).toBe(sha(path.join(ref, 'checkpoints', 'step-40', 'model.safetensors')));
    expect(sha(path.join(runDir, 'checkpoints', 'step-40', 'optimizer.safetensors'))).toBe(sha(path.join(ref, 'checkpoints', 'step-40', 'optimizer.safetensors')));
  });

  it('SIGINT saves a checkpoint at the current step and exits with code 130', async () => {
    const cfg = writeConfig('sigint', { steps: 400, checkpointEvery: 0, evalEvery: 0 });
    const runDir = path.join(root, 'sigint');
    const child = start('--config', cfg, '--run-dir', runDir, '--quiet');
    const done = exited(child);
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    await waitFor(() => trainLosses(runDir).length >= 3, child, 'three steps');
    child.kill('SIGINT');
    const { code } = await done;
    expect(code, stderr).toBe(130);
    const steps = fs.readdirSync(path.join(runDir, 'checkpoints'));
    expect(steps).toHaveLength(1);
    const step = Number(steps[0]!.slice(5));
    expect(step).toBeGreaterThanOrEqual(3);
    expect(step).toBeLessThan(400);
    const state = JSON.parse(fs.readFileSync(path.join(runDir, 'checkpoints', steps[0]!, 'state.json'), 'utf8')) as { step: number };
    expect(state.step).toBe(step);
    expect(trainLosses(runDir)).toHaveLength(step);
    expect(fs.existsSync(path.join(runDir, 'report.svg'))).toBe(true);
  });

  it('stage 2 starts from the stage-1 run, raises the RoPE base and trains at 4x the context', () => {
    const s1 = path.join(root, 'resume-ref');
    const cfg = writeConfig('stage2', {
      init: s1, seqLen: 256, batchSize: 1, gradAccum: 1, steps: 3, evalEvery: 0, checkpointEvery: 0, schedule: { warmupSteps: 1 },
      context: { ropeTheta: 40000 }, data: { sample: true, weights: { patent: 0.4, qa: 0.6 }, valFraction: 0.05 },
    });
    const runDir = path.join(root, 'stage2');
    const r = cli('--config', cfg, '--run-dir', runDir);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain(`initial weights from ${path.join(s1, 'checkpoints', 'step-40')}`);
    expect(r.stdout).toMatch(/data mixture: patent 40\.0%, qa 60\.0%/);
    const hf = JSON.parse(fs.readFileSync(path.join(runDir, 'checkpoints', 'step-3', 'config.json'), 'utf8')) as { rope_theta: number; max_position_embeddings: number };
    expect(hf.rope_theta).toBe(40000);
    expect(hf.max_position_embeddings).toBe(256);
    // the first stage-2 loss is far below a fresh model's (ln 259 = 5.56): the weights came from stage 1
    expect(trainLosses(runDir)[0]!).toBeLessThan(trainLosses(s1)[0]! - 1);
    // position interpolation instead: HF linear rope scaling
    const cfgPi = writeConfig('stage2pi', { init: path.join(s1, 'checkpoints', 'step-40'), seqLen: 256, batchSize: 1, gradAccum: 1, steps: 1, evalEvery: 0, schedule: { warmupSteps: 0 }, context: { posScale: 4 } });
    const r2 = cli('--config', cfgPi, '--run-dir', path.join(root, 'stage2pi'), '--quiet');
    expect(r2.status, r2.stderr).toBe(0);
    const hf2 = JSON.parse(fs.readFileSync(path.join(root, 'stage2pi', 'checkpoints', 'step-1', 'config.json'), 'utf8')) as { rope_scaling: unknown };
    expect(hf2.rope_scaling).toMatchObject({ rope_type: 'linear', factor: 4 });
  });

  it('--data reads text files into shards, skipping and counting what it cannot read', () => {
    const data = path.join(root, 'texts', 'my-patents');
    fs.mkdirSync(data, { recursive: true });
    fs.writeFileSync(path.join(data, 'a.txt'), 'A hinge comprising a pin and two leaves.\n\nThe pin is made of steel.\n'.repeat(40));
    fs.writeFileSync(path.join(data, 'b.jsonl'), [JSON.stringify({ text: 'A valve with a seal ring. '.repeat(30) }), '{broken', JSON.stringify({ instruction: 'What is a claim?', output: 'The legal scope of a patent. '.repeat(10) })].join('\n'));
    fs.writeFileSync(path.join(data, 'c.json'), '{"not json');
    fs.writeFileSync(path.join(data, 'd.txt'), Buffer.from([0xff, 0xfe, 0x00, 0xc3]));
    fs.writeFileSync(path.join(data, 'e.bin'), Buffer.from([1, 2, 3]));
    const cfg = writeConfig('textdata', { steps: 2, evalEvery: 0, checkpointEvery: 0, schedule: { warmupSteps: 1 } });
    const runDir = path.join(root, 'textdata');
    const r = cli('--config', cfg, '--run-dir', runDir, '--data', data);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/data: \d+ documents from 2 files, 2 unreadable files skipped, 1 files of other types ignored, 1 records without text skipped/);
    expect(r.stdout).toMatch(/data.weights names none of the data's categories \(my-patents\)/);
    const manifest = JSON.parse(fs.readFileSync(path.join(runDir, 'data', 'text', 'manifest.json'), 'utf8')) as { categories: Record<string, unknown> };
    expect(Object.keys(manifest.categories)).toEqual(['my-patents']);
    expect(trainLosses(runDir)).toHaveLength(2);
    expect(cli('--config', cfg, '--run-dir', path.join(root, 'nodata'), '--data', path.join(root, 'missing')).stderr).toMatch(/missing: cannot read the data path \(ENOENT\)/);
  });

  it('tokenizes text with the LLaMA-2 SentencePiece vocabulary when the config says "llama2"', () => {
    const runDir = path.join(root, 'llama2-vocab');
    const cfg = writeConfig('llama2-vocab', {
      model: { vocabSize: 32000, dim: 32, nLayers: 1, nHeads: 2, nKvHeads: 1, ffnDim: 64, maxSeqLen: 64 },
      tokenizer: 'llama2', steps: 2, gradAccum: 1, evalEvery: 2, checkpointEvery: 2, schedule: { kind: 'cosine', warmupSteps: 1 },
    });
    const r = cli('--config', cfg, '--run-dir', runDir);
    expect(r.status, r.stderr).toBe(0);
    const manifest = JSON.parse(fs.readFileSync(path.join(runDir, 'data', 'sample', 'manifest.json'), 'utf8')) as { vocabSize: number };
    expect(manifest.vocabSize).toBe(32000);
    // Byte-level ids of the sample would all be < 259; SentencePiece pieces reach far above.
    const losses = trainLosses(runDir);
    expect(losses).toHaveLength(2);
    expect(losses[0]!).toBeGreaterThan(Math.log(32000) - 1.5);
  });

  it('refuses bad configs with an error that names the file and the field', () => {
    const bad = (extra: Record<string, unknown>) => cli('--config', writeConfig('bad', extra), '--run-dir', path.join(root, 'bad'));
    expect(bad({ seqLen: 0 }).stderr).toMatch(/bad\.json: seqLen: must be an integer >= 1, got 0/);
    expect(bad({ optimizer: { lr: 0.001, betas: [0.9] } }).stderr).toMatch(/bad\.json: optimizer\.betas: unknown field/);
    expect(bad({ model: 'no-such-preset' }).stderr).toMatch(/model: unknown model preset "no-such-preset"/);
    expect(bad({ model: { vocabSize: 259, dim: 64, nLayers: 2, nHeads: 3, ffnDim: 128 } }).stderr).toMatch(/bad\.json: model: field "dim" \(64\) must be a multiple of "nHeads" \(3\)/);
    expect(bad({ model: { vocabSize: 200, dim: 64, nLayers: 1, nHeads: 4, ffnDim: 64, maxSeqLen: 64 } }).stderr).toMatch(/model\.vocabSize: 200 is smaller than the tokenizer's 259 ids/);
    expect(bad({ tokenizer: path.join(root, 'no.model') }).stderr).toMatch(/bad\.json: tokenizer: .*no\.model" is not "byte", "llama2" or a readable SentencePiece tokenizer\.model/);
    expect(bad({ seqLen: 128 }).stderr).toMatch(/seqLen: 128 exceeds the model's context of 64 tokens; extend it with context\.ropeTheta or context\.posScale/);
    expect(bad({ init: path.join(root, 'nowhere') }).stderr).toMatch(/init: .*nowhere: no such run, checkpoint or model folder/);
    const r = bad({ steps: undefined, tokenBudget: undefined });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/steps: missing: give steps or tokenBudget/);
  });
});
