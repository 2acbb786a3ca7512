// src/serve: the OpenAI-compatible HTTP server over the inference engine.
export { createServer, type ServerOptions } from './server.js';
