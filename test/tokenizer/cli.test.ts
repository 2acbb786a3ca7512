// `patentgpt tokenizer train --hold-out | merge | stats --hold-out | export-hf` end to end on IP
// text of ../shared/data: the merged tokenizer is measured on lines it was not trained on, and its
// tokenizer.json gives the same ids in @huggingface/tokenizers (npm).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { describe, expect, it } from 'vitest';
import { isHeldOut, SentencePieceTokenizer, type TokenizerStatsRow } from '../../src/tokenizer/index.js';
import { dataDir } from './corpus.js';

const cli = (...args: string[]): string =>
  execFileSync(process.execPath, ['--import', 'tsx', join(import.meta.dirname, '..', '..', 'src', 'cli', 'main.ts'), ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
const lastJson = <T>(out: string): T => JSON.parse(out.trim().split('\n').pop()!) as T;

const data = dataDir();
describe.skipIf(!data)(`tokenizer CLI on IP text${data ? '' : ' (skipped: no ../shared/data; set PATENTGPT_DATA)'}`, () => {
  it('train on one split, merge, stats on the held-out split (merged clearly better on Chinese), export-hf', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tok-cli-'));
    try {
      const inputs = ['cn-ip-laws', 'us-code-title35'].flatMap((d) => ['--input', join(data!, d)]);
      cli('tokenizer', 'train', ...inputs, '--vocab-size', '8000', '--hold-out', '10', '--out', join(dir, 'ip.model'));
      const merged = lastJson<{ size: number; appended: number }>(
        cli('tokenizer', 'merge', '--base', 'llama2', '--domain', join(dir, 'ip.model'), '--size', '36000', '--out', join(dir, 'merged.model')),
      );
      expect(merged).toMatchObject({ size: 36000, appended: 4000 });
      const stats = lastJson<{ holdOut: number; stats: TokenizerStatsRow[] }>(
        cli('tokenizer', 'stats', '--hold-out', '10', '--model', 'llama2', '--model', join(dir, 'merged.model'), ...inputs.map((a) => (a === '--input' ? '--data' : a))),
      );
      expect(stats.holdOut).toBe(10);
      const row = (model: string, lang: string): TokenizerStatsRow => stats.stats.find((r) => r.model.endsWith(model) && r.language === lang)!;
      expect(row('merged.model', 'zh').lines).toBeGreaterThan(20);
      expect(row('merged.model', 'zh').charsPerToken).toBeGreaterThan(1.8 * row('llama2', 'zh').charsPerToken);
      expect(row('merged.model', 'en').charsPerToken).toBeGreaterThanOrEqual(row('llama2', 'en').charsPerToken);
      expect(() => cli('tokenizer', 'stats', '--hold-out', '1', '--model', 'llama2', '--data', join(data!, 'cn-ip-laws'))).toThrow(/>= 2/);

      // The held-out lines were never trained on: their exact text is in no training line.
      const law = readFileSync(join(data!, 'cn-ip-laws', '专利法(2020-10-17).md'), 'utf8').split('\n').filter((l) => l.length > 0);
      expect(law.filter((l) => isHeldOut(l, 10)).length).toBeGreaterThan(0);

      cli('tokenizer', 'export-hf', '--model', join(dir, 'merged.model'), '--out', join(dir, 'hf'));
      const hf = new Tokenizer(JSON.parse(readFileSync(join(dir, 'hf', 'tokenizer.json'), 'utf8')), JSON.parse(readFileSync(join(dir, 'hf', 'tokenizer_config.json'), 'utf8')));
      const ours = SentencePieceTokenizer.load(join(dir, 'merged.model'));
      let same = 0;
      const held = law.filter((l) => isHeldOut(l, 10) || l.length < 200);
      for (const line of held) if (JSON.stringify(hf.encode(line, { add_special_tokens: false }).ids) === JSON.stringify(Array.from(ours.encode(line)))) same++;
      expect(same).toBe(held.length);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
