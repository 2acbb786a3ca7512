// Task names the CLI resolves: built-in tasks over ../shared/data (or $PATENTGPT_DATA), a task
// definition (`*.task.json`, see taskdef.ts: generation, perplexity, phrase matching), or a
// multiple-choice path (a .csv/.json/.jsonl file, or a folder of them: one task, the files in name order),
// or an lm-evaluation-harness task YAML over local data (`*.yaml`, see lmeval-yaml.ts).
import { existsSync, readdirSync, statSync } from 'node:fs';
import { basename, extname, join, resolve } from 'node:path';
import { PatentGPTError } from '../errors.js';
import { loadGenTask, type GenTask } from './gen.js';
import { loadLmEvalYaml } from './lmeval-yaml.js';
import { loadPplTask, type PplTask } from './perplexity.js';
import { loadPhraseTask, type PhraseTask } from './phrase.js';
import { loadTaskDef, parseTaskDef, type TaskDef } from './taskdef.js';
import { loadTask, type McTask } from './tasks.js';

/** Any task the harness runs; multiple-choice tasks carry no `kind`. */
export type AnyTask = McTask | GenTask | PplTask | PhraseTask;

/** Built-in tasks: multiple-choice file lists, or task definitions (files relative to the data folder). */
export const BUILTIN_TASKS: Record<string, { files: string[]; about: string; def?: Record<string, unknown> }> = {
  pae: { files: ['cn-patent-agent-exam/mcq_sing_pae.csv', 'cn-patent-agent-exam/mcq_mult_pae.csv'], about: 'China patent agent exam, single + multi answer' },
  'pae-single': { files: ['cn-patent-agent-exam/mcq_sing_pae.csv'], about: 'China patent agent exam, single answer' },
  'pae-multi': { files: ['cn-patent-agent-exam/mcq_mult_pae.csv'], about: 'China patent agent exam, multi answer' },
  'claim-to-abstract': {
    files: ['us-abstract-claim-genpairs/Llama2_A61B_1000.csv'], about: 'US A61B patents: write the abstract from claim 1 (generation)',
    def: { kind: 'generate', prompt: 'Claim: {claim_text}\nAbstract:', reference: '{patent_abstract}', category: '{cpc_subclass}', maxTokens: 200, stop: ['\n\n'] },
  },
  'ip-qa': {
    files: ['cn-patents-coretech/GovPatent-SFT/QA_IPC.jsonl', 'cn-patents-coretech/GovPatent-SFT/QA_Tech.jsonl'], about: 'Chinese IP/IPC questions with reference answers (generation)',
    def: { kind: 'generate', prompt: '问：{instruction}\n答：', reference: '{output}', maxTokens: 256 },
  },
  'phrase-matching': {
    files: ['patent-phrase-matching/train.csv'], about: 'US patent phrase-to-phrase similarity, Pearson r (PatentMatch stand-in)',
    def: { kind: 'phrase-matching' },
  },
  'ppl-abstracts': {
    files: ['patentsview-abstracts/baseball_patent_query.csv', 'patentsview-abstracts/neural_network_patent_query.csv'], about: 'perplexity of US patent abstracts, per query',
    def: { kind: 'perplexity', text: '{patent_abstract}' },
  },
};

function fromDef(def: TaskDef): AnyTask {
  switch (def.kind) {
    case 'generate':
      return loadGenTask(def);
    case 'perplexity':
      return loadPplTask(def);
    case 'phrase-matching':
      return loadPhraseTask(def);
    case 'multiple-choice': {
      const { style, template, targetDelimiter, fewshotDelimiter, description } = def;
      return { ...loadTask(def.name, def.files), prompt: { style, template, targetDelimiter, fewshotDelimiter, description } };
    }
  }
}

export function dataDir(): string {
  return process.env.PATENTGPT_DATA ?? resolve(process.cwd(), '..', 'shared', 'data');
}

export function resolveTask(spec: string, data = dataDir()): AnyTask {
  const builtin = Object.hasOwn(BUILTIN_TASKS, spec) ? BUILTIN_TASKS[spec] : undefined;
  if (builtin) {
    const files = builtin.files.map((f) => join(data, f));
    const missing = files.filter((f) => !existsSync(f));
    if (missing.length > 0)
      throw new PatentGPTError('E_IO', `task "${spec}" needs ${missing.join(', ')} (set PATENTGPT_DATA to the shared data folder)`);
    return builtin.def ? fromDef(parseTaskDef({ ...builtin.def, name: spec, files }, data, `built-in task ${spec}`)) : loadTask(spec, files);
  }
  if (/\.ya?ml$/i.test(spec)) {
    if (!existsSync(spec)) throw new PatentGPTError('E_ARGUMENT', `no task YAML ${spec}`);
    return loadLmEvalYaml(spec);
  }
  if (spec.endsWith('.task.json')) {
    if (!existsSync(spec)) throw new PatentGPTError('E_ARGUMENT', `no task definition ${spec}`);
    return fromDef(loadTaskDef(spec));
  }
  if (!existsSync(spec)) {
    throw new PatentGPTError('E_ARGUMENT', `unknown task "${spec}": not a built-in task (${Object.keys(BUILTIN_TASKS).join(', ')}) and no such file or folder`);
  }
  if (statSync(spec).isDirectory()) {
    const files = readdirSync(spec).filter((f) => ['.csv', '.json', '.jsonl'].includes(extname(f).toLowerCase())).sort().map((f) => join(spec, f));
    if (files.length === 0) throw new PatentGPTError('E_ARGUMENT', `task folder ${spec} holds no .csv, .json or .jsonl file`);
    return loadTask(basename(resolve(spec)), files);
  }
  return loadTask(basename(spec, extname(spec)), [spec]);
}
