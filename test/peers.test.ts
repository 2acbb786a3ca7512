// The switch that makes a missing peer a failure in CI instead of a skipped comparison.
import { afterEach, describe, expect, it } from 'vitest';
import { findPython, missingPeer, peersRequired } from '../scripts/bench/_peers.js';

const saved = process.env.PATENTGPT_REQUIRE_PEERS;
afterEach(() => {
  if (saved === undefined) delete process.env.PATENTGPT_REQUIRE_PEERS;
  else process.env.PATENTGPT_REQUIRE_PEERS = saved;
});

describe('required peers', () => {
  it('a missing Python module is a reason to skip when peers are optional', () => {
    delete process.env.PATENTGPT_REQUIRE_PEERS;
    expect(peersRequired()).toBe(false);
    const r = findPython(['patentgpt_no_such_module']);
    expect(r.python).toBeNull();
    expect(r.why).toMatch(/patentgpt_no_such_module/);
    expect(missingPeer('x')).toBe('x');
  });

  it('a missing Python module throws when PATENTGPT_REQUIRE_PEERS=1', () => {
    process.env.PATENTGPT_REQUIRE_PEERS = '1';
    expect(() => findPython(['patentgpt_no_such_module'])).toThrow(/PATENTGPT_REQUIRE_PEERS=1.*patentgpt_no_such_module/);
    expect(() => missingPeer('node-llama-cpp is not installed')).toThrow(/node-llama-cpp/);
  });

  it.runIf(process.env.CI === 'true')('CI runs with the peers required', () => {
    expect(saved).toBe('1');
  });
});
