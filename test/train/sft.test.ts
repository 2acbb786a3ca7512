// The SFT stage: its config (kind "sft", data validated by src/data/sft, chatTemplate, init),
// the loss on the assistant's tokens only (a hand computation on one batch), and a short run
// from a tiny model whose held-out assistant-token loss falls.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { llama2ChatRenderer, loadSftData, SftBatchStream } from '../../src/data/sft/index.js';
import { LlamaForCausalLM, type ModelConfig } from '../../src/models/index.js';
import { noGrad } from '../../src/tensor/index.js';
import { ByteTokenizer } from '../../src/tokenizer/byte.js';
import { configHash, validateStageConfig, type SftConfig } from '../../src/train/config.js';
import { readMetrics } from '../../src/train/metrics.js';
import { SentencePieceTokenizer } from '../../src/tokenizer/sentencepiece.js';
import { llama2ByteRenderer, sft, sftLoss, sftRenderer } from '../../src/train/stages/sft.js';
import { TINY, sftWorkspace } from './sft-fixtures.js';

const { root, dataFile, initDir } = sftWorkspace('pgpt-sft-');


function sftRaw(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    kind: 'sft', name: 'sft-test', model: initDir, tokenizer: 'byte', init: initDir,
    data: { sources: [dataFile], valFraction: 0.1 },
    seqLen: 128, batchSize: 4, steps: 10, optimizer: { lr: 0.003 }, threads: 1, ...extra,
  };
}

describe('sft stage config', () => {
  it('reads kind "sft": data through validateSftDataConfig, chatTemplate default llama2, paths against the config folder', () => {
    const cfg = validateStageConfig({ ...sftRaw(), data: { sources: ['reverse.jsonl'], valFraction: 0.1, packing: 'pad' } }, { source: 's.json', baseDir: root }) as SftConfig;
    expect(cfg.kind).toBe('sft');
    expect(cfg.chatTemplate).toBe('llama2');
    expect(cfg.data.sources[0]!.path).toBe(dataFile);
    expect(cfg.data).toMatchObject({ valFraction: 0.1, packing: 'pad', strategy: 'bfd', trainOnPrompt: false });
    const t = validateStageConfig(sftRaw({ chatTemplate: { path: 'tok', name: 'tool_use' } }), { baseDir: root }) as SftConfig;
    expect(t.chatTemplate).toEqual({ path: path.join(root, 'tok'), name: 'tool_use' });
    // a model folder is its own init
    const { init: _i, ...noInit } = sftRaw();
    expect((validateStageConfig(noInit) as SftConfig).init).toBe(initDir);
    // the SFT fields are in the hash (a pretrain config's hash is pinned in stages.test.ts)
    expect(configHash(cfg)).not.toBe(configHash({ ...cfg, chatTemplate: { path: '/x' } }));
  });

  it('refuses bad SFT configs naming the field', () => {
    const refuse = (raw: Record<string, unknown>, re: RegExp): void => {
      expect(() => validateStageConfig(raw, { source: 's.json' })).toThrow(re);
    };
    refuse(sftRaw({ data: undefined }), /s\.json: data: missing/);
    refuse(sftRaw({ data: { sources: [] } }), /s\.json: data\.sources: must list at least one/);
    refuse(sftRaw({ data: { sources: [dataFile], packing: 'zip' } }), /s\.json: data\.packing: must be one of "pack", "pad"/);
    refuse(sftRaw({ data: { sources: [{ path: dataFile, weight: -1 }] } }), /s\.json: data\.sources\[0\]\.weight: must be a number >= 0/);
    refuse(sftRaw({ data: { sources: [dataFile], manifests: [] } }), /s\.json: data\.manifests: unknown field/);
    refuse(sftRaw({ data: { sources: [dataFile], maxLength: 512 } }), /s\.json: data\.maxLength: 512 exceeds seqLen 128/);
    refuse(sftRaw({ chatTemplate: '' }), /s\.json: chatTemplate: must be a non-empty string/);
    refuse(sftRaw({ chatTemplate: { path: 'x', nme: 'y' } }), /s\.json: chatTemplate\.nme: unknown field/);
    refuse(sftRaw({ init: undefined, model: { ...TINY } }), /s\.json: init: missing: fine-tuning starts from trained weights/);
    refuse({ ...sftRaw(), chatTemplate: 'llama2', data: { sources: [dataFile] }, kind: 'pretrain' }, /s\.json: chatTemplate: unknown field/);
  });
});

describe('sft chat template', () => {
  const folder = path.join(import.meta.dirname, '..', 'tokenizer', 'fixtures', 'chat-templates', 'llama2-chat');
  const conv = [
    { role: 'system' as const, content: 'Answer briefly.' },
    { role: 'user' as const, content: 'What is a claim?' },
    { role: 'assistant' as const, content: 'The part of a patent that defines the protection.' },
  ];
  it.skipIf(!fs.existsSync(folder))('a tokenizer folder\'s Jinja template renders as the built-in "llama2"; the byte tokenizer and a bad name are refused naming the field', () => {
    const tok = SentencePieceTokenizer.llama2();
    const hf = sftRenderer({ chatTemplate: { path: folder }, tokenizer: 'llama2' }, tok).render(conv);
    const builtIn = sftRenderer({ chatTemplate: 'llama2', tokenizer: 'llama2' }, tok).render(conv);
    expect(Array.from(hf.ids)).toEqual(Array.from(builtIn.ids));
    expect(Array.from(hf.assistantMask)).toEqual(Array.from(builtIn.assistantMask));
    expect(Array.from(builtIn.ids)).toEqual(Array.from(llama2ChatRenderer(tok).render(conv).ids));
    expect(() => sftRenderer({ chatTemplate: { path: folder }, tokenizer: 'byte' }, new ByteTokenizer(), 's.json')).toThrow(/s\.json: chatTemplate: a Hugging Face chat template needs a SentencePiece tokenizer/);
    expect(() => sftRenderer({ chatTemplate: { path: folder, name: 'nope' }, tokenizer: 'llama2' }, tok, 's.json')).toThrow(/s\.json: chatTemplate\.name: /);
    expect(() => sftRenderer({ chatTemplate: { path: path.join(root, 'none') }, tokenizer: 'llama2' }, tok, 's.json')).toThrow(/s\.json: chatTemplate: /);
  });
});

describe('sft loss', () => {
  it('is the mean cross-entropy over the assistant tokens alone: prompts and template carry no loss', async () => {
    const tok = new ByteTokenizer();
    const renderer = llama2ByteRenderer(tok);
    const one = path.join(root, 'one.jsonl');
    fs.writeFileSync(one, JSON.stringify({ instruction: 'Reverse the word.', input: 'patent', output: 'tnetap' }) + '\n');
    const data = await loadSftData({ sources: [{ path: one }], renderer, maxLength: 128 });
    expect(data.train).toHaveLength(1);
    const batch = new SftBatchStream(data.train, { seqLen: 128, batchSize: 1, mode: 'pad', padToSeqLen: false }).next();

    // by hand: the rendered ids and assistant mask, the next-token targets the mask selects
    const r = renderer.render([{ role: 'user', content: 'Reverse the word.\npatent' }, { role: 'assistant', content: 'tnetap' }]);
    expect(Array.from(batch.tokens)).toEqual(Array.from(r.ids));
    const model = new LlamaForCausalLM(TINY as ModelConfig, { seed: 9 });
    try {
      noGrad(() => {
        const logits = model.forward(batch).toArray() as Float32Array;
        const V = TINY.vocabSize!;
        const ce = (i: number): number => {
          const row = logits.subarray(i * V, (i + 1) * V);
          let mx = -Infinity;
          for (const x of row) mx = Math.max(mx, x);
          let s = 0;
          for (const x of row) s += Math.exp(x - mx);
          return Math.log(s) + mx - row[r.ids[i + 1]!]!;
        };
        let sum = 0;
        let n = 0;
        let all = 0;
        for (let i = 0; i + 1 < r.ids.length; i++) {
          all += ce(i);
          if (r.assistantMask[i + 1]) {
            sum += ce(i);
            n++;
          }
        }
        expect(n).toBe(' tnetap '.length + 1); // the answer, its spaces and EOS
        const out = sftLoss(model, batch, 2);
        expect(out.loss.item()).toBeCloseTo(sum / n, 4);
        expect(Math.abs(out.loss.item() - all / (r.ids.length - 1))).toBeGreaterThan(1e-3); // not the loss over every token
        expect(out.metrics!.supervisedTokens).toBe(2 * n);
      });
    } finally {
      model.dispose();
    }
  });
});

describe('sft run', () => {
  it('a short run from a tiny model lowers the held-out assistant-token loss and reports supervised tokens', async () => {
    const cfg = validateStageConfig(sftRaw({ steps: 40, evalEvery: 5, evalBatches: 4, checkpointEvery: 0, schedule: { kind: 'constant' }, seed: 2 })) as SftConfig;
    cfg.runDir = path.join(root, 'run');
    const r = await sft(cfg, { progress: null });
    expect(r.status).toBe('completed');
    expect(r.data.val).toBeGreaterThan(10);
    const recs = readMetrics(path.join(cfg.runDir, 'metrics.jsonl'));
    const val = recs.filter((x) => x.valLoss !== undefined).map((x) => x.valLoss!);
    expect(val.length).toBeGreaterThanOrEqual(8);
    expect(val.at(-1)!).toBeLessThan(val[0]! * 0.8);
    const sup = recs.filter((x) => x.loss !== undefined).map((x) => (x as Record<string, unknown>).supervisedTokens as number);
    expect(sup.every((s) => s > 0 && s < 4 * 128)).toBe(true);
    // the end is a complete model folder
    expect(fs.readdirSync(path.join(cfg.runDir, 'checkpoints', 'step-40'))).toEqual(expect.arrayContaining(['config.json', 'generation_config.json', 'model.safetensors', 'tokenizer_spec.json']));
  }, 120_000);
});
