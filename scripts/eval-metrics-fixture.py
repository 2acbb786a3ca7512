#!/usr/bin/env python3
"""Reference values for the generation metrics and Pearson's r (test/eval/metrics.test.ts).

    python scripts/eval-metrics-fixture.py [--out test/eval/fixtures/metrics-golden.json]

Cases: English and Chinese hypothesis/reference pairs (punctuation, numbers, hyphens, curly quotes,
HTML entities, empty strings, several references). References computed by:
  - sacrebleu (corpus_bleu, defaults: 13a, exp smoothing; and tokenize='zh'), and its tokenizers;
  - torchmetrics' rouge_score (rougeL, no stemmer, accumulate='best': rouge-score's semantics)
    on ASCII text (rouge-score drops non-ASCII characters; ours keeps them, tested separately);
  - torchmetrics' squad (the SQuAD v1.1 exact match and F1) on ASCII text;
  - scipy.stats.pearsonr, on real pairs of the phrase-matching data.
"""
import argparse
import json
import os

import sacrebleu
import scipy
import torchmetrics
from scipy.stats import pearsonr
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a
from sacrebleu.tokenizers.tokenizer_zh import TokenizerZh
from torchmetrics.functional.text import squad
from torchmetrics.functional.text.rouge import rouge_score

HERE = os.path.dirname(os.path.abspath(__file__))

EN = [
    ("A device comprising a housing and a lid.", ["A device comprising a housing, and a lid."]),
    ("The method of claim 1, wherein the layer is 3.5 mm thick.", ["The method of claim 1 wherein the layer is 3.5mm thick.", "A method as in claim 1."]),
    ("An apparatus for cutting paper", ["A system for processing signals using a neural network"]),
    ("", ["an empty prediction"]),
    ("Patent No. 10-2345 (granted) & pending; see U.S. Pat. Nos. 7,654,321", ["U.S. Pat. No. 7,654,321 & 10-2345 &amp; others"]),
    ("the the the the", ["the cat is on the mat"]),
    ("He said \u201cthe claims\u2019 scope\u201d is narrow\u2014very narrow.", ["He said the claims' scope is narrow - very narrow."]),
    ("Sensor-based foot presence detection in footwear with a controller circuit", ["A foot presence sensor system for an active article of footwear with a controller circuit"]),
    ("42", ["42", "forty-two"]),
    ("Claim 3 depends on claim 2 which depends on claim 1", ["claim 3 depends on claim 1"]),
]
ZH = [
    ("发明专利权的期限为二十年，自申请日起计算。", ["发明专利权的期限为二十年，实用新型专利权的期限为十年，均自申请日起计算。"]),
    ("专利申请应当向国务院专利行政部门提交", ["申请专利的，应当向国务院专利行政部门提交请求书"]),
    ("H01L 半导体器件", ["H01L — 半导体器件（基础材料）"]),
]
TOKENIZE = ["A device, comprising: a housing (1) and 2.5 parts-per-million; x-ray & \"quotes\" <tag>",
            "3-4 items, 1,000.50 dollars. End.", "curly \u2018quotes\u2019 and \u201cdouble\u201d \u2014 dash \u2026",
            "中文，混合 English 文本。", "line-\nbreak &quot;entity&quot; <skipped> done"]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", default=os.path.join(HERE, "..", "test", "eval", "fixtures", "metrics-golden.json"))
    a = p.parse_args()
    t13, tzh = Tokenizer13a(), TokenizerZh()

    def bleu(cases, tok):
        hyps = [h for h, _ in cases]
        nref = max(len(r) for _, r in cases)
        # sacrebleu takes reference streams; a missing reference is None.
        streams = [[r[i] if i < len(r) else None for _, r in cases] for i in range(nref)]
        b = sacrebleu.corpus_bleu(hyps, streams, tokenize=tok)
        return {"score": b.score, "precisions": b.precisions, "bp": b.bp, "sysLen": b.sys_len, "refLen": b.ref_len}

    out = {
        "versions": {"sacrebleu": sacrebleu.__version__, "torchmetrics": torchmetrics.__version__, "scipy": scipy.__version__},
        "tokenize": [{"text": s, "13a": t13(s), "zh": tzh(s)} for s in TOKENIZE],
        "bleu": {
            "en": {"cases": EN, **bleu(EN, "13a")},
            "zh": {"cases": ZH, **bleu(ZH, "zh")},
            "sentences": [{"case": c, **bleu([c], "13a")} for c in EN],
        },
        "rougeL": [],
        "squad": [],
    }
    for h, refs in EN:
        r = rouge_score([h], [refs], rouge_keys="rougeL", accumulate="best")
        out["rougeL"].append({"prediction": h, "references": refs, "f": float(r["rougeL_fmeasure"])})
        s = squad([{"prediction_text": h, "id": "x"}], [{"answers": {"answer_start": [0] * len(refs), "text": refs}, "id": "x"}])
        out["squad"].append({"prediction": h, "references": refs, "exact_match": float(s["exact_match"]) / 100, "f1": float(s["f1"]) / 100})
    rows = []
    with open(os.path.join(HERE, "..", "..", "shared", "data", "patent-phrase-matching", "train.csv"), encoding="utf-8") as f:
        next(f)
        for i, line in enumerate(f):
            if i >= 40:
                break
            rows.append(float(line.rstrip("\n").split(",")[-1]))
    x = [((i * 37) % 11) / 3.0 + s for i, s in enumerate(rows)]
    out["pearson"] = {"x": x, "y": rows, "r": float(pearsonr(x, rows)[0])}
    with open(a.out, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
