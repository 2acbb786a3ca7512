# Makes test/tokenizer/fixtures/bpe-train-{corpus.txt,spm.json}: a small synthetic corpus
# (English and Chinese IP phrases, digits, punctuation, mixed scripts, repeated characters) and
# the pieces spm_train (BPE, identity normalizer, byte fallback) learns from it, for
# test/tokenizer/train.test.ts. Run: PYTHON scripts/bpe-train-fixture.py
import json, os, random, tempfile
import sentencepiece as spm

here = os.path.join(os.path.dirname(__file__), '..', 'test', 'tokenizer', 'fixtures')
rnd = random.Random(7)
en = ['patent', 'claim', 'claims', 'method', 'device', 'apparatus', 'wherein', 'comprising', 'the', 'a', 'of',
      'said', 'first', 'second', 'layer', 'signal', 'processing', 'unit', 'invention', 'embodiment', 'US', 'IPC',
      'H04L', 'G06F', '2024', '10', '3.5', 'e.g.,', '(1)', 'aaa', 'aaaa', '----', 'naïve', 'café']
zh = ['专利', '权利要求', '发明', '实施例', '装置', '方法', '所述', '包括', '第一', '第二', '信号', '处理',
      '单元', '知识产权', '中华人民共和国', '专利法', '第十条', '、', '，', '。', '（', '）', 'ひらがな', 'カタカナ']
lines = []
for i in range(1500):
    words = [rnd.choice(en if rnd.random() < 0.6 else zh) for _ in range(rnd.randint(1, 12))]
    sep = '' if all(w in zh for w in words) else ' '
    lines.append(sep.join(words))
lines += ['  leading spaces', 'trailing  ', 'tab\tinside', 'x' * 40, '1234567890 0987654321', 'ₐ rare ☃ chars ✓']
with open(os.path.join(here, 'bpe-train-corpus.txt'), 'w', encoding='utf-8') as f:
    f.write('\n'.join(lines) + '\n')
with tempfile.TemporaryDirectory() as d:
    spm.SentencePieceTrainer.train(
        input=os.path.join(here, 'bpe-train-corpus.txt'), model_prefix=os.path.join(d, 'm'), model_type='bpe',
        vocab_size=600, character_coverage=0.9995, byte_fallback=True, normalization_rule_name='identity',
        remove_extra_whitespaces=False, add_dummy_prefix=True, input_sentence_size=0, shuffle_input_sentence=False,
        pad_id=-1, num_threads=1, minloglevel=2)
    sp = spm.SentencePieceProcessor(model_file=os.path.join(d, 'm.model'))
    pieces = [[sp.id_to_piece(i), sp.get_score(i)] for i in range(sp.get_piece_size())]
    held = ['所述装置包括第一单元', 'the method of claim 10, wherein said signal', 'café naïve ☃ 2024']
    enc = [sp.encode(t) for t in held]
with open(os.path.join(here, 'bpe-train-spm.json'), 'w', encoding='utf-8') as f:
    json.dump({'vocabSize': 600, 'pieces': pieces, 'heldOut': held, 'ids': enc}, f, ensure_ascii=False)
print('pieces', len(pieces))
