// Folding a PEFT adapter folder into its base model folder (PEFT's merge_and_unload, on disk):
// the result is a plain model folder, written as savePretrained writes one, that transformers
// loads and the engine serves on its fused decode path. The base folder's other files (tokenizer
// record, tokenizer_config.json with its chat template, special ids) come along unchanged.
import { copyFile, mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { PatentGPTError } from '../errors.js';
import { mergeLora } from '../nn/lora.js';
import { loadLora } from './peft.js';
import { holdsModel, INDEX_FILE, loadPretrained, savePretrained, SINGLE_FILE } from './pretrained.js';
import { exists, syncDir, type WriteDType } from './safetensors.js';

export interface MergeAdapterOptions {
  /** On-disk dtype of the merged weights (default f32). */
  dtype?: WriteDType;
}

const isWeightFile = (f: string): boolean => f === SINGLE_FILE || f === INDEX_FILE || /^model-\d{5}-of-\d{5}\.safetensors$/.test(f);

/**
 * Writes `out`: the model of `base` with the adapter of `adapter` merged into its weights
 * (W + B A * alpha / r for every adapted Linear). `out` must not hold a model already; it is
 * built beside itself and renamed into place, so a failure leaves nothing half written.
 */
export async function mergeAdapterFolder(base: string, adapter: string, out: string, opts: MergeAdapterOptions = {}): Promise<{ layers: number }> {
  if (resolve(out) === resolve(base)) throw new PatentGPTError('E_ARGUMENT', `merge: --out ${out} is the base folder; write the merged model to a new folder`);
  if (await holdsModel(out)) throw new PatentGPTError('E_ARGUMENT', `merge: --out ${out} already holds a model; choose a new folder (or remove it)`);
  if ((await exists(out)) && (!(await stat(out)).isDirectory() || (await readdir(out)).length > 0))
    throw new PatentGPTError('E_ARGUMENT', `merge: --out ${out} exists and is not an empty folder; choose a new folder`);
  if (!(await exists(base))) throw new PatentGPTError('E_IO', `merge: --base ${base}: no such model folder`);
  const model = await loadPretrained(base);
  const tmp = `${resolve(out)}.tmp`;
  try {
    const layers = (await loadLora(model, adapter)).length / 2;
    mergeLora(model);
    await rm(tmp, { recursive: true, force: true });
    await mkdir(tmp, { recursive: true });
    // the base's files first (tokenizer, its ids and templates), then our weights and configs over them
    for (const f of await readdir(base)) {
      if (isWeightFile(f) || !(await stat(join(base, f))).isFile()) continue;
      await copyFile(join(base, f), join(tmp, f));
    }
    await savePretrained(model, tmp, opts.dtype ? { dtype: opts.dtype } : {});
    await rm(out, { recursive: true, force: true }); // an empty folder in the way (checked above)
    await rename(tmp, out);
    await syncDir(join(resolve(out), '..'));
    return { layers };
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    throw err;
  } finally {
    model.dispose();
  }
}
