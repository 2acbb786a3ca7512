// Log-likelihoods with each context computed once, however many continuations it has (tree
// attention over the inference engine's paged KV cache).
//
// Requests are grouped by context. A context is prefilled once; its last row gives every
// continuation's first token. The continuations' other tokens form a trie (continuations that
// start alike share nodes): each node is one row, at its position after the context, attending
// through its own block table to the context and its ancestors. With blocks of one token, a
// node's table is the context's blocks, its ancestors' blocks and its own; nothing is copied.
// Nodes are computed depth by depth (a node's ancestors are in the cache before it runs).
//
// So a multi-answer question (15 candidate sets " A\n" ... " ABCD\n") costs its context once plus
// about 16 single-token rows, where packed rows cost 8 copies of the context.
import type { ModelRunner } from '../infer/runner.js';
import { BlockTable } from '../infer/blocks.js';
import { GEMV_MAX_ROWS } from '../tensor/index.js';
import type { LoglikResult, TokenizedRequest } from './loglik.js';

interface Node {
  token: number;
  depth: number;
  parent: Node | null;
  children: Map<number, Node>;
  block: number;
  /** Reads of this node's logits: request index and target token. */
  reads: { req: number; target: number }[];
}

interface Group {
  context: Int32Array;
  /** Reads of the context's last row. */
  rootReads: { req: number; target: number }[];
  nodes: Node[];
  ctxBlocks: number[];
}

/** Tokens of KV cache a group needs: its context plus one per trie node. */
function groupTokens(g: Group): number {
  return g.context.length + g.nodes.length;
}

function buildGroups(reqs: readonly TokenizedRequest[], which: readonly number[]): Group[] {
  const byContext = new Map<string, Group>();
  const roots = new Map<Group, Map<number, Node>>();
  for (const i of which) {
    const r = reqs[i]!;
    const key = r.context.join(',');
    let g = byContext.get(key);
    if (!g) byContext.set(key, (g = { context: r.context, rootReads: [], nodes: [], ctxBlocks: [] }));
    let children = roots.get(g) ?? roots.set(g, new Map()).get(g)!;
    g.rootReads.push({ req: i, target: r.continuation[0]! });
    let parent: Node | null = null;
    for (let j = 1; j < r.continuation.length; j++) {
      const tok = r.continuation[j - 1]!;
      let n = children.get(tok);
      if (!n) {
        n = { token: tok, depth: j, parent, children: new Map(), block: -1, reads: [] };
        children.set(tok, n);
        g.nodes.push(n);
      }
      n.reads.push({ req: i, target: r.continuation[j]! });
      parent = n;
      children = n.children;
    }
  }
  return [...byContext.values()];
}

/** log softmax(row)[target] for each read, in float64. */
function readLogprobs(row: Float32Array, reads: readonly { req: number; target: number }[], out: LoglikResult[]): void {
  let mx = -Infinity;
  for (let v = 0; v < row.length; v++) if (row[v]! > mx) mx = row[v]!;
  let z = 0;
  for (let v = 0; v < row.length; v++) z += Math.exp(row[v]! - mx);
  const lse = mx + Math.log(z);
  for (const r of reads) out[r.req]!.logprob += row[r.target]! - lse;
}

/**
 * Scores `which` of `reqs` (each must fit the model context: context + continuation <= maxSeqLen + 1)
 * into `out`, in batches of groups that fit the runner's blocks (of one token each); prefill steps
 * hold at most `maxStepTokens` tokens. Returns the indices it could not place (a group larger than
 * the whole cache), for the caller to score another way.
 */
export function scoreSharedContexts(
  runner: ModelRunner, reqs: readonly TokenizedRequest[], which: readonly number[], out: LoglikResult[], maxStepTokens: number,
  onGroupDone?: (requests: number) => void, afterStep?: () => void,
): { left: number[]; steps: number; tokens: number } {
  const groups = buildGroups(reqs, which);
  const left: number[] = [];
  let steps = 0;
  let tokens = 0;
  let i = 0;
  while (i < groups.length) {
    // A batch of groups that fits the cache.
    const batch: Group[] = [];
    let used = 0;
    while (i < groups.length && used + groupTokens(groups[i]!) <= runner.numBlocks) {
      used += groupTokens(groups[i]!);
      batch.push(groups[i++]!);
    }
    if (batch.length === 0) {
      const g = groups[i++]!;
      left.push(...g.rootReads.map((r) => r.req));
      continue;
    }
    let next = 0;
    for (const g of batch) {
      g.ctxBlocks = Array.from({ length: g.context.length }, () => next++);
      for (const n of g.nodes) n.block = next++;
    }
    // Prefill the contexts in steps of exactly maxStepTokens tokens (the last one fewer): the
    // contexts in order, cut at step boundaries, so a step holds at most one piece of a context
    // and only its last piece can be partial; a context's next piece reads the earlier ones from
    // the cache. Every step then has the same size: its activations are bounded by maxStepTokens,
    // and the allocator reuses the same blocks step after step instead of collecting blocks of
    // every size.
    const tables = batch.map((g, j) => {
      const table = new BlockTable(j + 1);
      table.blocks.push(...g.ctxBlocks);
      return table;
    });
    let gi = 0;
    let pos = 0;
    while (gi < batch.length) {
      const items: { g: Group; start: number; end: number; table: BlockTable }[] = [];
      let n = 0;
      while (gi < batch.length && n < maxStepTokens) {
        const g = batch[gi]!;
        const end = Math.min(g.context.length, pos + maxStepTokens - n);
        items.push({ g, start: pos, end, table: tables[gi]! });
        n += end - pos;
        if (end === g.context.length) [gi, pos] = [gi + 1, 0];
        else pos = end;
      }
      const logits = runner.step(items.map(({ g, start, end, table }) => ({ tokens: g.context, start, end, table })));
      steps++;
      tokens += n;
      items.forEach(({ g, end }, j) => {
        if (end === g.context.length) readLogprobs(logits[j]!, g.rootReads, out);
      });
      afterStep?.();
    }
    // The trie nodes, depth by depth, at most GEMV_MAX_ROWS a step: such a step takes the runner's
    // decode path, which allocates nothing (a level of any other size would leave the allocator
    // blocks of a size no later step asks for).
    const rowsPerStep = Math.min(maxStepTokens, GEMV_MAX_ROWS);
    const nodes = batch.flatMap((g) => g.nodes.map((node) => ({ g, node })));
    const maxDepth = nodes.reduce((m, x) => Math.max(m, x.node.depth), 0);
    for (let d = 1; d <= maxDepth; d++) {
      const level = nodes.filter((x) => x.node.depth === d);
      for (let s = 0; s < level.length; s += rowsPerStep) {
        const part = level.slice(s, s + rowsPerStep);
        const items = part.map(({ g, node }) => {
          const path: Node[] = [];
          for (let n: Node | null = node; n; n = n.parent) path.unshift(n);
          const table = new BlockTable(0);
          table.blocks.push(...g.ctxBlocks, ...path.map((n) => n.block));
          const seq = new Int32Array(g.context.length + path.length);
          seq.set(g.context, 0);
          path.forEach((n, j) => (seq[g.context.length + j] = n.token));
          return { tokens: seq, start: seq.length - 1, end: seq.length, table };
        });
        const logits = runner.step(items);
        steps++;
        tokens += items.length;
        part.forEach(({ node }, j) => readLogprobs(logits[j]!, node.reads, out));
        afterStep?.();
      }
    }
    onGroupDone?.(batch.reduce((s, g) => s + g.rootReads.length, 0));
  }
  return { left, steps, tokens };
}
