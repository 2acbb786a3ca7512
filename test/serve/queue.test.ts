// The server's admission queue alone: slots up to maxConcurrency, a bounded FIFO of waiters,
// null (429) when both are full, a slot handed to the oldest waiter, aborted waiters leaving.
import { describe, expect, it } from 'vitest';
import { AdmissionQueue, type Release } from '../../src/serve/index.js';

describe('AdmissionQueue', () => {
  it('grants up to maxConcurrency at once, queues up to queueSize, then refuses', async () => {
    const q = new AdmissionQueue(2, 2);
    const a = q.acquire() as Release;
    const b = q.acquire() as Release;
    expect(typeof a).toBe('function');
    expect(typeof b).toBe('function');
    const c = q.acquire() as Promise<Release>;
    const d = q.acquire() as Promise<Release>;
    expect(c).toBeInstanceOf(Promise);
    expect(q.acquire()).toBeNull(); // both full: the server answers 429
    expect([q.running, q.waiting]).toEqual([2, 2]);
    const order: string[] = [];
    void c.then(() => order.push('c'));
    void d.then(() => order.push('d'));
    a();
    a(); // idempotent: one slot back, not two
    await Promise.resolve();
    expect(order).toEqual(['c']);
    expect([q.running, q.waiting]).toEqual([2, 1]);
    b();
    await Promise.resolve();
    expect(order).toEqual(['c', 'd']);
    (await c)();
    (await d)();
    expect([q.running, q.waiting]).toEqual([0, 0]);
  });

  it('a waiter whose signal aborts leaves the queue with the reason and frees its place', async () => {
    const q = new AdmissionQueue(1, 1);
    const held = q.acquire() as Release;
    const ac = new AbortController();
    const w = q.acquire(ac.signal) as Promise<Release>;
    expect(q.acquire()).toBeNull();
    ac.abort(new Error('client gone'));
    await expect(w).rejects.toThrow('client gone');
    expect(q.waiting).toBe(0);
    const next = q.acquire() as Promise<Release>;
    expect(next).toBeInstanceOf(Promise);
    held();
    (await next)();
    expect([q.running, q.waiting]).toEqual([0, 0]);
    const pre = new AbortController();
    pre.abort(new Error('already'));
    const x = q.acquire() as Release;
    await expect(q.acquire(pre.signal) as Promise<Release>).rejects.toThrow('already');
    expect(q.waiting).toBe(0);
    x();
  });

  it('queueSize 0 refuses as soon as every slot is taken; bad sizes are refused naming the field', () => {
    const q = new AdmissionQueue(1, 0);
    const r = q.acquire() as Release;
    expect(q.acquire()).toBeNull();
    r();
    expect(typeof q.acquire()).toBe('function');
    expect(() => new AdmissionQueue(0, 1)).toThrow(/maxConcurrency must be an integer >= 1/);
    expect(() => new AdmissionQueue(1, -1)).toThrow(/queueSize must be an integer >= 0/);
  });
});
