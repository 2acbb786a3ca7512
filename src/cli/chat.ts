// patentgpt chat: an interactive multi-turn chat with a model folder, on its chat template.
//
// Each turn renders the whole conversation with the template (the folder's tokenizer_config.json
// chat_template, or chat_template.jinja beside it, as transformers' apply_chat_template; without
// one, the LLaMA-2 [INST] layout) ending with the generation prompt, and streams the answer to
// stdout. The line editor and its prompt are on stderr, so stdout holds only the answers.
//
// Ctrl-C while an answer streams stops that answer (what was printed stays in the conversation)
// and returns to the prompt; Ctrl-C at the prompt asks for a second one, which exits, as does
// EOF (Ctrl-D). When the conversation outgrows the context, its oldest turns are dropped.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { Command } from 'commander';
import { PatentGPTError } from '../errors.js';
import { chatPromptIds } from '../infer/index.js';
import { ByteTokenizer, SentencePieceTokenizer, loadChatTemplate, type ChatMessage, type ChatTemplate } from '../tokenizer/index.js';
import { engineFor, samplingOptions, streamTo, withSamplingFlags, writeOut, type SamplingFlags } from './generate.js';

interface ChatFlags extends SamplingFlags {
  system?: string;
  chatTemplate?: string;
  verbose?: boolean;
}

type Tok = ByteTokenizer | SentencePieceTokenizer;

/** The folder's Hugging Face chat template, null when it has none (the built-in LLaMA-2 layout is used). */
function folderTemplate(dir: string, spec: string | undefined): ChatTemplate | null {
  if (spec === 'llama2') return null;
  if (spec !== undefined) return loadChatTemplate(spec);
  const configPath = join(dir, 'tokenizer_config.json');
  const jinja = join(dir, 'chat_template.jinja');
  if (!existsSync(configPath)) return existsSync(jinja) ? loadChatTemplate({ chat_template: readFileSync(jinja, 'utf8') }) : null;
  let config: { chat_template?: unknown };
  try {
    config = JSON.parse(readFileSync(configPath, 'utf8')) as { chat_template?: unknown };
  } catch (err) {
    throw new PatentGPTError('E_CONFIG', `cannot read ${configPath} (${(err as Error).message}); fix it or pass --chat-template`);
  }
  // A base model's tokenizer config has no template: the built-in layout fits it.
  if (config.chat_template === undefined && !existsSync(jinja)) return null;
  return loadChatTemplate(dir); // takes chat_template.jinja beside a config without one, as transformers
}

/**
 * The prompt ids of a conversation ending with the generation prompt: through the template
 * (special strings as their ids for SentencePiece; the byte tokenizer spells them out), else the
 * built-in LLaMA-2 layout.
 */
function promptIds(tok: Tok, template: ChatTemplate | null, messages: readonly ChatMessage[]): number[] {
  if (template === null) return chatPromptIds(tok, messages);
  if (tok instanceof SentencePieceTokenizer) return Array.from(template.apply(tok, messages, { addGenerationPrompt: true }).ids);
  return Array.from(tok.encode(template.render(messages, { addGenerationPrompt: true })));
}

/** Token ids that end an answer besides EOS: the template's eos_token when it is one id. */
function stopIds(tok: Tok, template: ChatTemplate | null): number[] {
  const eos = template?.specialTokens.eos_token;
  if (!eos || !(tok instanceof SentencePieceTokenizer)) return [];
  const id = tok.pieceToId(eos);
  return id !== tok.unkId && id !== tok.eosId ? [id] : [];
}

export function chatCommand(): Command {
  return withSamplingFlags(
    new Command('chat').description('chat with a model folder on its chat template, streaming the answers (Ctrl-C stops an answer; Ctrl-C twice or Ctrl-D exits)'),
  )
    .option('--system <text>', 'a system message at the start of the conversation')
    .option('--chat-template <spec>', "a tokenizer_config.json (or its folder) whose chat_template to use, or 'llama2' (default: the model folder's, else llama2)")
    .option('--verbose', 'print each turn\'s prompt (as the model reads it) and its token counts on stderr')
    .action(async (o: ChatFlags) => {
      const template = folderTemplate(o.model, o.chatTemplate);
      const { engine, tokenizer } = await engineFor(o);
      const tok = tokenizer as Tok;
      const base = samplingOptions(o);
      const stopTokenIds = stopIds(tok, template);
      const history: ChatMessage[] = o.system !== undefined ? [{ role: 'system', content: o.system }] : [];
      const firstTurn = history.length;

      const terminal = process.stdin.isTTY === true && process.stderr.isTTY === true;
      const rl = createInterface({ input: process.stdin, output: process.stderr, terminal, prompt: '> ' });
      let answering: AbortController | null = null;
      let exitArmed = false;
      // The line editor reports Ctrl-C on a terminal; a piped stdin gets the signal itself.
      const onInterrupt = (): void => {
        if (answering) {
          answering.abort();
          return;
        }
        if (exitArmed) {
          rl.close();
          return;
        }
        exitArmed = true;
        process.stderr.write('\n(Ctrl-C again or Ctrl-D to exit)\n');
        rl.prompt();
      };
      rl.on('SIGINT', onInterrupt);
      process.on('SIGINT', onInterrupt);

      console.error(`patentgpt chat: ${o.model} (${template ? `chat template "${template.name}"` : 'LLaMA-2 [INST] layout'}); /reset clears the conversation`);
      rl.prompt();
      try {
        for await (const line of rl) {
          exitArmed = false;
          const text = line.trim();
          if (text === '') {
            rl.prompt();
            continue;
          }
          if (text === '/exit' || text === '/quit') break;
          if (text === '/reset') {
            history.splice(firstTurn);
            console.error('(conversation cleared)');
            rl.prompt();
            continue;
          }
          history.push({ role: 'user', content: line });
          const turn = await answer(text);
          if (turn === null) history.pop(); // the question was refused: the conversation stays as it was
          rl.prompt();
        }
      } finally {
        process.off('SIGINT', onInterrupt);
        rl.close();
        engine.close();
      }

      /** Streams one answer; returns its text (also when stopped by Ctrl-C), or null after an error. */
      async function answer(question: string): Promise<string | null> {
        let ids = promptIds(tok, template, history);
        // Keep room for an answer: drop the oldest exchanges (never the system message or this question).
        while (ids.length >= engine.maxModelLen && history.length - firstTurn > 1) {
          history.splice(firstTurn, 2);
          console.error('(the conversation outgrew the context: its oldest exchange was dropped)');
          ids = promptIds(tok, template, history);
        }
        const room = engine.maxModelLen - ids.length;
        if (room < 1) {
          console.error(`patentgpt chat: "${question.slice(0, 40)}" is ${ids.length} tokens with the template; the context holds ${engine.maxModelLen}: ask something shorter`);
          return null;
        }
        if (o.verbose) console.error(`[prompt] ${JSON.stringify(tok.decode(ids))}`);
        const ac = new AbortController();
        answering = ac;
        let reply = '';
        try {
          const r = await streamTo(
            engine.generate(ids, { ...base, maxTokens: Math.min(o.maxTokens ?? 512, room), stopTokenIds, signal: ac.signal }),
            ac.signal,
            (t) => (reply += t),
          );
          await writeOut('\n');
          if (r.finish === 'aborted') console.error(`[stopped] ${r.tokens} tokens`);
          else if (o.verbose) console.error(`[finish] ${r.finish} ${ids.length} prompt tokens, ${r.tokens} new`);
        } catch (err) {
          await writeOut('\n');
          console.error(`patentgpt chat: ${err instanceof Error ? err.message : String(err)}`);
          return null;
        } finally {
          answering = null;
        }
        history.push({ role: 'assistant', content: reply });
        return reply;
      }
    });
}
