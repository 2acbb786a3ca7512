// The offline backend: no model, no network. It answers each templated request with the template's
// extractive reply (built from the document by rules: the abstract for claim-to-abstract, first
// sentences for answers, ...), or with a reply function of your own. Deterministic, so tests and
// dry runs of a synthesis job exercise prompts, parsing, provenance and resume exactly.
import { PatentGPTError } from '../../errors.js';
import { TEMPLATES } from './templates.js';
import { type GenerateRequest, type GenerateResult, type Generator, validateMessages, validateParams } from './types.js';

export interface OfflineGeneratorOptions {
  /** Replaces the templates' extractive replies (tests script malformed replies with it). */
  respond?: (request: GenerateRequest) => string | Promise<string>;
  /** Model name for provenance (default 'extractive'). */
  model?: string;
  concurrency?: number;
}

/** Whitespace-separated words: the offline backend's token count for usage. */
function countTokens(s: string): number {
  const m = s.match(/[\u3400-\u9fff]|[^\s\u3400-\u9fff]+/g);
  return m ? m.length : 0;
}

export class OfflineGenerator implements Generator {
  readonly backend = 'offline';
  readonly model: string;
  readonly concurrency: number;
  readonly #respond: (request: GenerateRequest) => string | Promise<string>;

  constructor(opts: OfflineGeneratorOptions = {}) {
    this.model = opts.model ?? (opts.respond ? 'scripted' : 'extractive');
    this.concurrency = opts.concurrency ?? 4;
    this.#respond = opts.respond ?? extractiveReply;
  }

  async complete(req: GenerateRequest): Promise<GenerateResult> {
    validateMessages(req.messages, 'OfflineGenerator');
    validateParams(req, 'OfflineGenerator');
    if (req.signal?.aborted) throw req.signal.reason;
    let text = await this.#respond(req);
    let finishReason = 'stop';
    for (const s of req.stop ?? []) {
      const at = text.indexOf(s);
      if (at >= 0) text = text.slice(0, at);
    }
    // maxTokens holds here too, counted in words (a CJK character is a word).
    const words = text.match(/[\u3400-\u9fff]|[^\s\u3400-\u9fff]+\s*/g) ?? [];
    if (req.maxTokens !== undefined && words.length > req.maxTokens) {
      text = words.slice(0, req.maxTokens).join('').trimEnd();
      finishReason = 'length';
    }
    return {
      text,
      finishReason,
      usage: { promptTokens: countTokens(req.messages.map((m) => m.content).join('\n')), completionTokens: countTokens(text) },
      model: this.model,
    };
  }
}

/** The template's extractive reply to a templated request. */
export function extractiveReply(req: GenerateRequest): string {
  if (!req.task)
    throw new PatentGPTError('E_ARGUMENT', 'OfflineGenerator: the extractive backend answers templated requests only (request.task); pass respond() for free prompts');
  const { template, document, lang, options } = req.task;
  return TEMPLATES[template].offlineReply(document, lang, options);
}
