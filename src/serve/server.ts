// createServer: an OpenAI-compatible HTTP server (fastify) over an Engine or a model folder.
import Fastify, { type FastifyInstance } from 'fastify';

export interface ServerOptions {
  /** A model folder; the server loads it into a ThreadedEngine. */
  model?: string;
}

export async function createServer(_opts: ServerOptions): Promise<FastifyInstance> {
  return Fastify();
}
