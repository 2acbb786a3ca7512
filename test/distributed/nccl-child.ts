// A rank of the NCCL tests (nccl.test.ts), one process each, so PATENTGPT_NCCL and the launcher's
// variables are this process's own. argv[2]: 'rendezvous' (rank 0 hands 128 random bytes to the
// others over MASTER_ADDR:MASTER_PORT; each prints the hex it holds) or 'init' (joins an NCCL
// communicator the torchrun way; prints the error's code and message).
import { randomBytes } from 'node:crypto';
import { initNcclDataParallel, rankFromEnv, shareBytes } from '../../src/distributed/index.js';

const mode = process.argv[2];
const info = rankFromEnv();
try {
  if (mode === 'rendezvous') {
    const id = await shareBytes({
      rank: info.rank, worldSize: info.worldSize, addr: info.masterAddr!, port: info.masterPort!, bytes: 128,
      timeoutMs: Number(process.env.RV_TIMEOUT_MS ?? 20000),
      ...(info.rank === 0 ? { payload: new Uint8Array(randomBytes(128)) } : {}),
    });
    console.log(JSON.stringify({ rank: info.rank, hex: Buffer.from(id).toString('hex') }));
  } else {
    const dp = await initNcclDataParallel();
    console.log(JSON.stringify({ rank: info.rank, ok: true, worldSize: dp.worldSize }));
  }
} catch (err) {
  console.log(JSON.stringify({ rank: info.rank, code: (err as { code?: string }).code, message: (err as Error).message }));
  process.exitCode = 3;
}
