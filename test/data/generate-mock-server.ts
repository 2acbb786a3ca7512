// A local OpenAI-compatible server for the generator tests. What it does with a request depends on
// the last message's first word (or the prompt's, for /completions):
//   ok            200 with a reply that repeats the prompt's last line
//   429xN         429 with Retry-After (seconds, from ?retryAfter or 0.05) for the first N attempts, then ok
//   500xN / 408xN the status for the first N attempts, then ok
//   slowMS        answer after MS milliseconds (slowMSxN: only the first N attempts are slow)
//   resetxN       destroy the socket for the first N attempts, then ok
//   malformed     200 with a body that is not JSON
//   nochoices     200 with JSON that has no choices
//   400           400 with an OpenAI error body
//   reply:TEXT    200 with TEXT as the reply (the rest of the message)
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface SeenRequest {
  at: number;
  path: string;
  headers: http.IncomingHttpHeaders;
  body: Record<string, unknown>;
}

export interface MockServer {
  url: string;
  seen: SeenRequest[];
  /** Most requests in flight at once. */
  maxInFlight: number;
  close(): Promise<void>;
}

export async function startMockServer(opts: { retryAfterSec?: number } = {}): Promise<MockServer> {
  const attempts = new Map<string, number>();
  const seen: SeenRequest[] = [];
  let inFlight = 0;
  const state = { maxInFlight: 0 };
  const server = http.createServer((req, res) => {
    const at = performance.now(); // when the headers arrived
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      inFlight++;
      state.maxInFlight = Math.max(state.maxInFlight, inFlight);
      const done = (): void => {
        inFlight--;
      };
      let body: Record<string, unknown>;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
      } catch {
        res.writeHead(400).end('{"error":{"message":"bad json"}}');
        return done();
      }
      seen.push({ at, path: req.url ?? '', headers: req.headers, body });
      const chat = req.url?.endsWith('/chat/completions') ?? false;
      const prompt = chat
        ? String((body.messages as { content: string }[]).at(-1)?.content ?? '')
        : String(body.prompt ?? '');
      const word = prompt.trim().split(/\s+/)[0] ?? '';
      const n = (attempts.get(prompt) ?? 0) + 1;
      attempts.set(prompt, n);
      const reply = (text: string): void => {
        const choice = chat ? { index: 0, message: { role: 'assistant', content: text }, finish_reason: 'stop' } : { index: 0, text, finish_reason: 'stop' };
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ id: 'x', object: chat ? 'chat.completion' : 'text_completion', model: `served-${String(body.model)}`, choices: [choice], usage: { prompt_tokens: 10, completion_tokens: 3, total_tokens: 13 } }));
        done();
      };
      const ok = (): void => reply(`echo: ${prompt.trim().split('\n').at(-1)}`);
      const times = (m: RegExpExecArray | null): number => (m?.[2] ? Number(m[2]) : Infinity);
      let m: RegExpExecArray | null;
      if ((m = /^(429|500|408|503)x(\d+)$/.exec(word))) {
        if (n > times(m)) return ok();
        const headers: Record<string, string> = { 'content-type': 'application/json' };
        if (m[1] === '429') headers['retry-after'] = String(opts.retryAfterSec ?? 0.05);
        res.writeHead(Number(m[1]), headers).end(JSON.stringify({ error: { message: `injected ${m[1]}` } }));
        return done();
      }
      if ((m = /^slow(\d+)(?:x(\d+))?$/.exec(word))) {
        if (n > times(m)) return ok();
        const t = setTimeout(ok, Number(m[1]));
        res.on('close', () => {
          if (!res.writableEnded) {
            clearTimeout(t);
            done();
          }
        });
        return;
      }
      if ((m = /^(reset)x(\d+)$/.exec(word))) {
        if (n > times(m)) return ok();
        req.socket.destroy();
        return done();
      }
      if (word === 'malformed') {
        res.writeHead(200, { 'content-type': 'application/json' }).end('{"choices": [ {"message": ');
        return done();
      }
      if (word === 'nochoices') {
        res.writeHead(200, { 'content-type': 'application/json' }).end('{"object":"chat.completion"}');
        return done();
      }
      if (word === '400') {
        res.writeHead(400, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { message: 'max_tokens is too large', type: 'invalid_request_error' } }));
        return done();
      }
      if (word.startsWith('reply:')) return reply(prompt.trim().slice('reply:'.length));
      ok();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/v1`,
    seen,
    get maxInFlight() {
      return state.maxInFlight;
    },
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}
