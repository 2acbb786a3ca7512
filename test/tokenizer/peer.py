#!/usr/bin/env python3
"""The Python peers of the tokenizer tests (sentencepiece, spm_train, transformers) in one process
per test file: PythonPeer in corpus.ts starts `peer.py serve` once and sends requests as JSON
lines on stdin; each gets one JSON line on stdout. Imports are paid once, transformers' only by
the request that needs it.

  {"op": "encode", "model": PATH, "items": [{"text": str} | {"hex": str}, ...]} -> [[ids], ...]
      (lone surrogates in a text become U+FFFD first, as TextEncoder does)
  {"op": "decode", "model": PATH, "seqs": [[ids], ...]} -> [str, ...]
  {"op": "train", "input": PATH, "prefix": PATH, "options": {spm_train options}} -> {"seconds": s}
      spm_train in this process; the model is written to PREFIX.model
  {"op": "hf", "model": SPM_PATH, "texts": [str, ...], "peers": [ARG, ...]} ->
      {"sentencepiece": [[ids]...], ARG: [[ids]...], ARG + ":bos": [ids of texts[0]],
       ARG + ":decode": [text of the first 200 sentencepiece encodings], ...}
      ARG: a tokenizer.json (PreTrainedTokenizerFast(tokenizer_file=...)), a folder
      (PreTrainedTokenizerFast.from_pretrained, the class AutoTokenizer picks for it in
      transformers 5), or "convert": transformers' own conversion of SPM_MODEL. With
      "auto": true, AutoTokenizer loads each folder too and must give the same ids (it imports
      torch and the generation stack: ~7 s more).
Errors answer {"error": message}.
"""
import json
import os
import re
import shutil
import sys
import tempfile
import time

SURROGATE = re.compile('[\ud800-\udfff]')


def well_formed(text):
    # A JS string's UTF-8 as TextEncoder makes it: surrogate pairs joined, lone surrogates U+FFFD.
    if not SURROGATE.search(text):
        return text
    return text.encode('utf-16-le', 'surrogatepass').decode('utf-16-le', 'replace')


def processor(path):
    import sentencepiece as spm
    return spm.SentencePieceProcessor(model_file=path)


def encode(req):
    sp = processor(req['model'])
    return [sp.encode(bytes.fromhex(i['hex'])) if 'hex' in i else sp.encode(well_formed(i['text'])) for i in req['items']]


def decode(req):
    sp = processor(req['model'])
    return [sp.decode(ids) for ids in req['seqs']]


def train(req):
    import sentencepiece as spm
    t = time.perf_counter()
    spm.SentencePieceTrainer.train(input=req['input'], model_prefix=req['prefix'], minloglevel=2, **req['options'])
    return {'seconds': time.perf_counter() - t}


def hf(req):
    from transformers import PreTrainedTokenizerFast
    texts = [well_formed(t) for t in req['texts']]
    out = {'sentencepiece': processor(req['model']).encode(texts)}
    for arg in req['peers']:
        if arg == 'convert':
            folder = tempfile.mkdtemp()
            shutil.copy(req['model'], os.path.join(folder, 'tokenizer.model'))
            tok = PreTrainedTokenizerFast.from_pretrained(folder)
            shutil.rmtree(folder)
        elif arg.endswith('.json'):
            tok = PreTrainedTokenizerFast(tokenizer_file=arg)
        else:
            tok = PreTrainedTokenizerFast.from_pretrained(arg)
        ids = tok(texts, add_special_tokens=False)['input_ids']
        out[arg] = ids
        out[arg + ':bos'] = tok(texts[0])['input_ids'] if texts else []
        out[arg + ':decode'] = tok.batch_decode(out['sentencepiece'][:200], skip_special_tokens=True)
        if req.get('auto') and not arg.endswith('.json') and arg != 'convert':
            from transformers import AutoTokenizer
            auto = AutoTokenizer.from_pretrained(arg)
            if type(auto) is not type(tok) or auto(texts, add_special_tokens=False)['input_ids'] != ids:
                raise RuntimeError(f'AutoTokenizer differs from PreTrainedTokenizerFast on {arg}')
    return out


OPS = {'encode': encode, 'decode': decode, 'train': train, 'hf': hf}


def serve():
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            req = json.loads(line)
            reply = OPS[req['op']](req)
        except Exception as e:  # answered, so the test fails with the message instead of hanging
            reply = {'error': f'{type(e).__name__}: {e}'}
        sys.stdout.write(json.dumps(reply, separators=(',', ':')) + '\n')
        sys.stdout.flush()


if __name__ == '__main__':
    if sys.argv[1:] != ['serve']:
        sys.exit(__doc__)
    serve()
