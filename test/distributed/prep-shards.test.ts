// Data prep at scale: `data prep --shard i/N` as N independent jobs (Slurm array tasks, Kubernetes
// indexed pods: README "Scale out"), then the merge, then emit per part: with N = 3 every stage
// holds the same documents, token for token, as one run over everything (spread over 3 part
// folders instead of one, so the files themselves differ), with the same total of bytes.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { prep, validatePrepConfig } from '../../src/data/prep.js';
import { ShardSet } from '../../src/data/shards.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'pg-prep-shards-'));
afterAll(() => { if (!process.env.KEEP) fs.rmSync(root, { recursive: true, force: true }); });

// The corpus and config of test/data/prep.test.ts.
const EN = 'the device comprises a housing with an inlet and outlet valve that controls fluid flow between chambers while sensor circuits measure pressure temperature and report values to processor memory which stores instructions for adjusting motor speed according to detected load conditions over time during operation of vehicle engine system assembly'.split(' ');
const ZH = ['专利权人有权依照本法规定实施其专利', '任何单位或者个人未经许可不得实施', '国务院专利行政部门负责管理全国的专利工作', '申请人应当提交请求书说明书及其摘要', '发明创造的技术方案应当具备新颖性', '权利要求书应当以说明书为依据', '实用新型专利权的期限为十年', '对专利申请进行审查后作出决定', '侵犯专利权的赔偿数额按照实际损失确定', '外观设计应当富有美感并适于工业应用', '专利代理机构应当遵守法律行政法规'];

function corpus(dir: string): void {
  let seed = 12345;
  const rand = (): number => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 4294967296);
  fs.mkdirSync(dir, { recursive: true });
  const lines: string[] = [];
  for (let i = 0; i < 60; i++) {
    const body = Array.from({ length: 60 }, () => EN[Math.floor(rand() * EN.length)]).join(' ');
    lines.push(JSON.stringify({ id: `e${i}`, text: `Patent ${i}. ${body}` }));
    if (i % 10 === 0) lines.push(JSON.stringify({ id: `dup${i}`, text: `Patent ${i}. ${body}` })); // exact (after normalisation)
    if (i % 15 === 0) lines.push(JSON.stringify({ id: `near${i}`, text: `Patent ${i}. ${body} extra` })); // near
  }
  lines.push('{broken');
  lines.push(JSON.stringify({ id: 'short', text: 'too short' }));
  fs.writeFileSync(path.join(dir, 'a.jsonl'), lines.slice(0, 40).join('\n') + '\n');
  fs.writeFileSync(path.join(dir, 'b.jsonl'), lines.slice(40).join('\n') + '\n');
  fs.writeFileSync(path.join(dir, 'law.txt'), Array.from({ length: 30 }, (_, i) => `第${i}条 ` + Array.from({ length: 6 }, () => ZH[Math.floor(rand() * ZH.length)]).join('，') + '。').join('\n'));
}

function config(out: string, data: string) {
  return validatePrepConfig(
    {
      output: out,
      inputs: [
        { path: data, category: 'patent', exclude: 'law' },
        { path: path.join(data, 'law.txt'), category: 'law', split: 'line', filters: { minWords: 5 } },
      ],
      filters: { minWords: 20, languages: ['en', 'zh'] },
      dedup: { threshold: 0.8, permutations: 64 },
      tokenizer: { type: 'byte' },
      stages: { s1: { tokens: 60000, weights: { patent: 2, law: 1 } }, s2: { weights: { patent: 0.5, law: 2 } } },
      seed: 3,
      batchDocs: 16,
    },
    root,
  );
}

/** Every document of a stage's part folders, as base64 of its token bytes. */
async function documents(stageDir: string, parts: number): Promise<string[]> {
  const out: string[] = [];
  for (let p = 0; p < parts; p++) {
    const set = await ShardSet.open(path.join(stageDir, `part-${p}`));
    for (const sh of set.shards)
      for (let d = 0; d < sh.documents; d++) {
        const t = sh.document(d);
        out.push(Buffer.from(t.buffer, t.byteOffset, t.byteLength).toString('base64'));
      }
    set.close();
  }
  return out;
}

const binBytes = (stageDir: string): number =>
  Object.entries(tree(stageDir)).filter(([f]) => f.endsWith('.bin')).reduce((a, [, b64]) => a + Buffer.from(b64, 'base64').length, 0);

function tree(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string): void => {
    for (const e of fs.readdirSync(d, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const f = path.join(d, e.name);
      if (e.isDirectory()) walk(f);
      else out[path.relative(dir, f)] = fs.readFileSync(f).toString('base64');
    }
  };
  walk(dir);
  return out;
}

describe('data prep --shard i/3, merge, emit', () => {
  it('gives every stage the documents of one run, token for token, and the same bytes in total', async () => {
    const data = path.join(root, 'data');
    corpus(data);
    const one = config(path.join(root, 'one'), data);
    await prep(one, { workers: 0 });
    const cfg = config(path.join(root, 'parts'), data);
    // the scans are independent jobs: any order (one after the other here: concurrent scans in one
    // output folder collide on work/rejects.jsonl.tmp, a bug reported to src/data's owner)
    for (const part of [2, 0, 1]) await prep(cfg, { part, parts: 3, phase: 'scan', workers: 0 });
    await prep(cfg, { part: 0, parts: 3, phase: 'merge' });
    for (const part of [0, 1, 2]) await prep(cfg, { part, parts: 3, phase: 'emit' });
    for (const stage of ['s1', 's2']) {
      const a = await documents(path.join(one.output, stage), 1);
      const b = await documents(path.join(cfg.output, stage), 3);
      expect(a.length).toBeGreaterThan(10);
      expect(b.sort()).toEqual(a.sort());
      expect(binBytes(path.join(cfg.output, stage))).toBe(binBytes(path.join(one.output, stage)));
    }
  });
});
