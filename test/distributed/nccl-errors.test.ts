// How the NCCL facade (src/distributed/nccl.ts) names native failures: NCCL or CUDA missing is
// E_UNSUPPORTED; a peer that never joined the communicator within the deadline (the native
// non-blocking init, native/test/test_nccl_init.cpp) or never took part in a call is
// E_DIST_TIMEOUT; any other NCCL failure E_DIST. The message keeps the rank the native side named.
import { describe, expect, it } from 'vitest';
import { rethrow } from '../../src/distributed/nccl.js';

const native = (message: string): Error => Object.assign(new Error(message), { code: 'E_NATIVE_DEVICE' });
const caught = (f: () => never): { code?: string; message: string } => {
  try {
    f();
  } catch (err) {
    return err as { code?: string; message: string };
  }
  throw new Error('did not throw');
};

describe('NCCL errors', () => {
  it('a communicator not set up within the timeout is E_DIST_TIMEOUT naming the rank', () => {
    const e = caught(() => rethrow(native('rank 1 of 2: the NCCL communicator was not set up within 300 s: not all 2 ranks joined it')));
    expect(e.code).toBe('E_DIST_TIMEOUT');
    expect(e.message).toMatch(/^rank 1 of 2: the NCCL communicator was not set up within 300 s/);
    expect(e.message).toMatch(/run the launch again/);
  });
  it('a collective still enqueuing past the deadline is E_DIST_TIMEOUT; other NCCL failures E_DIST; a missing NCCL E_UNSUPPORTED', () => {
    expect(caught(() => rethrow(native('rank 0 of 2: NCCL all-reduce did not complete within 5 s: a peer rank died or hangs'))).code).toBe('E_DIST_TIMEOUT');
    expect(caught(() => rethrow(native('NCCL communicator set-up failed on rank 0: remote process exited (rank 0 of 2)'))).code).toBe('E_DIST');
    expect(caught(() => rethrow(native('NCCL is not available: cannot load libnccl.so.2'))).code).toBe('E_UNSUPPORTED');
  });
});
