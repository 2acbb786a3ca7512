// What the server serves: an engine, the tokenizer that makes its prompt ids (so prompts are
// counted and limited before they are queued), the chat renderer, and the context length. From a
// model folder: a ThreadedEngine (steps never run on the HTTP thread), the tokenizer the folder
// records, and its chat template — tokenizer_config.json's chat_template (or chat_template.jinja)
// when it has one, else LLaMA-2's [INST] format, PatentGPT's own.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PatentGPTError } from '../errors.js';
import { defaultMaxModelLen, type EngineOptions, type EngineStats, type GenerateOptions, type GenerationDelta } from '../infer/engine.js';
import { chatPromptIds } from '../infer/generator.js';
import { ThreadedEngine } from '../infer/threaded.js';
import { loadFolderTokenizer } from '../infer/folder-tokenizer.js';
import { readConfig, TOKENIZER_MODEL_FILE, TOKENIZER_SPEC_FILE } from '../models/pretrained.js';
import { ByteTokenizer, SentencePieceTokenizer, loadChatTemplate, type ChatTemplate } from '../tokenizer/index.js';

/** What the server needs of an engine: Engine and ThreadedEngine fit. */
export interface ServeEngine {
  generate(prompt: ArrayLike<number>, options: GenerateOptions): AsyncIterableIterator<GenerationDelta>;
  stats(): EngineStats | Promise<EngineStats>;
  /** The context (Engine has it; give ServerOptions.maxModelLen for an engine without). */
  readonly maxModelLen?: number;
}

export type ServeTokenizer = ByteTokenizer | SentencePieceTokenizer;

/** A conversation turn after the request's roles are mapped (developer -> system). */
export interface ServeMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

/** Prompt ids of a conversation, ending with an open assistant turn. */
export type ChatRender = (messages: readonly ServeMessage[]) => number[];

export interface ServedModel {
  engine: ServeEngine;
  tokenizer: ServeTokenizer;
  chat: ChatRender;
  /** Where the chat format came from, for /v1/models and logs. */
  chatFormat: string;
  maxModelLen: number;
  /** Frees what the server made (a folder's ThreadedEngine); nothing for a caller's engine. */
  close(): Promise<void>;
}

/** The tokenizer a model folder records. */
export function folderTokenizer(dir: string): ServeTokenizer {
  const tok = loadFolderTokenizer(dir);
  if (tok) return tok;
  throw new PatentGPTError('E_ARGUMENT',
    `serve: ${dir} records no tokenizer (no ${TOKENIZER_MODEL_FILE} nor ${TOKENIZER_SPEC_FILE}); save the model with savePretrained(model, dir, { tokenizer }) or pass createServer({ engine, tokenizer })`);
}

/** The folder's Hugging Face chat template, or null when it has none. */
export function folderChatTemplate(dir: string): ChatTemplate | null {
  const cfgPath = join(dir, 'tokenizer_config.json');
  if (!existsSync(cfgPath)) return null;
  let cfg: { chat_template?: unknown };
  try {
    cfg = JSON.parse(readFileSync(cfgPath, 'utf8')) as { chat_template?: unknown };
  } catch (err) {
    throw new PatentGPTError('E_CONFIG', `${cfgPath}: not JSON (${(err as Error).message})`);
  }
  if (cfg.chat_template === undefined && !existsSync(join(dir, 'chat_template.jinja'))) return null;
  return loadChatTemplate(dir);
}

/** A chat renderer: a Hugging Face template (SentencePiece tokenizers) or LLaMA-2's format. */
export function chatRenderer(tokenizer: ServeTokenizer, template: ChatTemplate | null): { chat: ChatRender; chatFormat: string } {
  if (template) {
    if (!(tokenizer instanceof SentencePieceTokenizer))
      throw new PatentGPTError('E_CONFIG', 'serve: a Hugging Face chat template needs a SentencePiece tokenizer; the byte tokenizer takes the built-in llama2 format');
    return {
      chat: (messages) => Array.from(template.apply(tokenizer, messages, { addGenerationPrompt: true }).ids),
      chatFormat: `chat template "${template.name}"`,
    };
  }
  return { chat: (messages) => chatPromptIds(tokenizer, messages), chatFormat: 'llama2' };
}

/** Loads a model folder into a ThreadedEngine with its tokenizer and chat template. */
export async function openModelFolder(dir: string, engineOptions: Omit<EngineOptions, 'tokenizer'> = {}): Promise<ServedModel> {
  const cfg = await readConfig(dir);
  const tokenizer = folderTokenizer(dir);
  const { chat, chatFormat } = chatRenderer(tokenizer, folderChatTemplate(dir));
  const maxModelLen = engineOptions.maxModelLen ?? defaultMaxModelLen(cfg);
  const engine = await ThreadedEngine.fromPretrained(dir, { ...engineOptions, maxModelLen, tokenizer });
  return { engine, tokenizer, chat, chatFormat, maxModelLen, close: () => engine.close() };
}
