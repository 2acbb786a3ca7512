// Prometheus metrics of the HTTP server (prom-client), in a registry of its own so that two
// servers in one process (tests, a host service mounting ours) never share counters. Names follow
// vLLM's where one exists, under the patentgpt_ prefix.
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { EngineStats } from '../infer/engine.js';

// Latencies from a millisecond to a minute.
const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

export class ServerMetrics {
  readonly registry = new Registry();
  readonly requests: Counter<'endpoint' | 'status'>;
  readonly promptTokens: Counter;
  readonly generationTokens: Counter;
  readonly running: Gauge;
  readonly queueDepth: Gauge;
  readonly ttft: Histogram;
  readonly interToken: Histogram;
  readonly requestLatency: Histogram;

  /** `stats` reads the engine at scrape time (KV blocks in use and in all). */
  constructor(stats: () => EngineStats | Promise<EngineStats>, queue: { running: number; waiting: number }) {
    const registers = [this.registry];
    this.requests = new Counter({ name: 'patentgpt_requests_total', help: 'HTTP requests answered, by endpoint and status code', labelNames: ['endpoint', 'status'], registers });
    this.promptTokens = new Counter({ name: 'patentgpt_prompt_tokens_total', help: 'Prompt tokens of admitted requests', registers });
    this.generationTokens = new Counter({ name: 'patentgpt_generation_tokens_total', help: 'Tokens generated', registers });
    this.running = new Gauge({ name: 'patentgpt_requests_running', help: 'Requests holding an engine slot', registers, collect() { this.set(queue.running); } });
    this.queueDepth = new Gauge({ name: 'patentgpt_queue_depth', help: 'Requests waiting for an engine slot', registers, collect() { this.set(queue.waiting); } });
    this.ttft = new Histogram({ name: 'patentgpt_time_to_first_token_seconds', help: 'Time from arrival to the first generated token', buckets: LATENCY_BUCKETS, registers });
    this.interToken = new Histogram({ name: 'patentgpt_inter_token_latency_seconds', help: 'Time between consecutive generated tokens of a request', buckets: LATENCY_BUCKETS, registers });
    this.requestLatency = new Histogram({ name: 'patentgpt_request_duration_seconds', help: 'Time from arrival to the last byte of a generation request', buckets: LATENCY_BUCKETS, registers });
    const kv = async (): Promise<EngineStats['blocks'] | null> => {
      try {
        return (await stats()).blocks;
      } catch {
        return null; // the engine is closing: the gauges keep their last values
      }
    };
    new Gauge({
      name: 'patentgpt_kv_blocks_in_use', help: 'KV-cache blocks held by requests', registers,
      async collect() {
        const b = await kv();
        if (b) this.set(b.used);
      },
    });
    new Gauge({
      name: 'patentgpt_kv_blocks_total', help: 'KV-cache blocks in the pool', registers,
      async collect() {
        const b = await kv();
        if (b) this.set(b.total);
      },
    });
  }
}
