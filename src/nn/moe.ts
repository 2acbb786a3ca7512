// The sparse mixture-of-experts feed-forward of Mixtral (MixtralSparseMoeBlock) on the fused
// dropless ops (src/tensor/ops/moe.ts: router, dispatch, permute, grouped GEMM, combine).
//
//   router:  logits = x Wg^T (N, E); probs = softmax(logits); each token's top-k experts by
//            probability, their probabilities renormalised to sum to 1 (as Mixtral does).
//   experts: E SwiGLU MLPs, w2(silu(w1 x) * w3 x) (Mixtral's names); token n's output is
//            sum over its k experts of weight * expert(x_n), plus every shared expert's output.
//   dropless: every token reaches all of its k experts, however unbalanced the routing.
//
// moeRouter makes the top-k choice from the logits (indices carry no gradient; softmax's order,
// ties to the lower expert, NaN first as torch.topk); the gradient reaches the router through
// the renormalised weights, and through the load-balancing loss and the z-loss, which go to the
// forward context. Only the chosen experts' weights are read, each from its own storage (nothing
// is stacked). Experts with a LoRA adapter run as modules on their row groups, between the same
// dispatch and combine. A serving model's decode steps take the fused path instead
// (moeDecodeWeights: decodeLayer's MoE feed-forward, src/tensor/ops/decode.ts).
// Shapes: N tokens, C dim, F expert hidden size, E experts, K experts per token.
import { PatentGPTError } from '../errors.js';
import {
  Rng, Tensor, add, isGradEnabled, logSoftmax, mean, moeCombine, moeDispatch, moeGroupedMatmul, moePermute, moeRouter, mul, scale,
  scatterAdd, scope, softmax, sub, sum, swiglu, type Device, type MoePlan,
} from '../tensor/index.js';
import type { ForwardContext } from './context.js';
import { dropoutRowsFor, inDropoutRows, tokenSeeds, withDropoutRowSubset } from './dropout-rows.js';
import { Linear, ModuleList, zeroInit, type FeedForward, type MoeDecodeWeights, type ParamInit } from './layers.js';
import { Module } from './module.js';

/** One expert: w2(silu(w1 x) * w3 x), MixtralBlockSparseTop2MLP (w1 gate, w3 up, w2 down). */
export class ExpertMLP extends Module {
  readonly w1: Linear;
  readonly w2: Linear;
  readonly w3: Linear;
  constructor(readonly dim: number, readonly hiddenDim: number, init: ParamInit = zeroInit) {
    super();
    this.w1 = this.registerModule('w1', new Linear(dim, hiddenDim, init));
    this.w2 = this.registerModule('w2', new Linear(hiddenDim, dim, init));
    this.w3 = this.registerModule('w3', new Linear(dim, hiddenDim, init));
  }
  /** Whether its three weights alone are this expert (no unmerged adapter): what the fused paths read. */
  get fusable(): boolean {
    return this.w1.fusable && this.w2.fusable && this.w3.fusable;
  }
  forward(x: Tensor): Tensor {
    return this.w2.forward(swiglu(this.w1.forward(x), this.w3.forward(x)));
  }
}

export interface SparseMoEOptions {
  dim: number;
  /** Hidden size of each expert (intermediate_size). */
  hiddenDim: number;
  numExperts: number;
  /** Experts per token. */
  topK: number;
  /** Experts every token goes through, unweighted (default 0). */
  numSharedExperts?: number;
  /** Weight of the load-balancing loss this layer reports (0: reported as a metric only). */
  auxLossWeight?: number;
  /** Weight of the router z-loss this layer reports (0: reported as a metric only). */
  zLossWeight?: number;
  /** In training, the input is scaled by uniform(1 - j, 1 + j) noise (Mixtral's router_jitter_noise). */
  jitter?: number;
  /** Seed of the jitter noise. */
  seed?: number;
}

/** What one forward routed (for tests and logs). */
export interface Routing {
  /** (N * K) expert of token n's k-th choice, by descending probability. */
  experts: Int32Array;
  /** Tokens routed to each expert (E). */
  tokensPerExpert: Int32Array;
  /** (N * E) the router logits (a host copy; transformers' router_logits). */
  logits: Float32Array;
}

/**
 * Mixtral's sparse MoE block as a FeedForward: `gate.weight` (E, C) and `experts.{e}.w1/w2/w3.weight`
 * below the block's name ('block_sparse_moe' in MixtralDecoderLayer); shared experts, when any,
 * are `shared_experts.{s}.w1/w2/w3.weight`.
 *
 * Reports to the context: `load_balance_loss` (auxLossWeight * the Switch/Mixtral loss, as an
 * auxiliary loss, when the weight is > 0), `router_z_loss` likewise, and the metrics
 * `load_balance` and `router_z` (unweighted values), `expert_tokens.{e}` and
 * `expert_load_max_over_mean`.
 */
export class SparseMoE extends Module implements FeedForward {
  readonly gate: Linear;
  readonly experts: ModuleList<ExpertMLP>;
  readonly shared_experts: ModuleList<ExpertMLP> | null;
  readonly numExperts: number;
  readonly topK: number;
  readonly auxLossWeight: number;
  readonly zLossWeight: number;
  readonly jitter: number;
  /**
   * Jitter applies only while training: by default (null) while gradients are recorded, as the
   * trainer's steps do and its evaluation (under noGrad) does not, the rule LoRA's dropout follows;
   * true or false overrides it (as module.training in torch).
   */
  training: boolean | null = null;
  /** The routing of the latest forward. */
  lastRouting: Routing | null = null;
  readonly #seed: bigint;
  #jitterDraws = 0;

  constructor(opts: SparseMoEOptions, init: ParamInit = zeroInit) {
    super();
    const { dim, hiddenDim, numExperts: E, topK: K } = opts;
    const shared = opts.numSharedExperts ?? 0;
    const bad = (field: string, why: string): never => {
      throw new PatentGPTError('E_CONFIG', `SparseMoE: field "${field}" ${why}`);
    };
    if (!Number.isSafeInteger(E) || E < 1) bad('numExperts', `must be a positive integer, got ${E}`);
    if (!Number.isSafeInteger(K) || K < 1 || K > E) bad('topK', `must be an integer in [1, numExperts = ${E}], got ${K}`);
    if (!Number.isSafeInteger(shared) || shared < 0) bad('numSharedExperts', `must be an integer >= 0, got ${shared}`);
    const jitter = opts.jitter ?? 0;
    if (!(jitter >= 0 && jitter < 1)) bad('jitter', `must be in [0, 1), got ${jitter}`);
    for (const f of ['auxLossWeight', 'zLossWeight'] as const)
      if (!(Number.isFinite(opts[f] ?? 0) && (opts[f] ?? 0) >= 0)) bad(f, `must be a finite number >= 0, got ${opts[f]}`);
    this.numExperts = E;
    this.topK = K;
    this.auxLossWeight = opts.auxLossWeight ?? 0;
    this.zLossWeight = opts.zLossWeight ?? 0;
    this.jitter = jitter;
    this.#seed = BigInt.asUintN(32, BigInt(opts.seed ?? 0));
    this.gate = this.registerModule('gate', new Linear(dim, E, init));
    this.experts = this.registerModule('experts', new ModuleList(Array.from({ length: E }, () => new ExpertMLP(dim, hiddenDim, init))));
    this.shared_experts = shared > 0
      ? this.registerModule('shared_experts', new ModuleList(Array.from({ length: shared }, () => new ExpertMLP(dim, hiddenDim, init))))
      : null;
  }

  /**
   * The router and the experts' own weights for the fused MoE decode path (decodeLayer), or null
   * when a Linear carries an unmerged adapter (LoRA) or the jitter is forced on (training: true):
   * the module path then runs. The tensors are the parameters themselves (never copies), so an
   * optimizer's in-place update reaches the prepared decode calls.
   */
  moeDecodeWeights(): MoeDecodeWeights | null {
    if (this.training === true && this.jitter > 0) return null;
    const all = [...this.experts.items, ...(this.shared_experts?.items ?? [])];
    if (!this.gate.fusable || !all.every((e) => e.fusable)) return null;
    const weights = (e: ExpertMLP): { w1: Tensor; w3: Tensor; w2: Tensor } => ({ w1: e.w1.weight, w3: e.w3.weight, w2: e.w2.weight });
    return {
      router: this.gate.weight, topK: this.topK, experts: this.experts.items.map(weights),
      shared: (this.shared_experts?.items ?? []).map(weights),
    };
  }

  /** Router logits (N, E) of x (N, C): what transformers returns as router_logits. */
  routerLogits(x: Tensor): Tensor {
    return this.gate.forward(x);
  }

  /** x (N, C) -> (N, C). */
  forward(x: Tensor, ctx: ForwardContext): Tensor {
    if (x.shape.length !== 2) throw new PatentGPTError('E_SHAPE', `SparseMoE: x must be (N, C), got ${x.describe()}`);
    const N = x.shape[0]!, E = this.numExperts, K = this.topK;
    if ((this.training ?? isGradEnabled()) && this.jitter > 0) x = mul(x, this.#noise(x.shape, x.device));
    const logits = this.gate.forward(x); // (N, E)
    const probs = softmax(logits); // (N, E): the load-balancing loss's P
    const { indices, weights } = moeRouter(logits, K); // (N, K) each
    const plan = moeDispatch(indices, E);
    let out: Tensor;
    try {
      const tokensPerExpert = Int32Array.from(plan.tokensPerExpert);
      this.lastRouting = { experts: indices.toArray() as Int32Array, tokensPerExpert, logits: logits.toArray() as Float32Array };
      // scope() frees the intermediates; the tape keeps what backward reads
      out = scope(() => {
        const xs = moePermute(x, plan); // (N*K, C) in expert order
        return moeCombine(this.#experts(xs, plan), weights, plan);
      });
      for (const s of this.shared_experts?.items ?? []) out = add(out, s.forward(x));
      this.#report(ctx, logits, probs, tokensPerExpert, N);
    } finally {
      plan.dispose();
      indices.dispose();
      weights.dispose();
    }
    return out;
  }

  /**
   * Every expert on its row group of xs (N*K, C), in expert order -> (N*K, C). The grouped GEMMs
   * read each expert's own weight storage (and write its own gradient); only the experts that
   * received rows are multiplied.
   */
  #experts(xs: Tensor, plan: MoePlan): Tensor {
    const items = this.experts.items;
    if (items.every((e) => e.fusable)) {
      const h = swiglu(moeGroupedMatmul(xs, items.map((e) => e.w1.weight), plan), moeGroupedMatmul(xs, items.map((e) => e.w3.weight), plan));
      return moeGroupedMatmul(h, items.map((e) => e.w2.weight), plan);
    }
    // An expert Linear with an adapter (LoRA) is more than its weight: each expert runs as a
    // module on its row group, the groups written into place (0 + y, exact).
    const M = xs.shape[0]!, C = xs.shape[1]!;
    let y = Tensor.zeros([M, C], { device: xs.device });
    let r0 = 0;
    // Row-keyed dropout (a training step's adapters, src/nn/dropout-rows.ts): each group's rows
    // are named as the tokens they came from (slot = token * K + choice).
    const slots = inDropoutRows() ? (plan.order.toArray() as Int32Array) : null;
    items.forEach((expert, e) => {
      const rows = plan.tokensPerExpert[e]!;
      if (rows === 0) {
        // No token reached it: it still gets a (zero) gradient, as the grouped GEMM's slices do.
        if (M > 0 && isGradEnabled()) y = add(y, scale(expert.forward(xs.narrow(0, 1)), 0));
        return;
      }
      const index = new Int32Array(rows * C);
      for (let i = 0; i < rows; i++) index.fill(r0 + i, i * C, (i + 1) * C);
      const run = (): Tensor => expert.forward(xs.narrow(r0, rows));
      const out = slots ? withDropoutRowSubset(slots.subarray(r0, r0 + rows).map((q) => Math.floor(q / plan.k)), run, plan.tokens) : run();
      y = scatterAdd(y, 0, Tensor.from(index, [rows, C], { dtype: 'i32', device: xs.device }), out);
      r0 += rows;
    });
    return y;
  }

  /**
   * Jittered forwards so far: the jitter's whole state (forward d draws its noise from a
   * generator seeded by (seed, d)), for a trainer that checkpoints it to resume with the same noise.
   */
  get jitterDraws(): number {
    return this.#jitterDraws;
  }
  set jitterDraws(v: number) {
    if (!Number.isSafeInteger(v) || v < 0) throw new PatentGPTError('E_ARGUMENT', `SparseMoE: jitterDraws must be an integer >= 0, got ${v}`);
    this.#jitterDraws = v;
  }

  #noise(shape: readonly number[], device: Device): Tensor {
    const rows = dropoutRowsFor(shape[0]!);
    if (rows) {
      // A training step's tokens are keyed (src/nn/dropout-rows.ts): each token's noise follows
      // from its global place and the step, the same on any rank; jitterDraws stays.
      const C = shape[1]!, u = new Float32Array(shape[0]! * C);
      tokenSeeds(this.#seed, rows).forEach((s, t) => {
        const rng = new Rng(s);
        for (let c = 0; c < C; c++) u[t * C + c] = 1 - this.jitter + 2 * this.jitter * (rng.nextUint32() / 2 ** 32);
      });
      return Tensor.from(u, shape, { device });
    }
    const rng = new Rng((this.#seed << 32n) | BigInt.asUintN(32, BigInt(this.#jitterDraws++)));
    const n = shape.reduce((a, d) => a * d, 1);
    const u = new Float32Array(n);
    for (let i = 0; i < n; i++) u[i] = 1 - this.jitter + 2 * this.jitter * (rng.nextUint32() / 2 ** 32);
    return Tensor.from(u, shape, { device }); // drawn on the host (the same stream on every device)
  }

  #report(ctx: ForwardContext, logits: Tensor, probs: Tensor, tokensPerExpert: Int32Array, N: number): void {
    const E = this.numExperts;
    const lb = loadBalancingLoss(probs, tokensPerExpert, N);
    ctx.addMetric('load_balance', lb.item());
    if (this.auxLossWeight > 0) ctx.addAuxLoss('load_balance_loss', scale(lb, this.auxLossWeight));
    const z = routerZLoss(logits);
    ctx.addMetric('router_z', z.item());
    if (this.zLossWeight > 0) ctx.addAuxLoss('router_z_loss', scale(z, this.zLossWeight));
    let max = 0;
    for (let e = 0; e < E; e++) {
      ctx.addMetric(`expert_tokens.${e}`, tokensPerExpert[e]!);
      max = Math.max(max, tokensPerExpert[e]!);
    }
    ctx.addMetric('expert_load_max_over_mean', N === 0 ? 0 : max / (N * this.topK / E));
  }
}

/**
 * The Switch/Mixtral load-balancing loss of one layer: E * sum_e f_e * P_e, f_e the share of
 * tokens routed to expert e (counting each of a token's k choices, so it sums to k) and P_e the
 * mean router probability of e. transformers' load_balancing_loss_func on this layer's logits.
 * Only P carries a gradient.
 */
export function loadBalancingLoss(probs: Tensor, tokensPerExpert: Int32Array, N: number): Tensor {
  const E = tokensPerExpert.length;
  const f = Float32Array.from(tokensPerExpert, (c) => c / Math.max(1, N));
  return scale(sum(mul(Tensor.from(f, [E], { device: probs.device }), mean(probs, 0))), E);
}

/** ST-MoE's router z-loss: the mean over tokens of logsumexp(logits)^2. */
export function routerZLoss(logits: Tensor): Tensor {
  // x - logSoftmax(x) is logsumexp(x) in every column: the mean over columns is it, stably
  const lse = mean(sub(logits, logSoftmax(logits)), 1); // (N)
  return mean(mul(lse, lse));
}
