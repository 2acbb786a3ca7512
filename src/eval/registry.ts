// Task names the CLI resolves: built-in tasks over ../shared/data (or $PATENTGPT_DATA), or a path
// (a .csv/.json/.jsonl file, or a folder of them: one task, the files in name order).
import { existsSync, readdirSync, statSync } from 'node:fs';
import { basename, extname, join, resolve } from 'node:path';
import { PatentGPTError } from '../errors.js';
import { loadTask, type McTask } from './tasks.js';

export const BUILTIN_TASKS: Record<string, { files: string[]; about: string }> = {
  pae: { files: ['cn-patent-agent-exam/mcq_sing_pae.csv', 'cn-patent-agent-exam/mcq_mult_pae.csv'], about: 'China patent agent exam, single + multi answer' },
  'pae-single': { files: ['cn-patent-agent-exam/mcq_sing_pae.csv'], about: 'China patent agent exam, single answer' },
  'pae-multi': { files: ['cn-patent-agent-exam/mcq_mult_pae.csv'], about: 'China patent agent exam, multi answer' },
};

export function dataDir(): string {
  return process.env.PATENTGPT_DATA ?? resolve(process.cwd(), '..', 'shared', 'data');
}

export function resolveTask(spec: string, data = dataDir()): McTask {
  const builtin = BUILTIN_TASKS[spec];
  if (builtin) {
    const files = builtin.files.map((f) => join(data, f));
    const missing = files.filter((f) => !existsSync(f));
    if (missing.length > 0)
      throw new PatentGPTError('E_IO', `task "${spec}" needs ${missing.join(', ')} (set PATENTGPT_DATA to the shared data folder)`);
    return loadTask(spec, files);
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
