// The synthesis engine backend (data synth's Generator over this package's own inference engine,
// so data sits below infer): this package's own inference engine (paged KV cache, continuous batching)
// answers the requests. Messages become LLaMA-2 chat prompts ([INST] <<SYS>> ... [/INST]): token
// exact through renderChat for SentencePiece tokenizers, the same layout as text for others (the
// byte tokenizer of small test models). A seed makes a reply reproducible, whatever else runs in
// the same batch.
import { PatentGPTError } from '../errors.js';
import { GenerateError, type ChatMessage, type GenerateRequest, type GenerateResult, type Generator, validateMessages, validateParams } from '../data/generate/types.js';
import { Engine, type Completion, type EngineOptions, type EngineTokenizer, type GenerateOptions } from './engine.js';
import type { LlamaForCausalLM } from '../models/llama.js';
import { renderChat } from '../tokenizer/chat.js';
import { SentencePieceTokenizer } from '../tokenizer/sentencepiece.js';

/** What the generator needs of an engine (Engine and ThreadedEngine fit). */
export interface CompletionEngine {
  complete(prompt: ArrayLike<number>, options: GenerateOptions): Promise<Completion>;
  /** The context; a request without maxTokens then asks for at most what is left of it. */
  readonly maxModelLen?: number;
}

/** A tokenizer that can also mark turns (SentencePieceTokenizer and ByteTokenizer fit). */
export interface ChatTokenizer extends EngineTokenizer {
  readonly bosId: number;
}

export interface EngineGeneratorOptions {
  /** The engine; make it with the same tokenizer (stop strings and text output need it). */
  engine: CompletionEngine;
  tokenizer: ChatTokenizer;
  /** Model name for provenance (e.g. the model folder). */
  model: string;
  /** Requests kept in flight (default 8: the engine batches them). */
  concurrency?: number;
}

/** The chat prompt's token ids, ending with an open assistant turn. */
export function chatPromptIds(tokenizer: ChatTokenizer, messages: readonly ChatMessage[]): number[] {
  if (tokenizer instanceof SentencePieceTokenizer) return Array.from(renderChat(tokenizer, messages, { addGenerationPrompt: true }).ids);
  let system: string | null = null;
  let turns = messages;
  if (messages[0]?.role === 'system') {
    system = messages[0].content;
    turns = messages.slice(1);
  }
  if (turns.length === 0 || turns[turns.length - 1]!.role !== 'user')
    throw new PatentGPTError('E_ARGUMENT', 'EngineGenerator: the conversation must end with a user turn');
  const ids: number[] = [];
  turns.forEach((m, i) => {
    if (m.role === (i % 2 === 0 ? 'assistant' : 'user') || m.role === 'system')
      throw new PatentGPTError('E_ARGUMENT', `EngineGenerator: roles must alternate user/assistant after an optional system message; turn ${i} is ${m.role}`);
    if (m.role === 'user') {
      const content = i === 0 && system !== null ? `<<SYS>>\n${system}\n<</SYS>>\n\n${m.content}` : m.content;
      ids.push(tokenizer.bosId, ...Array.from(tokenizer.encode(`[INST] ${content.trim()} [/INST]`)));
    } else ids.push(...Array.from(tokenizer.encode(` ${m.content.trim()} `)), tokenizer.eosId);
  });
  return ids;
}

export class EngineGenerator implements Generator {
  readonly backend = 'engine';
  readonly model: string;
  readonly concurrency: number;
  readonly #engine: CompletionEngine;
  readonly #tok: ChatTokenizer;

  constructor(opts: EngineGeneratorOptions) {
    this.#engine = opts.engine;
    this.#tok = opts.tokenizer;
    this.model = opts.model;
    this.concurrency = opts.concurrency ?? 8;
  }

  /** A generator over a new Engine of `model` (closed with close()). */
  static fromModel(model: LlamaForCausalLM, tokenizer: ChatTokenizer, name: string, opts: EngineOptions & { concurrency?: number } = {}): EngineGenerator & { close(): void } {
    const { concurrency, ...engineOpts } = opts;
    const engine = new Engine(model, { ...engineOpts, tokenizer, addBos: false });
    const g = new EngineGenerator({ engine, tokenizer, model: name, concurrency }) as EngineGenerator & { close(): void };
    g.close = () => engine.close();
    return g;
  }

  async complete(req: GenerateRequest): Promise<GenerateResult> {
    validateMessages(req.messages, 'EngineGenerator');
    validateParams(req, 'EngineGenerator');
    const ids = chatPromptIds(this.#tok, req.messages);
    let res: Completion;
    try {
      res = await this.#engine.complete(ids, {
        maxTokens: req.maxTokens ?? defaultMaxTokens(this.#engine, ids.length),
        temperature: req.temperature ?? 0,
        ...(req.topP !== undefined ? { topP: req.topP } : {}),
        seed: req.seed ?? 0,
        ...(req.stop?.length ? { stop: req.stop } : {}),
        ...(req.signal ? { signal: req.signal } : {}),
      });
    } catch (err) {
      const e = err as { code?: string; message?: string };
      if (req.signal?.aborted || e.code === 'E_ABORTED') throw new GenerateError('E_ABORTED', 'aborted', 'EngineGenerator: aborted');
      throw new GenerateError('E_ARGUMENT', 'engine-error', `EngineGenerator: ${e.message ?? String(err)}`);
    }
    return {
      text: res.text,
      finishReason: res.finishReason,
      usage: { promptTokens: ids.length, completionTokens: res.tokens.length },
      model: this.model,
    };
  }
}

/**
 * 512 new tokens, or what the context leaves after the prompt when that is less: a default must
 * not turn a long prompt into an error (an explicit maxTokens beyond the context still is one).
 */
function defaultMaxTokens(engine: CompletionEngine, promptTokens: number): number {
  const room = engine.maxModelLen === undefined ? Infinity : engine.maxModelLen - promptTokens;
  return Math.max(1, Math.min(512, room));
}
