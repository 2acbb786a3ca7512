#!/usr/bin/env python3
"""transformers and sentencepiece as the peers of the tokenizer.json export (src/tokenizer/hf.ts).

  encode SPM_MODEL TEXTS.json OUT.json TOKENIZER_DIR_OR_JSON...
      TEXTS: [str, ...] (lone surrogates become U+FFFD, as TextEncoder does).
      OUT: {"sentencepiece": [[ids]...], "<each arg>": [[ids]...], "<arg>:bos": [ids of texts[0]]}
      A .json argument loads with PreTrainedTokenizerFast(tokenizer_file=...); a folder with
      AutoTokenizer.from_pretrained; the word "convert" converts SPM_MODEL the way transformers
      itself does (AutoTokenizer on a folder holding only the tokenizer.model).
"""
import json
import os
import re
import shutil
import sys
import tempfile

SURROGATE = re.compile('[\ud800-\udfff]')


def well_formed(text):
    if not SURROGATE.search(text):
        return text
    return text.encode('utf-16-le', 'surrogatepass').decode('utf-16-le', 'replace')


def load(arg, spm_model):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast
    if arg == 'convert':
        tmp = tempfile.mkdtemp()
        shutil.copy(spm_model, os.path.join(tmp, 'tokenizer.model'))
        return AutoTokenizer.from_pretrained(tmp)
    if arg.endswith('.json'):
        return PreTrainedTokenizerFast(tokenizer_file=arg)
    return AutoTokenizer.from_pretrained(arg)


def main():
    cmd, spm_model, texts_path, out_path = sys.argv[1:5]
    assert cmd == 'encode'
    import sentencepiece as spm
    texts = [well_formed(t) for t in json.load(open(texts_path, encoding='utf-8'))]
    sp = spm.SentencePieceProcessor(model_file=spm_model)
    out = {'sentencepiece': [sp.encode(t) for t in texts]}
    for arg in sys.argv[5:]:
        tok = load(arg, spm_model)
        out[arg] = [tok.encode(t, add_special_tokens=False) for t in texts]
        out[arg + ':bos'] = tok.encode(texts[0]) if texts else []
        out[arg + ':decode'] = [tok.decode(ids, skip_special_tokens=True) for ids in out['sentencepiece'][:200]]
    with open(out_path, 'w', encoding='utf-8') as f:
        json.dump(out, f)


if __name__ == '__main__':
    main()
