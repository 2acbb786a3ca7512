// src/serve: the OpenAI-compatible HTTP server over the inference engine.
export { createServer, type ServerOptions } from './server.js';
export { AdmissionQueue, type Release } from './queue.js';
export { OpenAIError } from './openai.js';
export type { ServeEngine, ServeTokenizer } from './model.js';
