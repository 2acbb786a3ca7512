// JSON schemas of the request bodies (fastify validates them with ajv, types never coerced).
// Fields of the OpenAI API this server honours, plus vLLM's sampling extensions (top_k, min_p,
// repetition_penalty, ignore_eos). Unknown fields are ignored, as OpenAI-compatible servers do;
// known fields the engine cannot honour (tools, logit_bias, suffix, ...) are refused in
// openai.ts with a 400 that names them, never silently dropped.

const nullable = (type: string, extra: Record<string, unknown> = {}) => ({ type: [type, 'null'], ...extra });

const stop = {
  anyOf: [
    { type: 'string', minLength: 1 },
    { type: 'array', items: { type: 'string', minLength: 1 }, maxItems: 16 },
    { type: 'null' },
  ],
};

/** Sampling and streaming fields both endpoints share. */
const common = {
  model: { type: 'string', minLength: 1 },
  max_tokens: nullable('integer', { minimum: 1 }),
  temperature: nullable('number', { minimum: 0, maximum: 2 }),
  top_p: nullable('number', { exclusiveMinimum: 0, maximum: 1 }),
  n: nullable('integer', { minimum: 1, maximum: 64 }),
  stream: nullable('boolean'),
  stream_options: {
    anyOf: [{ type: 'object', properties: { include_usage: { type: 'boolean' } } }, { type: 'null' }],
  },
  stop,
  seed: nullable('integer'),
  presence_penalty: nullable('number', { minimum: -2, maximum: 2 }),
  frequency_penalty: nullable('number', { minimum: -2, maximum: 2 }),
  user: { type: 'string' },
  // vLLM's extensions
  top_k: nullable('integer', { minimum: -1 }),
  min_p: nullable('number', { minimum: 0, maximum: 1 }),
  repetition_penalty: nullable('number', { exclusiveMinimum: 0 }),
  ignore_eos: nullable('boolean'),
} as const;

const tokenIds = { type: 'array', items: { type: 'integer', minimum: 0 }, minItems: 1 };

export const completionSchema = {
  type: 'object',
  required: ['model', 'prompt'],
  properties: {
    ...common,
    prompt: {
      anyOf: [
        { type: 'string' },
        { type: 'array', items: { type: 'string' }, minItems: 1, maxItems: 64 },
        tokenIds,
        { type: 'array', items: tokenIds, minItems: 1, maxItems: 64 },
      ],
    },
    logprobs: nullable('integer', { minimum: 0, maximum: 20 }),
    echo: nullable('boolean'),
    best_of: nullable('integer', { minimum: 1 }),
    suffix: nullable('string'),
    logit_bias: nullable('object'),
  },
} as const;

const contentPart = {
  type: 'object',
  required: ['type'],
  properties: { type: { type: 'string' }, text: { type: 'string' } },
};

export const chatMessageSchema = {
  type: 'object',
  required: ['role'],
  properties: {
    role: { type: 'string', enum: ['system', 'developer', 'user', 'assistant', 'tool', 'function'] },
    content: { anyOf: [{ type: 'string' }, { type: 'array', items: contentPart }, { type: 'null' }] },
    name: { type: 'string' },
  },
} as const;

export const chatSchema = {
  type: 'object',
  required: ['model', 'messages'],
  properties: {
    ...common,
    messages: { type: 'array', items: chatMessageSchema, minItems: 1 },
    max_completion_tokens: nullable('integer', { minimum: 1 }),
    logprobs: nullable('boolean'),
    top_logprobs: nullable('integer', { minimum: 0, maximum: 20 }),
    logit_bias: nullable('object'),
    tools: { type: ['array', 'null'] },
    functions: { type: ['array', 'null'] },
    tool_choice: {},
    response_format: nullable('object'),
  },
} as const;

export const tokenizeSchema = {
  type: 'object',
  properties: {
    model: { type: 'string' },
    prompt: { type: 'string' },
    messages: { type: 'array', items: chatMessageSchema, minItems: 1 },
    add_special_tokens: { type: 'boolean' },
  },
  oneOf: [{ required: ['prompt'] }, { required: ['messages'] }],
} as const;

export const detokenizeSchema = {
  type: 'object',
  required: ['tokens'],
  properties: { model: { type: 'string' }, tokens: { type: 'array', items: { type: 'integer', minimum: 0 } } },
} as const;

// ---- the request bodies as the schemas admit them ----

type Nullable<T> = T | null | undefined;

export interface CommonBody {
  model: string;
  max_tokens?: Nullable<number>;
  temperature?: Nullable<number>;
  top_p?: Nullable<number>;
  n?: Nullable<number>;
  stream?: Nullable<boolean>;
  stream_options?: Nullable<{ include_usage?: boolean }>;
  stop?: Nullable<string | string[]>;
  seed?: Nullable<number>;
  presence_penalty?: Nullable<number>;
  frequency_penalty?: Nullable<number>;
  top_k?: Nullable<number>;
  min_p?: Nullable<number>;
  repetition_penalty?: Nullable<number>;
  ignore_eos?: Nullable<boolean>;
  logit_bias?: Nullable<Record<string, unknown>>;
}

export interface CompletionBody extends CommonBody {
  prompt: string | string[] | number[] | number[][];
  logprobs?: Nullable<number>;
  echo?: Nullable<boolean>;
  best_of?: Nullable<number>;
  suffix?: Nullable<string>;
}

export interface ChatMessageBody {
  role: 'system' | 'developer' | 'user' | 'assistant' | 'tool' | 'function';
  content?: string | { type: string; text?: string }[] | null;
  name?: string;
}

export interface ChatBody extends CommonBody {
  messages: ChatMessageBody[];
  max_completion_tokens?: Nullable<number>;
  logprobs?: Nullable<boolean>;
  top_logprobs?: Nullable<number>;
  tools?: Nullable<unknown[]>;
  functions?: Nullable<unknown[]>;
  tool_choice?: unknown;
  response_format?: Nullable<{ type?: unknown }>;
}

export interface TokenizeBody {
  model?: string;
  prompt?: string;
  messages?: ChatMessageBody[];
  add_special_tokens?: boolean;
}

export interface DetokenizeBody {
  model?: string;
  tokens: number[];
}
