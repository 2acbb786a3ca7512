# Makes test/tokenizer/fixtures/chat-templates/parity.json: what transformers' apply_chat_template
# gives for the chat templates of test/tokenizer/fixtures/chat-templates/*/tokenizer_config.json
# (LLaMA-2-chat, Mistral-instruct (list form: default and v0.1), ChatML/Qwen, Zephyr, LLaMA-3,
# Gemma (on LLaMA-2's vocabulary: their markers are plain text), and a ChatML template with
# {% generation %} blocks) on a few conversations: the rendered text
# (tokenize=False), the ids of tokenizer(text, add_special_tokens=False) and of
# apply_chat_template(tokenize=True) (they must agree), transformers' assistant mask where the
# template has generation blocks, and the message of a template's raise_exception.
# The tokenizer is LLaMA-2's tokenizer.model with legacy=False, as LlamaTokenizer loads it.
# Run: PYTHON scripts/chat-template-parity.py PATH/TO/llama2/tokenizer.model [OUT.json]
# Conversations avoid runs of spaces: transformers 5.x converts tokenizer.model with merges
# ranked by piece id, which splits '  ' differently from sentencepiece (see test/tokenizer/hf.test.ts).
import json, os, shutil, sys, tempfile
from transformers import LlamaTokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, '..', 'test', 'tokenizer', 'fixtures', 'chat-templates')
SYS = {'role': 'system', 'content': 'You are PatentGPT, an assistant for intellectual property.'}
CONVS = [
  [{'role': 'user', 'content': 'What is a patent claim?'}],
  [SYS, {'role': 'user', 'content': '什么是发明专利？'},
   {'role': 'assistant', 'content': '发明专利是对产品、方法或者其改进所提出的新的技术方案。'},
   {'role': 'user', 'content': 'And in English?'}],
  [{'role': 'user', 'content': 'Summarize claim 1.\nIt recites a device.'},
   {'role': 'assistant', 'content': 'A device with a sensor.'},
   {'role': 'user', 'content': 'Is it novel?'},
   {'role': 'assistant', 'content': 'Novelty depends on the prior art.\n\nSee 35 U.S.C. 102.'}],
  [SYS, {'role': 'user', 'content': 'Draft a title.'}, {'role': 'assistant', 'content': 'Sensor device <s> with </s> markers'}],
  [{'role': 'user', 'content': 'List the claims:\n'}, {'role': 'assistant', 'content': '\n1. A device.\n2. A method.\n'}],
]
BAD = [{'role': 'user', 'content': 'a'}, {'role': 'user', 'content': 'b'}]
CASES = [('llama2-chat', None), ('mistral-instruct', None), ('mistral-instruct', 'v0.1'), ('chatml-qwen', None), ('zephyr', None), ('chatml-generation', None),
         ('llama3-instruct', None), ('gemma-it', None)]

def main():
  model = sys.argv[1]
  out_path = sys.argv[2] if len(sys.argv) > 2 else os.path.join(FIX, 'parity.json')
  out = []
  for name, template_name in CASES:
    d = tempfile.mkdtemp()
    try:
      shutil.copy(model, os.path.join(d, 'tokenizer.model'))
      shutil.copy(os.path.join(FIX, name, 'tokenizer_config.json'), d)
      tok = LlamaTokenizer.from_pretrained(d, legacy=False)
    finally:
      shutil.rmtree(d)
    kw = {'chat_template': template_name} if template_name else {}
    for conv in CONVS + [BAD]:
      gen = conv[-1]['role'] == 'user'
      row = {'config': name, 'template': template_name, 'messages': conv, 'add_generation_prompt': gen}
      try:
        text = tok.apply_chat_template(conv, tokenize=False, add_generation_prompt=gen, **kw)
      except Exception as e:  # jinja2 TemplateError from raise_exception
        row['error'] = str(e)
        out.append(row)
        continue
      ids = list(tok(text, add_special_tokens=False)['input_ids'])
      d2 = tok.apply_chat_template(conv, tokenize=True, add_generation_prompt=gen, return_dict=True,
                                   return_assistant_tokens_mask=name == 'chatml-generation', **kw)
      assert list(d2['input_ids']) == ids, (name, conv)
      row.update(text=text, ids=ids)
      if name == 'chatml-generation':
        row['assistant_mask'] = list(d2['assistant_masks'])
      out.append(row)
  with open(out_path, 'w', encoding='utf-8') as f:
    json.dump(out, f, ensure_ascii=False, indent=1)
    f.write('\n')
  print(json.dumps({'ok': len(out)}))

main()
