// Training on real patent text (../shared/data, or PATENTGPT_DATA): a short run of a small model
// brings the validation loss far below the unigram entropy of the text, and leaves the metrics
// and the plot. Skips with a message when the data is absent.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readTextDocuments } from '../../src/data/textfiles.js';
import { ByteTokenizer } from '../../src/tokenizer/byte.js';
import { validateStageConfig } from '../../src/train/config.js';
import { readMetrics } from '../../src/train/metrics.js';
import { pretrain } from '../../src/train/pretrain.js';
import { stageOfKind } from '../helpers.js';

const dataRoot = process.env.PATENTGPT_DATA ?? new URL('../../../shared/data', import.meta.url).pathname;
const abstracts = path.join(dataRoot, 'patentsview-abstracts');
const present = fs.existsSync(abstracts);
if (!present) console.warn(`skipping the real-data run: ${abstracts} not found (set PATENTGPT_DATA)`);
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'pgpt-realdata-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

describe.skipIf(!present)('pretraining on real patent abstracts', () => {
  it('the validation loss falls far below the unigram entropy of the text', async () => {
    // unigram entropy of the byte-tokenized text, in nats per token
    const tok = new ByteTokenizer();
    const counts = new Float64Array(tok.vocabSize);
    let n = 0;
    await readTextDocuments([abstracts], (d) => {
      for (const id of tok.encode(d.text, { bos: true, eos: true })) {
        counts[id]!++;
        n++;
      }
    });
    let unigram = 0;
    for (const c of counts) if (c > 0) unigram -= (c / n) * Math.log(c / n);
    expect(unigram).toBeGreaterThan(2.5);

    const runDir = path.join(root, 'run');
    const cfg = validateStageConfig({
      name: 'abstracts', runDir,
      model: { vocabSize: 259, dim: 96, nLayers: 3, nHeads: 4, nKvHeads: 2, ffnDim: 256, maxSeqLen: 128 },
      seqLen: 128, batchSize: 16, steps: 150,
      optimizer: { lr: 0.004 }, schedule: { kind: 'cosine', warmupSteps: 10 },
      data: { valFraction: 0.02 }, evalEvery: 50, evalBatches: 6, checkpointEvery: 0, seed: 11, threads: 2,
    });
    const r = await pretrain(stageOfKind(cfg, 'pretrain'), { dataPaths: [abstracts], progress: null });
    const vals = readMetrics(path.join(runDir, 'metrics.jsonl')).filter((x) => x.valLoss !== undefined).map((x) => x.valLoss!);
    console.log(`unigram entropy ${unigram.toFixed(3)} nats/token; validation loss ${vals.map((v) => v.toFixed(3)).join(' -> ')}`);
    expect(vals).toHaveLength(3);
    expect(r.valLoss!).toBeLessThan(0.75 * unigram);
    expect(vals[2]!).toBeLessThan(vals[0]!);
    expect(fs.readFileSync(path.join(runDir, 'report.svg'), 'utf8')).toMatch(/<svg/);
  });
});
