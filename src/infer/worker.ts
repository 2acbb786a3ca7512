// The worker-thread side of ThreadedEngine: builds the model and an Engine inside this worker
// and serves generate / cancel / stats / close messages from the parent thread. The model's
// steps then run on this thread, and the parent's event loop never waits for them.
import { parentPort, workerData } from 'node:worker_threads';
import { PatentGPTError } from '../errors.js';
import { LlamaForCausalLM, loadLora, loadPretrained, validateConfig, type ModelConfig } from '../models/index.js';
import { ByteTokenizer, SentencePieceTokenizer } from '../tokenizer/index.js';
import { loadFolderTokenizer } from './folder-tokenizer.js';
import { isQuantizedFolder, loadQuantized } from './quantized.js';
import { Engine, type EngineOptions, type EngineTokenizer, type GenerateOptions } from './engine.js';

export type WorkerTokenizer = { kind: 'sentencepiece'; bytes: Uint8Array } | { kind: 'byte' } | null;

export interface WorkerInit {
  model: { dir: string } | { config: ModelConfig; params: [string, Float32Array][] };
  engine: Omit<EngineOptions, 'tokenizer'>;
  tokenizer: WorkerTokenizer;
}

export type ToWorker =
  | { kind: 'generate'; id: number; prompt: string | number[]; options: Omit<GenerateOptions, 'signal'> }
  | { kind: 'cancel'; id: number }
  | { kind: 'stats'; id: number }
  | { kind: 'close' };

export type FromWorker =
  | { kind: 'ready'; maxModelLen: number }
  | { kind: 'delta'; id: number; delta: import('./engine.js').GenerationDelta }
  | { kind: 'error'; id: number; code: string; message: string }
  | { kind: 'stats'; id: number; stats: import('./engine.js').EngineStats }
  | { kind: 'closed' };

async function main(): Promise<void> {
  const port = parentPort;
  if (!port) throw new PatentGPTError('E_INTERNAL', 'infer/worker.ts runs only as a worker thread');
  const init = workerData as WorkerInit;
  const send = (m: FromWorker): void => port.postMessage(m);
  let model: LlamaForCausalLM;
  const { adapter, ...engineOptions } = init.engine; // the adapter is attached here, as Engine.fromPretrained does
  try {
    if ('dir' in init.model) {
      model = isQuantizedFolder(init.model.dir) ? await loadQuantized(init.model.dir) : await loadPretrained(init.model.dir);
      if (adapter !== undefined) await loadLora(model, adapter);
    } else {
      model = new LlamaForCausalLM(validateConfig(init.model.config), { init: 'zeros' });
      const params = new Map(model.namedParameters());
      for (const [name, data] of init.model.params) {
        const p = params.get(name);
        if (!p || p.size !== data.length) throw new PatentGPTError('E_CHECKPOINT', `ThreadedEngine: parameter ${name} does not fit the model`);
        p.write(data);
      }
    }
  } catch (err) {
    send({ kind: 'error', id: -1, code: err instanceof PatentGPTError ? err.code : 'E_INTERNAL', message: (err as Error).message });
    return;
  }
  const tok: EngineTokenizer | undefined = init.tokenizer === null ? ('dir' in init.model ? loadFolderTokenizer(init.model.dir) ?? undefined : undefined)
    : init.tokenizer.kind === 'byte' ? new ByteTokenizer() : SentencePieceTokenizer.load(init.tokenizer.bytes);
  const engine = new Engine(model, { ...engineOptions, tokenizer: tok });
  const live = new Map<number, AsyncIterableIterator<unknown>>();
  port.on('message', (m: ToWorker) => {
    switch (m.kind) {
      case 'generate': {
        let it: ReturnType<Engine['generate']>;
        try {
          it = engine.generate(m.prompt, m.options);
        } catch (err) {
          send({ kind: 'error', id: m.id, code: err instanceof PatentGPTError ? err.code : 'E_ARGUMENT', message: (err as Error).message });
          return;
        }
        live.set(m.id, it);
        void (async () => {
          try {
            for await (const delta of it) send({ kind: 'delta', id: m.id, delta });
          } catch (err) {
            send({ kind: 'error', id: m.id, code: err instanceof PatentGPTError ? err.code : 'E_INTERNAL', message: (err as Error).message });
          } finally {
            live.delete(m.id);
          }
        })();
        return;
      }
      case 'cancel':
        void live.get(m.id)?.return?.();
        live.delete(m.id);
        return;
      case 'stats':
        send({ kind: 'stats', id: m.id, stats: engine.stats() });
        return;
      case 'close':
        engine.close();
        model.dispose();
        send({ kind: 'closed' });
        port.close();
    }
  });
  send({ kind: 'ready', maxModelLen: engine.maxModelLen });
}

void main();
