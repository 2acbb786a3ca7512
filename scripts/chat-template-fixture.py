# Makes test/tokenizer/fixtures/chat-llama2.json: the token ids transformers' LLaMA-2 chat
# template gives (apply_chat_template, tokenize=True) for a few conversations, with the template
# of meta-llama/Llama-2-7b-chat-hf written out here (the shared data holds only tokenizer.model).
# Run: PYTHON scripts/chat-template-fixture.py PATH/TO/llama2/tokenizer.model
import json, os, sys
from transformers import LlamaTokenizer
TEMPLATE = ("{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}"
  "{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}"
  "{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
  "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
  "{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
  "{% else %}{% set content = message['content'] %}{% endif %}"
  "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
  "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}")
tok = LlamaTokenizer.from_pretrained(os.path.dirname(sys.argv[1]), legacy=False)
tok.chat_template = TEMPLATE
convs = [
  [{'role': 'user', 'content': 'What is a patent claim?'}],
  [{'role': 'system', 'content': 'You are PatentGPT, an assistant for intellectual property.'},
   {'role': 'user', 'content': '什么是发明专利？'},
   {'role': 'assistant', 'content': '发明专利是对产品、方法或者其改进所提出的新的技术方案。'},
   {'role': 'user', 'content': 'And in English?  '}],
  [{'role': 'user', 'content': 'Summarize claim 1.\nIt recites a device.'},
   {'role': 'assistant', 'content': 'A device with a sensor.'}],
]
out = [{'messages': c, 'text': tok.apply_chat_template(c, tokenize=False), 'ids': list(tok.apply_chat_template(c, tokenize=True, return_dict=True)['input_ids'])} for c in convs]
with open(os.path.join(os.path.dirname(__file__), '..', 'test', 'tokenizer', 'fixtures', 'chat-llama2.json'), 'w', encoding='utf-8') as f:
  json.dump(out, f, ensure_ascii=False, indent=1)
print('ok', [len(o['ids']) for o in out])
