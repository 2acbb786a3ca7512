// A worker thread of TokenizerPool (pool.ts): rebuilds the tokenizer from its tokenizer.model
// bytes, then encodes each chunk of texts it is sent into one Int32Array (with offsets), transferred back.
import { parentPort, workerData } from 'node:worker_threads';
import { PatentGPTError } from '../errors.js';
import { IdBuffer } from './bpe.js';
import { SentencePieceTokenizer } from './sentencepiece.js';

export interface PoolRequest {
  start: number;
  texts: string[];
  bos: boolean;
  eos: boolean;
}
export type PoolReply = { start: number; ids: Int32Array; offsets: Int32Array } | { error: string; code: string };

const port = parentPort;
if (!port) throw new PatentGPTError('E_INTERNAL', 'tokenizer/pool-worker.ts runs only as a worker thread');
const { model, name } = workerData as { model: Uint8Array; name: string };
const tokenizer = new SentencePieceTokenizer(SentencePieceTokenizer.load(model).model, name);
port.on('message', (req: PoolRequest) => {
  try {
    const ids = new IdBuffer(1024);
    const offsets = new Int32Array(req.texts.length + 1);
    req.texts.forEach((t, i) => {
      ids.pushAll(tokenizer.encode(t, req));
      offsets[i + 1] = ids.length;
    });
    const flat = ids.toArray();
    const reply: PoolReply = { start: req.start, ids: flat, offsets };
    port.postMessage(reply, [flat.buffer as ArrayBuffer, offsets.buffer as ArrayBuffer]);
  } catch (e) {
    port.postMessage({ error: (e as Error).message, code: (e as PatentGPTError).code ?? 'E_INTERNAL' } satisfies PoolReply);
  }
});
port.postMessage('ready');
