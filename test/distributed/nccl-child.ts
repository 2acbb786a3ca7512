// A rank of the NCCL tests (nccl.test.ts), one process each, so PATENTGPT_NCCL and the launcher's
// variables are this process's own. argv[2]: 'rendezvous' (rank 0 hands 128 random bytes to the
// others over MASTER_ADDR:MASTER_PORT; each prints the hex it holds), 'mpi-id' (the same over MPI,
// under mpirun) or 'init' (joins an NCCL
// communicator the torchrun way; prints the error's code and message).
import { randomBytes } from 'node:crypto';
import { initNcclDataParallel, MpiCommunicator, NcclCommunicator, rankFromEnv, shareBytes } from '../../src/distributed/index.js';

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
  } else if (mode === 'mpi-id') {
    // under mpirun: the id from rank 0 over the MPI engine (no NCCL needed for the exchange itself)
    const mpi = MpiCommunicator.init();
    const id = await NcclCommunicator.exchangeId({ rank: mpi.rank, worldSize: mpi.size, mpi }, () => new Uint8Array(randomBytes(128)));
    console.log(JSON.stringify({ rank: mpi.rank, hex: Buffer.from(id).toString('hex') }));
    mpi.close();
  } else {
    const dp = await initNcclDataParallel();
    console.log(JSON.stringify({ rank: info.rank, ok: true, worldSize: dp.worldSize }));
  }
} catch (err) {
  console.log(JSON.stringify({ rank: info.rank, code: (err as { code?: string }).code, message: (err as Error).message }));
  process.exitCode = 3;
}
