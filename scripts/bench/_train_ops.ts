// Where a training step's time goes, op by op: each op family of a LLaMA step timed alone at the
// step's shapes (forward, then backward from a given output gradient), ours beside the torch ops
// transformers' eager LlamaForCausalLM runs, and multiplied by the times a step runs it.
//   npx tsx scripts/bench/_train_ops.ts [--model llama-10m] [--seq 1024] [--batch 2] [--threads 2] [--reps 5]
import { execFileSync } from 'node:child_process';
import { preset } from '../../src/models/index.js';
import {
  Tensor, attention, linear, linearCrossEntropy, rmsnorm, rope, setNumThreads, swiglu, scope,
} from '../../src/tensor/index.js';
import { findPython } from './_peers.js';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : fallback;
}
const modelName = arg('model', 'llama-10m');
const T = Number(arg('seq', '1024'));
const B = Number(arg('batch', '2'));
const threads = Number(arg('threads', '2'));
const reps = Number(arg('reps', '5'));
const cfg = preset(modelName).config;
const N = B * T, C = cfg.dim, H = cfg.nHeads, Hkv = cfg.nKvHeads, D = C / H, F = cfg.ffnDim, V = cfg.vocabSize, L = cfg.nLayers;
setNumThreads(threads);

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** Median forward and backward seconds of one op. */
function time(make: () => { inputs: Tensor[]; run: (xs: Tensor[]) => Tensor }): [number, number] {
  const { inputs, run } = make();
  const fw: number[] = [];
  const bw: number[] = [];
  for (let r = 0; r < reps + 1; r++) {
    const t0 = performance.now();
    const out = scope(() => run(inputs));
    const t1 = performance.now();
    const g = out.size === 1 ? undefined : Tensor.full(out.shape, 1e-3);
    const t2 = performance.now();
    out.backward(g);
    const t3 = performance.now();
    out.dispose();
    g?.dispose();
    inputs.forEach((x) => {
      x.grad?.dispose();
      x.grad = null;
    });
    if (r > 0) {
      fw.push((t1 - t0) / 1000);
      bw.push((t3 - t2) / 1000);
    }
  }
  inputs.forEach((x) => x.dispose());
  return [median(fw), median(bw)];
}

const rnd = (shape: number[], seed: number, grad = true) => Tensor.randn(shape, { seed, std: 0.5, requiresGrad: grad });
const cu = Tensor.from(Int32Array.from({ length: B + 1 }, (_, i) => i * T), [B + 1], { dtype: 'i32' });
const pos = Tensor.from(Int32Array.from({ length: N }, (_, i) => i % T), [N], { dtype: 'i32' });
const tgt = Tensor.from(Int32Array.from({ length: N }, (_, i) => (i * 31) % V), [N], { dtype: 'i32' });

const ours: Record<string, { per: number; fb: [number, number] }> = {
  'linear q/o (C->C)': { per: 2 * L, fb: time(() => ({ inputs: [rnd([N, C], 1), rnd([C, C], 2)], run: ([x, w]) => linear(x!, w!) })) },
  'linear k/v (C->Hkv*D)': { per: 2 * L, fb: time(() => ({ inputs: [rnd([N, C], 1), rnd([Hkv * D, C], 2)], run: ([x, w]) => linear(x!, w!) })) },
  'linear gate/up (C->F)': { per: 2 * L, fb: time(() => ({ inputs: [rnd([N, C], 1), rnd([F, C], 2)], run: ([x, w]) => linear(x!, w!) })) },
  'linear down (F->C)': { per: L, fb: time(() => ({ inputs: [rnd([N, F], 1), rnd([C, F], 2)], run: ([x, w]) => linear(x!, w!) })) },
  attention: { per: L, fb: time(() => ({ inputs: [rnd([N, H, D], 1), rnd([N, Hkv, D], 2), rnd([N, Hkv, D], 3)], run: ([q, k, v]) => attention(q!, k!, v!, { cuSeqlens: cu, causal: true }) })) },
  'rope (q and k)': { per: 2 * L, fb: time(() => ({ inputs: [rnd([N, H, D], 1)], run: ([q]) => rope(q!, pos, { theta: cfg.ropeTheta, posScale: 1 }) })) },
  rmsnorm: { per: 2 * L + 1, fb: time(() => ({ inputs: [rnd([N, C], 1), rnd([C], 2)], run: ([x, w]) => rmsnorm(x!, w!, 1e-5) })) },
  swiglu: { per: L, fb: time(() => ({ inputs: [rnd([N, F], 1), rnd([N, F], 2)], run: ([g, u]) => swiglu(g!, u!) })) },
  'lm head + cross-entropy': { per: 1, fb: time(() => ({ inputs: [rnd([N, C], 1), rnd([V, C], 2)], run: ([h, w]) => linearCrossEntropy(h!, w!, tgt, { ignoreIndex: -100 }) })) },
};

const PY = String.raw`
import json, sys, time, torch, torch.nn.functional as Fn
torch.set_num_threads(int(sys.argv[1]))
B, T, C, H, Hkv, F, V, reps = [int(x) for x in sys.argv[2:10]]
D = C // H; N = B * T
def tm(inputs, run):
    fw, bw = [], []
    for r in range(reps + 1):
        for x in inputs: x.grad = None
        t0 = time.perf_counter(); out = run(*inputs); t1 = time.perf_counter()
        g = None if out.numel() == 1 else torch.full_like(out, 1e-3)
        t2 = time.perf_counter(); out.backward(g); t3 = time.perf_counter()
        if r > 0: fw.append(t1 - t0); bw.append(t3 - t2)
    return [sorted(fw)[len(fw)//2], sorted(bw)[len(bw)//2]]
r = lambda *s: (torch.randn(*s) * 0.5).requires_grad_()
mask = torch.full((T, T), float('-inf')).triu(1)
def attn(q, k, v):  # transformers eager_attention_forward
    rep = H // Hkv
    k = k.repeat_interleave(rep, 1); v = v.repeat_interleave(rep, 1)
    w = torch.matmul(q, k.transpose(2, 3)) * D ** -0.5 + mask
    w = Fn.softmax(w, dim=-1, dtype=torch.float32)
    return torch.matmul(w, v).transpose(1, 2).contiguous()
inv = 1.0 / (10000 ** (torch.arange(0, D, 2).float() / D))
fr = torch.outer(torch.arange(T).float(), inv); emb = torch.cat([fr, fr], -1); cos, sin = emb.cos(), emb.sin()
def rot(x): return torch.cat([-x[..., D//2:], x[..., :D//2]], -1)
def rope(q): return q * cos + rot(q) * sin
def rms(x, w):
    v = x.pow(2).mean(-1, keepdim=True); return w * (x * torch.rsqrt(v + 1e-5))
tgt = torch.randint(0, V, (N,))
out = {
 'linear q/o (C->C)': tm([r(N, C), r(C, C)], Fn.linear),
 'linear k/v (C->Hkv*D)': tm([r(N, C), r(Hkv * D, C)], Fn.linear),
 'linear gate/up (C->F)': tm([r(N, C), r(F, C)], Fn.linear),
 'linear down (F->C)': tm([r(N, F), r(C, F)], Fn.linear),
 'attention': tm([r(B, H, T, D), r(B, Hkv, T, D), r(B, Hkv, T, D)], attn),
 'rope (q and k)': tm([r(B, H, T, D)], rope),
 'rmsnorm': tm([r(N, C), r(C)], rms),
 'swiglu': tm([r(N, F), r(N, F)], lambda g, u: Fn.silu(g) * u),
 'lm head + cross-entropy': tm([r(N, C), r(V, C)], lambda h, w: Fn.cross_entropy(Fn.linear(h, w), tgt)),
}
print(json.dumps(out))
`;
const py = findPython(['torch']);
let theirs: Record<string, [number, number]> | null = null;
if (py.python) {
  const out = execFileSync(py.python, ['-c', PY, String(threads), String(B), String(T), String(C), String(H), String(Hkv), String(F), String(V), String(reps)], {
    encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: String(threads) },
  });
  theirs = JSON.parse(out.trim().split('\n').at(-1)!) as Record<string, [number, number]>;
}

console.log(`${modelName} B=${B} T=${T}, ${threads} threads: ms per step (op time x times per step), forward / backward`);
console.log(`${'op'.padEnd(26)} ${'x'.padStart(3)} ${'ours fwd'.padStart(9)} ${'ours bwd'.padStart(9)} ${'torch fwd'.padStart(10)} ${'torch bwd'.padStart(10)} ${'ours/torch'.padStart(10)}`);
let so = 0, st = 0;
for (const [name, { per, fb }] of Object.entries(ours)) {
  const t = theirs?.[name];
  const o = (fb[0] + fb[1]) * per * 1000;
  const th = t ? (t[0] + t[1]) * per * 1000 : NaN;
  so += o;
  st += th;
  const f = (x: number | undefined, w: number) => (x === undefined || !Number.isFinite(x) ? 'n/a' : x.toFixed(1)).padStart(w);
  console.log(`${name.padEnd(26)} ${String(per).padStart(3)} ${f(fb[0] * per * 1000, 9)} ${f(fb[1] * per * 1000, 9)} ${f(t ? t[0] * per * 1000 : undefined, 10)} ${f(t ? t[1] * per * 1000 : undefined, 10)} ${f(o / th, 10).replace(/(\d)$/, '$1')}`);
}
console.log(`${'sum'.padEnd(26)} ${''.padStart(3)} ${(so).toFixed(1).padStart(19)} ${st.toFixed(1).padStart(21)}`);
