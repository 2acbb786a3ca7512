// The NCCL bootstrap of a torchrun-style launch without MPI: rank 0 listens at MASTER_PORT and
// hands the bytes it made (NCCL's 128-byte unique id) to every other rank, which connects to
// MASTER_ADDR:MASTER_PORT, says which rank it is, and reads them. This carries only those bytes,
// once per job (torch's TCPStore does the same for torchrun); the collectives themselves go
// through NCCL.
//
// Wire: a rank sends 'PGRV' and its rank (u32 little-endian), then reads `bytes` bytes.
import * as net from 'node:net';

export interface RendezvousOptions {
  rank: number;
  worldSize: number;
  /** MASTER_ADDR: where rank 0 listens (rank 0 itself listens on every interface). */
  addr: string;
  /** MASTER_PORT. */
  port: number;
  /** Rank 0: what to hand out. Other ranks: ignored. */
  payload?: Uint8Array;
  /** Bytes to read (the payload's length). */
  bytes: number;
  /** How long to wait for the peers (connecting retries until then). */
  timeoutMs: number;
}

const MAGIC = Buffer.from('PGRV');

function distError(code: 'E_DIST' | 'E_DIST_TIMEOUT', message: string): Error {
  return Object.assign(new Error(message), { code });
}

/** Rank 0's payload on every rank (rank 0 gets its own back once every other rank has it). */
export function shareBytes(o: RendezvousOptions): Promise<Uint8Array> {
  return o.rank === 0 ? serve(o) : fetch(o);
}

function serve(o: RendezvousOptions): Promise<Uint8Array> {
  const payload = o.payload;
  if (!payload || payload.length !== o.bytes) return Promise.reject(distError('E_DIST', `rendezvous: rank 0 needs a payload of ${o.bytes} bytes`));
  if (o.worldSize === 1) return Promise.resolve(payload);
  return new Promise((resolve, reject) => {
    const served = new Set<number>();
    const sockets = new Set<net.Socket>();
    let settled = false;
    const finish = (err: Error | null): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      server.close();
      for (const s of sockets) s.destroy();
      if (err) reject(err);
      else resolve(payload);
    };
    const server = net.createServer((sock) => {
      sockets.add(sock);
      let head = Buffer.alloc(0);
      sock.on('data', (chunk: Buffer) => {
        head = Buffer.concat([head, chunk]);
        if (head.length < 8) return;
        const rank = head.readUInt32LE(4);
        if (!head.subarray(0, 4).equals(MAGIC) || rank < 1 || rank >= o.worldSize) {
          sock.destroy(); // not one of ours (a port scan, another job): ignore it
          return;
        }
        sock.end(Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength), () => {
          served.add(rank);
          if (served.size === o.worldSize - 1) finish(null);
        });
      });
      sock.on('error', () => sockets.delete(sock));
      sock.on('close', () => sockets.delete(sock));
    });
    const timer = setTimeout(() => {
      const missing = Array.from({ length: o.worldSize - 1 }, (_, i) => i + 1).filter((r) => !served.has(r));
      finish(distError('E_DIST_TIMEOUT',
        `rank 0: rank(s) ${missing.join(', ')} did not reach the rendezvous at port ${o.port} within ${Math.round(o.timeoutMs / 1000)} s: ` +
          'a rank failed to start, or MASTER_ADDR/MASTER_PORT differ between ranks (raise the timeout: PATENTGPT_DIST_TIMEOUT seconds)'));
    }, o.timeoutMs);
    server.on('error', (err: NodeJS.ErrnoException) =>
      finish(distError('E_DIST', `rank 0: cannot listen on port ${o.port} for the rendezvous (${err.code ?? err.message}): choose a free MASTER_PORT`)));
    server.listen(o.port);
  });
}

function fetch(o: RendezvousOptions): Promise<Uint8Array> {
  const deadline = Date.now() + o.timeoutMs;
  return new Promise((resolve, reject) => {
    let lastError = '';
    const attempt = (): void => {
      if (Date.now() > deadline) {
        reject(distError('E_DIST_TIMEOUT',
          `rank ${o.rank}: no rendezvous from rank 0 at ${o.addr}:${o.port} within ${Math.round(o.timeoutMs / 1000)} s (${lastError || 'no answer'}): ` +
            'rank 0 failed to start, or MASTER_ADDR/MASTER_PORT are wrong (raise the timeout: PATENTGPT_DIST_TIMEOUT seconds)'));
        return;
      }
      const chunks: Buffer[] = [];
      let got = 0;
      const sock = net.connect({ host: o.addr, port: o.port });
      const head = Buffer.alloc(8);
      MAGIC.copy(head);
      head.writeUInt32LE(o.rank, 4);
      sock.on('connect', () => sock.write(head));
      sock.on('data', (c: Buffer) => {
        chunks.push(c);
        got += c.length;
      });
      sock.on('error', (err: NodeJS.ErrnoException) => {
        lastError = err.code ?? err.message;
      });
      sock.on('close', () => {
        if (got === o.bytes) {
          resolve(new Uint8Array(Buffer.concat(chunks)));
          return;
        }
        setTimeout(attempt, 100); // rank 0 not listening yet (or cut off): try again
      });
    };
    attempt();
  });
}
