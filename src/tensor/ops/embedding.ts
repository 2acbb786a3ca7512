// Token embedding lookup: rows of a (V, C) table gathered at i32 ids; differentiable in the table
// (gatherRows in rows.ts is the same kernel for any row shape).
import { addon } from '../../native/loader.js';
import { record } from '../autograd.js';
import { expectKernel, expectDType, expectRank, expectSameDevice } from '../check.js';
import { Tensor } from '../tensor.js';

/**
 * table[ids]: ids (i32, any shape) index the rows of table (V, C); the result is
 * (...ids.shape, C). Throws naming the first id outside [0, V). Gradients flow to the table
 * (scatter-add, deterministic for repeated ids), not to the ids.
 */
export function embedding(ids: Tensor, table: Tensor): Tensor {
  expectDType('embedding', 'ids', ids, 'i32');
  expectDType('embedding', 'table', table, 'f32');
  expectRank('embedding', 'table', table, 2);
  expectSameDevice('embedding', { ids, table });
  expectKernel('embedding', ['embeddingForward', 'embeddingBackward'], ids, table);
  const [V, C] = table.shape as [number, number];
  const out = Tensor.empty([...ids.shape, C], { like: table });
  try {
    addon().embeddingForward(out.storage, out.offset, ids.storage, ids.offset, table.storage, table.offset, ids.size, V, C);
  } catch (err) {
    out.dispose();
    throw err;
  }
  return record('embedding', out, [ids, table], [ids], (g) => {
    const dtable = Tensor.zeros(table.shape, { like: table });
    addon().embeddingBackward(dtable.storage, dtable.offset, g.storage, g.offset, ids.storage, ids.offset, ids.size, V, C);
    return [null, dtable];
  });
}
