// The report's browser test skips without Chromium, and fails instead when CI requires the peers.
import { afterEach, describe, expect, it } from 'vitest';
import { findChromium } from './browser.js';

const saved = process.env.PATENTGPT_REQUIRE_PEERS;
afterEach(() => {
  if (saved === undefined) delete process.env.PATENTGPT_REQUIRE_PEERS;
  else process.env.PATENTGPT_REQUIRE_PEERS = saved;
});

describe('Chromium for the report test', () => {
  it('is a reason to skip when peers are optional', () => {
    delete process.env.PATENTGPT_REQUIRE_PEERS;
    const r = findChromium(['/nonexistent/chromium']);
    expect(r.path).toBeNull();
    expect(r.why).toMatch(/no Chromium/);
  });

  it('is a failure with PATENTGPT_REQUIRE_PEERS=1', () => {
    process.env.PATENTGPT_REQUIRE_PEERS = '1';
    expect(() => findChromium(['/nonexistent/chromium'])).toThrow(/Chromium/);
  });
});
