// Parameter groups and the optimizer chosen by config: the default grouping (no decay on norms,
// biases and, when asked, embeddings), per-group lr multipliers and weight decay by name
// pattern, SGD with momentum against a float64 torch.optim.SGD reference, and optimizer state
// that round-trips per group through the checkpoint file (and still reads the old format).
import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import { LlamaForCausalLM, preset } from '../../src/models/index.js';
import { Tensor } from '../../src/tensor/index.js';
import { decodeOptimizerState, optimizerStateContent } from '../../src/train/checkpoint.js';
import { AdamW, SGD, createOptimizer, groupPattern, type Optimizer, type OptimizerOptions, type OptimizerState } from '../../src/train/optimizer.js';
import { expectClose, numbers, randomArray } from '../helpers.js';

/** Names as LlamaForCausalLM has them. */
function params(seed: number): [string, Tensor][] {
  const t = (n: number, shape: number[], s: number): Tensor => Tensor.from(Float32Array.from(randomArray(n, s)), shape, { requiresGrad: true });
  return [
    ['model.embed_tokens.weight', t(12, [4, 3], seed)],
    ['model.layers.0.input_layernorm.weight', t(3, [3], seed + 1)],
    ['model.layers.0.self_attn.q_proj.weight', t(9, [3, 3], seed + 2)],
    ['model.layers.0.mlp.down_proj.weight', t(6, [3, 2], seed + 3)],
    ['lm_head.bias', t(4, [4], seed + 4)],
  ];
}

function setGrads(ps: [string, Tensor][], seed: number, s = 1): Float64Array[] {
  return ps.map(([, p], i) => {
    const g = Float32Array.from(randomArray(p.size, seed * 10 + i, s));
    p.grad?.dispose();
    p.grad = Tensor.from(g, p.shape);
    return Float64Array.from(g);
  });
}

const values = (ps: [string, Tensor][]): Float32Array[] => ps.map(([, p]) => p.toArray() as Float32Array);

async function throughFile(state: OptimizerState): Promise<OptimizerState> {
  const chunks: Buffer[] = [];
  await optimizerStateContent(state)({ write: async (c) => void chunks.push(Buffer.from(c)) });
  return decodeOptimizerState(Buffer.concat(chunks), 'optimizer.safetensors');
}

describe('parameter groups', () => {
  it('default groups: decay (matrices, embeddings unless decayEmbeddings is false) and no_decay (norms, biases)', () => {
    const names = (o: Optimizer): Record<string, string[]> => Object.fromEntries(o.groups.map((g) => [g.name, g.params]));
    expect(names(new AdamW(params(1)))).toEqual({
      decay: ['model.embed_tokens.weight', 'model.layers.0.self_attn.q_proj.weight', 'model.layers.0.mlp.down_proj.weight'],
      no_decay: ['model.layers.0.input_layernorm.weight', 'lm_head.bias'],
    });
    const o = new AdamW(params(1), { decayEmbeddings: false, weightDecay: 0.2 });
    expect(names(o).no_decay).toEqual(['model.embed_tokens.weight', 'model.layers.0.input_layernorm.weight', 'lm_head.bias']);
    expect(o.groups.map((g) => [g.name, g.weightDecay])).toEqual([['no_decay', 0], ['decay', 0.2]]);
  });

  it('rules by name pattern: first match wins, lrScale and weightDecay per group, the no-decay rule inside a group without its own decay', () => {
    const o = new AdamW(params(1), {
      groups: [
        { match: 'model.embed_tokens.*', name: 'embed', lrScale: 0.1 },
        { match: '/^model\\.layers\\.\\d+\\.(mlp|input_layernorm)\\./', name: 'ff', lrScale: 2, weightDecay: 0.5 },
        { match: 'model.layers.*', lrScale: 3 },
      ],
    });
    expect(o.groups.map((g) => ({ ...g }))).toEqual([
      { name: 'embed', lrScale: 0.1, weightDecay: 0.1, params: ['model.embed_tokens.weight'] },
      { name: 'ff', lrScale: 2, weightDecay: 0.5, params: ['model.layers.0.input_layernorm.weight', 'model.layers.0.mlp.down_proj.weight'] },
      { name: 'groups[2]', lrScale: 3, weightDecay: 0.1, params: ['model.layers.0.self_attn.q_proj.weight'] },
      { name: 'no_decay', lrScale: 1, weightDecay: 0, params: ['lm_head.bias'] },
    ]);
    expect(groupPattern('model.layers.*.mlp.*').test('model.layers.12.mlp.up_proj.weight')).toBe(true);
    expect(groupPattern('model.layers.*.mlp.*').test('model.layers.12.mlpx')).toBe(false);
    expect(() => new AdamW(params(1), { groups: [{ match: 'transformer.*' }] })).toThrow(/groups\[0\]\.match: "transformer\.\*" matches no parameter \(names look like "model\.embed_tokens\.weight"/);
    expect(() => new AdamW(params(1), { groups: [{ match: '/(/' }] })).toThrow(/groups\[0\]\.match: \/\(\/ is not a valid regular expression/);
  });

  it('a group at lrScale s steps exactly as AdamW at lr * s; lrScale 0 freezes it; a group weightDecay reaches a norm', () => {
    const a = params(7);
    const half = params(7);
    const oa = new AdamW(a, { groups: [{ match: '*q_proj*', lrScale: 0.5 }, { match: '*down_proj*', lrScale: 0 }, { match: '*layernorm*', weightDecay: 0.3 }] });
    const oh = new AdamW(half);
    const before = values(a);
    for (let step = 1; step <= 3; step++) {
      setGrads(a, step);
      setGrads(half, step);
      oa.step(0.01);
      oh.step(0.005);
    }
    expect(a[2]![1].toArray()).toEqual(half[2]![1].toArray()); // q_proj at lr / 2: bit-identical
    expect(a[3]![1].toArray()).toEqual(before[3]); // lrScale 0: untouched
    expect(a[0]![1].toArray()).not.toEqual(half[0]![1].toArray()); // embeddings at the full lr
    // the layernorm decays with 0.3: compare with a run that differs only in that decay
    const c = params(7);
    const oc = new AdamW(c, { groups: [{ match: '*q_proj*', lrScale: 0.5 }, { match: '*down_proj*', lrScale: 0 }] });
    for (let step = 1; step <= 3; step++) {
      setGrads(c, step);
      oc.step(0.01);
    }
    const diff = (a[1]![1].toArray() as Float32Array).map((x, i) => x - (c[1]![1].toArray() as Float32Array)[i]!);
    expect(diff.some((d) => d !== 0)).toBe(true);
  });
});

/** torch.optim.SGD in float64. */
function sgdRef(p: Float64Array, buf: { b: Float64Array | null }, g0: Float64Array, hp: { lr: number; momentum: number; dampening: number; nesterov: boolean; wd: number; clip: number }): void {
  const g = g0.map((x, i) => x * hp.clip + hp.wd * p[i]!);
  let d: Float64Array = g;
  if (hp.momentum > 0) {
    buf.b = buf.b ? buf.b.map((b, i) => hp.momentum * b + (1 - hp.dampening) * g[i]!) : Float64Array.from(g);
    d = hp.nesterov ? g.map((x, i) => x + hp.momentum * buf.b![i]!) : buf.b;
  }
  for (let i = 0; i < p.length; i++) p[i]! -= hp.lr * d[i]!;
}

describe('the groups example of examples/README.md', () => {
  it('names real parameters of a LLaMA model', () => {
    const readme = fs.readFileSync(new URL('../../examples/README.md', import.meta.url), 'utf8');
    const json = /\| `optimizer\.groups` \| parameter groups by name, first match wins: `(\[.*?\])`/.exec(readme)![1]!;
    const model = new LlamaForCausalLM(preset('tiny').config, { seed: 1 });
    const o = new AdamW(model.namedParameters(), { groups: JSON.parse(json) });
    const g = Object.fromEntries(o.groups.map((x) => [x.name, x]));
    expect(g['groups[0]']!.params).toEqual(['model.embed_tokens.weight']);
    expect(g['groups[0]']!.lrScale).toBe(0.1);
    expect(g.ffn!.params.length).toBe(3 * preset('tiny').config.nLayers);
    expect(g.ffn!.weightDecay).toBe(0);
    model.dispose();
  });
});

describe('SGD', () => {
  for (const [label, o] of [
    ['momentum 0.9, weight decay, clipping', { momentum: 0.9, dampening: 0, nesterov: false, wd: 0.01 }],
    ['Nesterov', { momentum: 0.8, dampening: 0, nesterov: true, wd: 0 }],
    ['dampening, no momentum buffer reuse on step 1', { momentum: 0.5, dampening: 0.3, nesterov: false, wd: 0 }],
    ['plain (momentum 0)', { momentum: 0, dampening: 0, nesterov: false, wd: 0.05 }],
  ] as const) {
    it(`follows torch.optim.SGD: ${label}`, () => {
      const ps = params(11);
      const opt = createOptimizer(ps, { type: 'sgd', momentum: o.momentum, dampening: o.dampening, nesterov: o.nesterov, weightDecay: o.wd, maxGradNorm: 1 });
      expect(opt.type).toBe('sgd');
      const ref = ps.map(([, p]) => ({ p: Float64Array.from(numbers(p.toArray())), buf: { b: null as Float64Array | null } }));
      for (let step = 1; step <= 5; step++) {
        const grads = setGrads(ps, step, step % 2 ? 3 : 0.1);
        const norm = Math.sqrt(grads.reduce((a, g) => a + g.reduce((b, x) => b + x * x, 0), 0));
        const clip = Math.min(1, Math.fround(1 / (norm + 1e-6)));
        const lr = 0.05 * step;
        opt.step(lr);
        ps.forEach(([n, p], i) => {
          const decay = p.shape.length >= 2 && !/norm/.test(n);
          sgdRef(ref[i]!.p, ref[i]!.buf, grads[i]!, { lr, momentum: o.momentum, dampening: o.dampening, nesterov: o.nesterov, wd: decay ? o.wd : 0, clip });
          expectClose(numbers(p.toArray()), ref[i]!.p, 1e-6, 1e-5, `${n} step ${step}`);
        });
      }
      opt.dispose();
    });
  }
});

describe('optimizer state per group', () => {
  const groups: OptimizerOptions['groups'] = [{ match: 'model.embed_tokens.*', name: 'embed', lrScale: 0.1 }, { match: '*mlp*', lrScale: 2, weightDecay: 0 }];
  for (const type of ['adamw', 'sgd'] as const) {
    it(`${type}: through optimizer.safetensors and back, the next steps are bit-identical`, async () => {
      const a = params(21);
      const oa = createOptimizer(a, { type, groups, maxGradNorm: 1 });
      for (let s = 1; s <= 3; s++) {
        setGrads(a, s);
        oa.step(0.01);
      }
      const state = await throughFile(oa.exportState());
      expect(state.type).toBe(type);
      expect(state.groups!.map((g) => [g.name, g.lrScale, g.weightDecay, g.params.length])).toEqual(oa.groups.map((g) => [g.name, g.lrScale, g.weightDecay, g.params.length]));
      const b = params(99);
      a.forEach(([, p], i) => b[i]![1].write(p.toArray() as Float32Array));
      const ob = createOptimizer(b, { type, groups, maxGradNorm: 1 });
      ob.loadState(state);
      expect(ob.stepCount).toBe(3);
      for (let s = 4; s <= 6; s++) {
        setGrads(a, s);
        setGrads(b, s);
        oa.step(0.01);
        ob.step(0.01);
      }
      a.forEach(([n, p], i) => expect(b[i]![1].toArray(), n).toEqual(p.toArray()));
    });
  }

  it('refuses a state of another optimizer type or grouping, naming the parameter and both groups', async () => {
    const state = await throughFile(createOptimizer(params(1), { groups }).exportState());
    expect(() => new SGD(params(1), { groups }).loadState(state)).toThrow(/saved by adamw, this optimizer is sgd/);
    expect(() => new AdamW(params(1)).loadState(state)).toThrow(/model\.embed_tokens\.weight was in group "embed" \(lrScale 0\.1, weightDecay 0\.1\), now in "decay"/);
  });

  it('reads a state file written before groups (no type, no groups metadata) as AdamW state of any grouping', async () => {
    // The old writer's exact layout: m.<name>, v.<name>, __metadata__ { format, step } only.
    const ps = params(3);
    const entries = ps.map(([name, p], i) => ({ name, shape: [...p.shape], m: Float32Array.from(randomArray(p.size, 50 + i)), v: Float32Array.from(randomArray(p.size, 60 + i).map(Math.abs)) }));
    const header: Record<string, unknown> = { __metadata__: { format: 'patentgpt-adamw', step: '4' } };
    let off = 0;
    for (const e of entries)
      for (const [k, a] of [['m', e.m], ['v', e.v]] as const) {
        header[`${k}.${e.name}`] = { dtype: 'F32', shape: e.shape, data_offsets: [off, off + a.byteLength] };
        off += a.byteLength;
      }
    let json = JSON.stringify(header);
    json += ' '.repeat((8 - ((json.length + 8) % 8)) % 8);
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(json.length));
    const bytes = Buffer.concat([len, Buffer.from(json), ...entries.flatMap((e) => [Buffer.from(e.m.buffer), Buffer.from(e.v!.buffer)])]);
    const state = decodeOptimizerState(bytes, 'old.safetensors');
    expect(state.type).toBeUndefined();
    expect(state.groups).toBeUndefined();
    const o = new AdamW(ps, { groups });
    o.loadState(state);
    expect(o.stepCount).toBe(4);
    const back = o.exportState();
    back.entries.forEach((e, i) => {
      expect(e.m).toEqual(entries[i]!.m);
      expect(e.v).toEqual(entries[i]!.v);
    });
  });
});
