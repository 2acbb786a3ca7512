// The synthetic corpus and prep config shared by the prep tests (test/data/prep.test.ts,
// test/distributed/prep-shards.test.ts): 60 English "patents" with exact and near duplicates,
// a broken line, a too-short document, and 30 lines of Chinese law text; and tree(), to compare outputs.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { validatePrepConfig } from '../../src/data/prep.js';

const EN = 'the device comprises a housing with an inlet and outlet valve that controls fluid flow between chambers while sensor circuits measure pressure temperature and report values to processor memory which stores instructions for adjusting motor speed according to detected load conditions over time during operation of vehicle engine system assembly'.split(' ');
const ZH = ['专利权人有权依照本法规定实施其专利', '任何单位或者个人未经许可不得实施', '国务院专利行政部门负责管理全国的专利工作', '申请人应当提交请求书说明书及其摘要', '发明创造的技术方案应当具备新颖性', '权利要求书应当以说明书为依据', '实用新型专利权的期限为十年', '对专利申请进行审查后作出决定', '侵犯专利权的赔偿数额按照实际损失确定', '外观设计应当富有美感并适于工业应用', '专利代理机构应当遵守法律行政法规'];

/** Writes the corpus (a.jsonl, b.jsonl, law.txt) into dir. */
export function corpus(dir: string): void {
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

/** The prep config over corpus(data), writing to out; relative paths resolve against root. */
export function config(out: string, data: string, root: string) {
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

/** Every file under dir (relative path -> base64 of its bytes), in name order: compares prep outputs. */
export function tree(dir: string): Record<string, string> {
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
