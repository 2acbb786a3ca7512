// Builds examples/demo-data/ (the demo's bundled corpus, instructions, preference pairs, prompts
// and eval tasks) from public-domain USPTO text and Title 35 of the US Code in ../shared/data.
// Run once by hand: `npx tsx test/demo/make-demo-data.ts [SHARED_DATA_DIR]`; the output is
// committed, so the demo needs no data at hand. Deterministic (seeded).
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { readDocuments } from '../../src/data/readers/index.js';
import { SeededStream } from '../../src/util/rng.js';

const shared = process.argv[2] ?? new URL('../../../shared/data', import.meta.url).pathname;
const out = new URL('../../examples/demo-data/', import.meta.url).pathname;
mkdirSync(out, { recursive: true });

const clip = (s: string, n: number): string => {
  const t = s.replace(/[ \t]+/g, ' ').trim();
  if (t.length <= n) return t;
  const cut = t.slice(0, n);
  const end = Math.max(cut.lastIndexOf('. '), cut.lastIndexOf('.\n'));
  return end > n / 2 ? cut.slice(0, end + 1) : cut.replace(/\s+\S*$/, '') + '.';
};
const words = (s: string): number => s.split(/\s+/).filter(Boolean).length;
const hashUnit = (s: string): number => createHash('sha256').update(s).digest().readUInt32BE(0) / 2 ** 32;

interface Patent { id: string; source: string; title: string; abstract: string; claim1: string; claims: string; description: string }

const files = [
  'uspto-fulltext-rubyxml/grants_2001_sample.xml',
  'uspto-fulltext-rubyxml/applications_sample_2001.xml',
  'uspto-fulltext-rubyxml/applications_sample_2004.xml',
  'uspto-ppd-samples/xml2004/US06859910.xml',
  'uspto-ppd-samples/xml2004/US06970935.xml',
  'uspto-ppd-samples/xml2006/US07272630B2.xml',
  'uspto-ppd-samples/xml2014/US08926509.xml',
  'uspto-ppd-samples/xml2014/US08930553.xml',
  'uspto-ppd-samples/xmlApp2004/US20050004437A1.xml',
  'uspto-ppd-samples/xmlApp2004/US20050004974A1.xml',
  'uspto-ppd-samples/pap/US20010000044A1.xml',
  'uspto-ppd-samples/sgml/US06336130.xml',
];
const patents: Patent[] = [];
const seenTitles = new Set<string>();
for (const f of files) {
  for await (const item of readDocuments(join(shared, f))) {
    if (!item.ok) continue;
    const d = item.doc;
    const title = d.title.replace(/\s+/g, ' ').trim();
    if (words(d.abstract) < 30 || words(d.claims) < 20 || !title || seenTitles.has(title.toLowerCase())) continue;
    seenTitles.add(title.toLowerCase());
    // Drop the preamble ("What is claimed is:", "I claim:") so claim 1 is the claim itself.
    const claims = d.claims.replace(/\s+\./g, '.').replace(/(\d) \./g, '$1.').replace(/^\s*(what is claimed is|we claim|i claim|claims?)\s*:?\s*/i, '');
    const first = claims.split(/\n+/).find((l) => words(l) >= 8) ?? '';
    const claim1 = clip(first.replace(/^1\s*\.\s*/, '1. '), 500);
    if (words(claim1) < 8) continue;
    patents.push({
      id: d.id, source: f.split('/')[0]!, title, abstract: clip(d.abstract, 700), claim1,
      claims: clip(claims, 1200), description: clip(d.description, 1400),
    });
  }
}

// Title 35 (public domain): sections as {num, heading, text}.
const usc = readFileSync(join(shared, 'us-code-title35/usc35.xml'), 'utf8');
const strip = (s: string): string => s.replace(/<[^>]+>/g, ' ').replace(/&amp;/g, '&').replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&[a-z#0-9]+;/g, ' ').replace(/\s+/g, ' ').trim();
const sections: { num: string; heading: string; text: string }[] = [];
for (const m of usc.matchAll(/<section\b[^>]*>([\s\S]*?)<\/section>/g)) {
  const body = m[1]!;
  const num = /<num[^>]*>([\s\S]*?)<\/num>/.exec(body)?.[1];
  const heading = /<heading[^>]*>([\s\S]*?)<\/heading>/.exec(body)?.[1];
  if (!num || !heading) continue;
  const text = strip(body.replace(/<sourceCredit[\s\S]*?<\/sourceCredit>/g, '').replace(/<notes[\s\S]*?<\/notes>/g, '').replace(/<num[^>]*>[\s\S]*?<\/num>/, '').replace(/<heading[^>]*>[\s\S]*?<\/heading>/, ''));
  const h = strip(heading).replace(/\.$/, '');
  if (words(text) < 40 || /Repealed|Omitted|Transferred/i.test(h)) continue;
  sections.push({ num: strip(num).replace(/^§\s*/, '').replace(/\.$/, ''), heading: h, text: clip(text, 1500) });
}

const rng = new SeededStream('demo-data', 1);
const shuffle = <T>(xs: T[]): T[] => {
  for (let i = xs.length - 1; i > 0; i--) { const j = rng.int(i + 1); [xs[i], xs[j]] = [xs[j]!, xs[i]!]; }
  return xs;
};
const heldOut = patents.filter((p) => hashUnit(`heldout:${p.id}`) < 0.2);
const train = patents.filter((p) => !heldOut.includes(p));
const patentText = (p: Patent): string => [`Title: ${p.title}`, `Abstract: ${p.abstract}`, p.description ? `Description: ${p.description}` : '', `Claims:\n${p.claims}`].filter(Boolean).join('\n\n');
const jsonl = (rows: unknown[]): string => rows.map((r) => JSON.stringify(r)).join('\n') + '\n';

mkdirSync(join(out, 'corpus'), { recursive: true });
writeFileSync(join(out, 'corpus/patents.jsonl'), jsonl(train.map((p) => ({ id: p.id, text: patentText(p) }))));
writeFileSync(join(out, 'corpus/title35.jsonl'), jsonl(sections.map((s) => ({ id: `35 USC ${s.num}`, text: `35 U.S.C. ${s.num}. ${s.heading}.\n${s.text}` }))));
writeFileSync(join(out, 'heldout-patents.jsonl'), jsonl(heldOut.map((p) => ({ id: p.id, text: patentText(p) }))));

// SFT: instructions grounded in the training patents and statutes.
const sft: { instruction: string; input: string; output: string }[] = [];
for (const p of train) {
  sft.push({ instruction: `Write the abstract of a patent titled "${p.title}".`, input: '', output: clip(p.abstract, 400) });
  sft.push({ instruction: 'Give a title for the patent with this abstract.', input: clip(p.abstract, 400), output: p.title });
  sft.push({ instruction: `Write claim 1 of a patent titled "${p.title}".`, input: '', output: clip(p.claim1, 400) });
}
for (const s of sections) sft.push({ instruction: `What does 35 U.S.C. ${s.num} (${s.heading}) provide?`, input: '', output: clip(s.text, 400) });
writeFileSync(join(out, 'sft.jsonl'), jsonl(shuffle(sft)));

// Preference pairs: the real abstract over a scrambled one (its sentences' words shuffled) or
// another patent's abstract (off topic).
const pref: { prompt: string; chosen: string; rejected: string }[] = [];
for (const [i, p] of train.entries()) {
  const chosen = clip(p.abstract, 300);
  const rejected = i % 2 === 0
    ? shuffle(chosen.split(' ')).join(' ')
    : clip(train[(i + 1 + rng.int(train.length - 1)) % train.length]!.abstract, 300);
  pref.push({ prompt: `Write the abstract of a patent titled "${p.title}".`, chosen, rejected });
}
writeFileSync(join(out, 'preferences.jsonl'), jsonl(pref));
writeFileSync(join(out, 'ppo-prompts.jsonl'), jsonl(train.map((p) => ({ prompt: `Write the abstract of a patent titled "${p.title}".` }))));

// Eval: multiple choice (4 options, chance 25%) and perplexity.
const mc = (pool: { key: string; q: string }[], question: (q: string) => string, category: string, seed: string): unknown[] => {
  const r = new SeededStream(seed, 1);
  return pool.map((x, i) => {
    const others = pool.filter((_, j) => j !== i);
    const opts = [x.key];
    while (opts.length < 4) { const o = others[r.int(others.length)]!.key; if (!opts.includes(o)) opts.push(o); }
    for (let k = opts.length - 1; k > 0; k--) { const j = r.int(k + 1); [opts[k], opts[j]] = [opts[j]!, opts[k]!]; }
    return { question: question(x.q), choices: opts, answer: 'ABCD'[opts.indexOf(x.key)], category };
  });
};
mkdirSync(join(out, 'eval'), { recursive: true });
writeFileSync(join(out, 'eval/patent-title.jsonl'), jsonl(mc(heldOut.map((p) => ({ key: p.title, q: clip(p.abstract, 300) })), (q) => `Abstract: ${q}\nTitle:`, 'held-out patents', 'mc-title')));
writeFileSync(join(out, 'eval/title35-heading.jsonl'), jsonl(mc(sections.slice(0, 60).map((s) => ({ key: s.heading, q: clip(s.text, 300) })), (q) => `Statute: ${q}\nHeading of this section of 35 U.S.C.:`, 'patent law', 'mc-law')));
console.log(JSON.stringify({ patents: patents.length, train: train.length, heldOut: heldOut.length, sections: sections.length, sft: sft.length, pref: pref.length }));
