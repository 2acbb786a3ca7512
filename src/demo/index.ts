// `patentgpt demo`: the paper's pipeline end to end at toy scale on the bundled data, in one
// folder: data prep (filters, dedup), tokenizer training and merge, stage-1 and stage-2
// pretraining (context extended), an SMoE variant of stage 1, SFT, a reward model and PPO (or
// DPO), evaluation before and after each stage, a chat transcript, and report.html.
//
// Resumable: each step writes <out>/stages/<step>.json atomically when it completes (with what
// it produced); a rerun skips those and continues a half-done training stage from its newest
// checkpoint (the stages resume by themselves). A marker written under another budget
// (--minutes) is stale: that step and every later one run again. Switching --align keeps the
// steps up to SFT and runs the other alignment, the chat and the report.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { PatentGPTError } from '../errors.js';
import { writeFileAtomic } from '../util/atomic.js';
import { LlamaForCausalLM, parameterCount, savePretrained, validateConfig } from '../models/index.js';
import { SentencePieceTokenizer } from '../tokenizer/index.js';
import { loadStageConfig } from '../train/config.js';
import { pretrain } from '../train/pretrain.js';
import { sft } from '../train/stages/sft.js';
import { reward } from '../train/stages/reward.js';
import { ppo } from '../train/stages/ppo.js';
import { dpo } from '../train/stages/dpo.js';
import type { StageRunOptions } from '../train/stages/common.js';
import type { TrainResult } from '../train/trainer.js';
import { Progress, formatDuration, type ProgressStream } from '../train/progress.js';
import { demoBudget, type DemoBudget } from './budget.js';
import { demoDataDir, heldOutDocs, runPrep, shardTexts, trainTokenizers, writeExtraInputs, writePrepConfig, type TokenizerResult } from './data.js';
import { chatTranscript, evaluateStage, type ChatTurn, type StageEval } from './evaluate.js';
import { runDir, stageConfigs, writeStageConfig, type StageInputs } from './stages.js';
import { writeReport } from './report.js';

export { demoBudget, DEFAULT_MINUTES, type DemoBudget } from './budget.js';

export interface DemoOptions {
  out: string;
  minutes?: number;
  align?: 'ppo' | 'dpo';
  /** Tiny step counts and model (tests). */
  smoke?: boolean;
  /** Where progress goes: a bar on a terminal, JSON lines otherwise; null: none. */
  progress?: ProgressStream | null;
  /** Messages of the stages (data, model, ...). */
  log?: (message: string) => void;
  signal?: AbortSignal;
  handleSignals?: boolean;
}

/** What a finished step leaves in its marker. */
export interface StepMarker {
  step: string;
  key: string;
  seconds: number;
  finishedAt: string;
  result: Record<string, unknown>;
}

export interface DemoResult {
  out: string;
  report: string;
  ran: string[];
  skipped: string[];
  seconds: number;
  /** 'interrupted' when a training stage stopped early (Ctrl-C); the rerun continues it. */
  status: 'completed' | 'interrupted';
}

export const TRAIN_STAGES = ['stage1', 'moe', 'stage2', 'sft', 'reward'] as const;

/** The steps in order for an alignment method. */
export function demoSteps(align: 'ppo' | 'dpo'): string[] {
  return [
    'prep-text', 'tokenizer', 'prep', 'init', 'eval-init',
    'stage1', 'eval-stage1', 'moe', 'eval-moe', 'stage2', 'eval-stage2', 'sft', 'eval-sft',
    ...(align === 'ppo' ? ['reward', 'ppo', 'eval-ppo'] : ['dpo', 'eval-dpo']),
    'chat', 'report',
  ];
}

const markerPath = (out: string, step: string): string => path.join(out, 'stages', `${step}.json`);

export function readMarker(out: string, step: string): StepMarker | null {
  try {
    return JSON.parse(fs.readFileSync(markerPath(out, step), 'utf8')) as StepMarker;
  } catch {
    return null;
  }
}

class Interrupted extends Error {}

export async function runDemo(opts: DemoOptions): Promise<DemoResult> {
  const t0 = performance.now();
  const out = path.resolve(opts.out);
  const align = opts.align ?? 'ppo';
  if (align !== 'ppo' && align !== 'dpo') throw new PatentGPTError('E_ARGUMENT', `--align must be ppo or dpo, got '${String(align)}'`);
  if (opts.minutes !== undefined && !(opts.minutes > 0 && Number.isFinite(opts.minutes)))
    throw new PatentGPTError('E_ARGUMENT', `--minutes must be a positive number, got ${opts.minutes}`);
  const budget = demoBudget({ minutes: opts.minutes, smoke: opts.smoke });
  const data = demoDataDir();
  fs.mkdirSync(path.join(out, 'stages'), { recursive: true });
  const stream = opts.progress === undefined ? (process.stderr.isTTY ? process.stderr : process.stdout) : opts.progress;
  const tty = stream?.isTTY === true;
  const steps = demoSteps(align);
  // Every marker carries the budget's key: under other options a step is redone, and so is what
  // follows it. The chat depends on the alignment too; the other steps do not (the alignment
  // stages have names of their own), so `--align dpo` after a PPO run reuses everything up to SFT.
  const budgetKey = createHash('sha256').update(JSON.stringify(budget)).digest('hex').slice(0, 16);
  const keyOf = (step: string): string => (step === 'chat' || step === 'report' ? `${budgetKey}-${align}` : budgetKey);
  const results: Record<string, Record<string, unknown>> = {};
  const ran: string[] = [];
  const skipped: string[] = [];
  let stale = false;

  const announce = (step: string, status: 'start' | 'done' | 'skipped', extra: Record<string, unknown> = {}): void => {
    if (!stream) return;
    const i = steps.indexOf(step) + 1;
    if (tty) {
      const secs = typeof extra.seconds === 'number' ? ` (${formatDuration(extra.seconds)})` : '';
      stream.write(`[${i}/${steps.length}] ${step}: ${status === 'start' ? 'running' : status === 'done' ? `done${secs}` : 'already done, skipped'}\n`);
    } else stream.write(JSON.stringify({ event: 'demo', step, index: i, total: steps.length, status, ...extra }) + '\n');
  };
  const bar = (label: string, total: number): Progress | null => (stream ? new Progress({ total, label, stream }) : null);

  const inputs = (): StageInputs => {
    const tok = results.tokenizer as unknown as TokenizerResult;
    return {
      dir: out, data, tokenizer: tok.merged, vocabSize: tok.vocab.merged, prepOutput: results.prep!.output as string, budget,
      ...(typeof results.reward?.checkpoint === 'string' ? { rewardModel: results.reward.checkpoint } : {}),
    };
  };
  const heldOut = (): ReturnType<typeof heldOutDocs> => heldOutDocs(data, results.prep!.output as string);
  const runOpts = (): StageRunOptions => ({
    progress: stream, ...(opts.log ? { log: opts.log } : {}), ...(opts.signal ? { signal: opts.signal } : {}), ...(opts.handleSignals ? { handleSignals: true } : {}),
  });
  const train = async (name: string): Promise<Record<string, unknown>> => {
    const s = inputs();
    const file = writeStageConfig(s, name, stageConfigs(s)[name]!);
    const cfg = await loadStageConfig(file);
    const run = { pretrain, sft, reward, ppo, dpo }[cfg.kind] as (c: typeof cfg, o: StageRunOptions) => Promise<TrainResult & { runDir: string }>;
    const r = await run(cfg, runOpts());
    if (r.status === 'interrupted') throw new Interrupted(name);
    if (r.status !== 'completed') throw new PatentGPTError('E_NONFINITE', `demo: stage ${name} ${r.status}: ${r.message ?? ''}; see ${r.runDir}/metrics.jsonl, then rerun the demo (it resumes)`);
    return { config: file, runDir: r.runDir, checkpoint: r.checkpoint, step: r.step, valLoss: r.valLoss ?? null, tokens: r.tokensSeen, resumedFrom: r.resumedFrom ?? null };
  };
  const evalOf = async (stage: string, modelDir: string): Promise<Record<string, unknown>> => {
    const b = bar(`eval ${stage}`, 3);
    const r: StageEval = await evaluateStage(stage, modelDir, data, heldOut(), { limit: budget.evalLimit, onProgress: (d) => b?.update(d) });
    b?.done();
    return r as unknown as Record<string, unknown>;
  };
  const finalModel = (stage: string): string => {
    const cp = results[stage]?.checkpoint;
    if (typeof cp !== 'string') throw new PatentGPTError('E_CHECKPOINT', `demo: stage ${stage} left no checkpoint; delete ${markerPath(out, stage)} and rerun`);
    return cp;
  };

  const actions: Record<string, () => Promise<Record<string, unknown>>> = {
    'prep-text': async () => {
      writeExtraInputs(path.join(out, 'data', 'extra'));
      const files = writePrepConfig(path.join(out, 'data', 'prep-text'), data, path.join(out, 'data', 'extra'), { type: 'byte' });
      const report = await prepWithBar(files);
      return { config: files.config, output: files.output, documents: report.documents, duplicates: report.duplicates, filterQuality: report.filterQuality, stages: Object.fromEntries(Object.entries(report.stages).map(([k, v]) => [k, v.tokens])) };
    },
    tokenizer: async () => {
      const docs = await shardTexts(results['prep-text']!.output as string, 'stage1');
      return (await trainTokenizers(path.join(out, 'tokenizer'), docs, budget.vocab)) as unknown as Record<string, unknown>;
    },
    prep: async () => {
      const tok = results.tokenizer as unknown as TokenizerResult;
      const files = writePrepConfig(path.join(out, 'data', 'prep'), data, path.join(out, 'data', 'extra'), { type: 'sentencepiece', model: tok.merged });
      const report = await prepWithBar(files);
      return { config: files.config, output: files.output, documents: report.documents, duplicates: report.duplicates, stages: Object.fromEntries(Object.entries(report.stages).map(([k, v]) => [k, v.tokens])), heldOut: heldOutDocs(data, files.output).length };
    },
    init: async () => {
      const s = inputs();
      const cfg = validateConfig(stageConfigs(s).stage1!.model as Record<string, unknown>, 'demo model');
      const dir = path.join(out, 'init');
      const model = new LlamaForCausalLM(cfg, { seed: 1 });
      try {
        await savePretrained(model, dir, { tokenizer: SentencePieceTokenizer.load(s.tokenizer) });
      } finally {
        model.dispose();
      }
      return { checkpoint: dir, parameters: parameterCount(cfg).total };
    },
    'eval-init': () => evalOf('init', finalModel('init')),
    stage1: () => train('stage1'),
    'eval-stage1': () => evalOf('stage1', finalModel('stage1')),
    moe: () => train('moe'),
    'eval-moe': () => evalOf('moe', finalModel('moe')),
    stage2: () => train('stage2'),
    'eval-stage2': () => evalOf('stage2', finalModel('stage2')),
    sft: () => train('sft'),
    'eval-sft': () => evalOf('sft', finalModel('sft')),
    reward: () => train('reward'),
    ppo: () => train('ppo'),
    'eval-ppo': () => evalOf('ppo', finalModel('ppo')),
    dpo: () => train('dpo'),
    'eval-dpo': () => evalOf('dpo', finalModel('dpo')),
    chat: async () => {
      // The final model beside the SFT model it was aligned from, so the page shows what alignment changed.
      const model = finalModel(align);
      const turns: ChatTurn[] = await chatTranscript(model, budget.chatTokens);
      const sftModel = finalModel('sft');
      return { model, turns, before: { model: sftModel, turns: await chatTranscript(sftModel, budget.chatTokens) } };
    },
    report: async () => {
      const file = await writeReport(out, { steps, results, budget, align });
      return { file };
    },
  };

  /** `data prep` with a bar per phase, the last one closed when it returns. */
  async function prepWithBar(files: Parameters<typeof runPrep>[0]): ReturnType<typeof runPrep> {
    let b: Progress | null = null;
    let ph = '';
    try {
      return await runPrep(files, (phase, done, total) => {
        if (phase !== ph) {
          b?.done();
          ph = phase;
          b = bar(`prep ${phase}`, total);
        }
        b?.update(done);
      });
    } finally {
      (b as Progress | null)?.done();
    }
  }

  let status: DemoResult['status'] = 'completed';
  for (const step of steps) {
    const m = readMarker(out, step);
    const key = keyOf(step);
    // The report is always redrawn (it reads every other marker); every other finished step is skipped.
    if (!stale && m && m.key === key && step !== 'report') {
      results[step] = m.result;
      skipped.push(step);
      announce(step, 'skipped');
      continue;
    }
    if (m && m.key !== key) {
      stale = true;
      // A run folder trained under other options cannot be resumed: start it over.
      if ((TRAIN_STAGES as readonly string[]).includes(step) || step === 'ppo' || step === 'dpo') fs.rmSync(runDir({ dir: out } as StageInputs, step), { recursive: true, force: true });
    }
    const ts = performance.now();
    announce(step, 'start');
    try {
      results[step] = await actions[step]!();
    } catch (err) {
      if (err instanceof Interrupted) {
        status = 'interrupted';
        break;
      }
      throw err;
    }
    const seconds = (performance.now() - ts) / 1000;
    const marker: StepMarker = { step, key, seconds, finishedAt: new Date().toISOString(), result: results[step]! };
    await writeFileAtomic(markerPath(out, step), JSON.stringify(marker, null, 2) + '\n');
    ran.push(step);
    announce(step, 'done', { seconds: +seconds.toFixed(1) });
  }
  return { out, report: path.join(out, 'report.html'), ran, skipped, seconds: (performance.now() - t0) / 1000, status };
}

