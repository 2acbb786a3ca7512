// A prep scan worker (see scan.ts): builds the run's ScanContext from workerData, then answers
// each batch with its outcomes and signatures; token arrays travel back without a copy.
import { parentPort, workerData } from 'node:worker_threads';
import { PatentGPTError } from '../errors.js';
import { ScanContext, type FromScanWorker, type ScanSetup, type ToScanWorker } from './scan.js';

const port = parentPort!;
const fail = (id: number, err: unknown): void =>
  port.postMessage({ kind: 'error', id, code: err instanceof PatentGPTError ? err.code : 'E_IO', message: err instanceof Error ? err.message : String(err) } satisfies FromScanWorker);

try {
  const ctx = new ScanContext(workerData as ScanSetup);
  port.on('message', (m: ToScanWorker) => {
    ctx.process(m.items).then(
      (result) => {
        const transfer = new Set<ArrayBuffer>([result.sig.buffer as ArrayBuffer]);
        for (const o of result.outcomes) if ('ids' in o) transfer.add(o.ids.buffer as ArrayBuffer);
        port.postMessage({ kind: 'result', id: m.id, result } satisfies FromScanWorker, [...transfer]);
      },
      (err: unknown) => fail(m.id, err),
    );
  });
  port.postMessage({ kind: 'ready', tokenizer: { name: ctx.tok.name, vocabSize: ctx.tok.vocabSize } } satisfies FromScanWorker);
} catch (err) {
  fail(-1, err);
}
