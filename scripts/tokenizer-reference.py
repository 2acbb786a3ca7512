#!/usr/bin/env python3
"""sentencepiece as the reference for src/tokenizer (see ../shared/PEERS.md).

  fixtures OUT.json [DATA]   sample lines of the shared data + an edge-case corpus, with the ids
                             sentencepiece gives them and decodes of id sequences; committed as
                             test/fixtures/tokenizer-llama2.json so `npm test` needs no Python.
  encode MODEL IN.json OUT.json
                             IN: [{"text": str} | {"hex": str}, ...] -> OUT: [[ids], ...]
                             (lone surrogates in a text become U+FFFD first, as TextEncoder does).
  decode MODEL IN.json OUT.json
                             IN: [[ids], ...] -> OUT: [str, ...]
  bench MODEL TEXT.json [IDS.json]
                             IN: [str, ...]; one thread; prints {"seconds", "tokens", "bytes"} of
                             the best of 3 passes, timed inside Python (start-up excluded); writes
                             the ids of each text to IDS.json when given.

Lines are split on '\\n' only (files are read as bytes, so '\\r' stays in the line as JS sees it).
"""
import json
import os
import random
import re
import sys
import time

import sentencepiece as spm

SURROGATE = re.compile('[\ud800-\udfff]')


def well_formed(text):
    # A JS string's UTF-8 as TextEncoder makes it: surrogate pairs joined, lone surrogates U+FFFD.
    if not SURROGATE.search(text):
        return text
    return text.encode('utf-16-le', 'surrogatepass').decode('utf-16-le', 'replace')


def encode_items(sp, items):
    out = []
    for item in items:
        if 'hex' in item:
            out.append(sp.encode(bytes.fromhex(item['hex'])))
        else:
            out.append(sp.encode(well_formed(item['text'])))
    return out


def text_files(data):
    skip = ('.model', '.gz', '.zip', '.ZIP')
    for root, dirs, files in os.walk(data):
        dirs.sort()
        for name in sorted(files):
            if name.endswith(skip):
                continue
            path = os.path.join(root, name)
            raw = open(path, 'rb').read()
            try:
                text = raw.decode('utf-8')
            except UnicodeDecodeError:
                continue
            yield os.path.relpath(path, data), text


def edge_cases():
    rng = random.Random(2404)
    cases = [
        '', ' ', '  ', '   ', ' ' * 17, ' ' * 40, 'a', ' a', 'a ', '  a  b   c    ', '\t', '\ta\tb\t\t',
        '\n', '\n\n', 'a\nb', ' \n ', '\r\n', 'line one\r\nline two\r\n', '\u3000', 'a\u3000b', '\u00a0a\u00a0',
        '▁', '▁▁', 'a▁b', ' ▁ ', '<s>', '</s>', '<unk>', '<0x0A>', '<s> hello </s>',
        '0', '12345', '3.14159', '1,000,000', '2024-04-29', 'US 2010/0123456 A1', 'CN112345678A', '第12345678号',
        'Hello, world!', "It's a claim: 1. A method comprising: (a) doing; (b) done.",
        '😀', '👍🏽', '👨‍👩‍👧‍👦', '🇨🇳🇺🇸', 'a😀b', '😀😀😀😀',
        'e\u0301', 'a\u0308\u0301\u0323', 'Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334\u0319', '\u1100\u1161\u11a8',
        '\ud800', 'a\ud800b', '\udc00', 'x\udfff', '\ud83d', '\ude00\ud83d', '\ud800\ud800', 'ab\ud83d\ude00cd\ud83d',
        '\ufeff', '\ufeffhello', '\ufffd', '\u0000', 'a\u0000b', '\u0001\u007f\u0080\u009f', '\u200b\u200c\u200d\u2060',
        '\U0010ffff', '\U000e0001', '\ue000\uf8ff',
        '专利法', '一种基于深度学习的专利分类方法，其特征在于：', '知识产权 intellectual property 특허 特許 патент براءة',
        'ＡＢＣ１２３', 'ﬁﬂ', 'Ⅻ', '①②③', 'Straße', 'İstanbul', 'ǅ', 'ﷺ', 'שלום עולם', 'مرحبا بالعالم', 'नमस्ते', 'สวัสดี',
        'supercalifragilisticexpialidocious' * 8, 'a' * 1000, 'ab' * 700, '的' * 300, '1' * 200, '.' * 100, '-' * 64,
        ' '.join(['word'] * 200), 'x' * 5000 + ' ' + 'y' * 5000,
    ]
    # Random strings over a mixed alphabet, lone surrogates included.
    alphabet = list('abcdefghijklmnopqrstuvwxyzABCDEF0123456789 \t\n.,;:!?()[]<>▁') + \
        list('的一是在不了有和人这中大为上个国我以要他') + ['é', 'ß', 'ж', 'λ', '😀', '\u0301', '\u3000', '\ufffd', '\ud800', '\udc00', '\x00']
    for _ in range(120):
        n = rng.choice([1, 2, 3, 5, 8, 13, 40, 120])
        cases.append(''.join(rng.choice(alphabet) for _ in range(n)))
    items = [{'text': c} for c in cases]
    # Bytes: invalid UTF-8 of every kind sentencepiece replaces byte by byte.
    hexes = ['ff', '80', 'c0af', 'e282', 'e28228', 'f09f98', 'eda080', 'edbfbf', 'f4908080', 'c3', 'e2', 'f0',
             '61ff62', '20e282', 'efbbbf61', 'efbfbd', 'e4b8ade696', 'c328a1', 'fe', 'f8888080', '00ff00']
    for _ in range(40):
        hexes.append(bytes(rng.randrange(256) for _ in range(rng.choice([1, 3, 7, 20]))).hex())
    items += [{'hex': h} for h in hexes]
    return items


def fixtures(out_path, data):
    model = os.path.join(data, 'tokenizers', 'llama2', 'tokenizer.model')
    sp = spm.SentencePieceProcessor(model_file=model)
    rng = random.Random(18255)
    items = []
    # A few lines of every text document (files of more than 8 lines give 2 lines, the rest 1).
    for rel, text in text_files(data):
        lines = [l for l in text.split('\n') if l.strip() and len(l) <= 1000]
        if not lines:
            continue
        for line in rng.sample(lines, min(len(lines), 2 if len(lines) > 8 else 1)):
            items.append({'src': rel, 'text': line})
    items += [dict(item, src='edge') for item in edge_cases()]
    for item, ids in zip(items, encode_items(sp, items)):
        item['ids'] = ids
    # Decodes of id sequences: random pieces (bytes, controls and unk among them) and encodings.
    decodes = []
    n = sp.get_piece_size()
    for k in range(150):
        length = rng.choice([1, 2, 3, 5, 10, 30])
        if k % 3 == 0:
            ids = [rng.randrange(0, 259) for _ in range(length)]  # unk, controls and bytes only
        elif k % 3 == 1:
            ids = [rng.randrange(n) for _ in range(length)]
        else:
            ids = [rng.choice([0, 1, 2, 29871, 259, rng.randrange(3, 259), rng.randrange(n)]) for _ in range(length)]
        decodes.append({'ids': ids, 'text': sp.decode(ids)})
    doc = json.dumps({'model': 'llama2/tokenizer.model', 'sentencepiece': spm.__version__, 'encodes': items,
                      'decodes': decodes}, ensure_ascii=False, separators=(',', ':'))
    # UTF-8 JSON, with the lone surrogates of the edge cases kept as \uXXXX escapes.
    doc = SURROGATE.sub(lambda m: '\\u%04x' % ord(m.group()), doc)
    open(out_path, 'w', encoding='utf-8').write(doc + '\n')
    print(f'{len(items)} encodes, {len(decodes)} decodes -> {out_path}')


def main():
    mode = sys.argv[1]
    if mode == 'fixtures':
        data = sys.argv[3] if len(sys.argv) > 3 else os.environ.get('PATENTGPT_DATA', '../shared/data')
        fixtures(sys.argv[2], data)
    elif mode == 'encode':
        sp = spm.SentencePieceProcessor(model_file=sys.argv[2])
        items = json.load(open(sys.argv[3], encoding='utf-8'))
        json.dump(encode_items(sp, items), open(sys.argv[4], 'w'), separators=(',', ':'))
    elif mode == 'decode':
        sp = spm.SentencePieceProcessor(model_file=sys.argv[2])
        seqs = json.load(open(sys.argv[3], encoding='utf-8'))
        json.dump([sp.decode(ids) for ids in seqs], open(sys.argv[4], 'w'), ensure_ascii=True)
    elif mode == 'bench':
        sp = spm.SentencePieceProcessor(model_file=sys.argv[2])
        texts = json.load(open(sys.argv[3], encoding='utf-8'))
        nbytes = sum(len(t.encode('utf-8')) for t in texts)
        best = None
        ids = []
        for _ in range(3):
            t0 = time.perf_counter()
            ids = [sp.encode(t) for t in texts]
            dt = time.perf_counter() - t0
            best = dt if best is None else min(best, dt)
        tokens = sum(len(x) for x in ids)
        if len(sys.argv) > 4:
            json.dump(ids, open(sys.argv[4], 'w'), separators=(',', ':'))
        print(json.dumps({'seconds': best, 'tokens': tokens, 'bytes': nbytes}))
    else:
        sys.exit(__doc__)


if __name__ == '__main__':
    main()
