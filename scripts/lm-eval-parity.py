#!/usr/bin/env python3
"""lm-evaluation-harness as the reference for our multiple-choice scorer (test/eval/lm-eval-parity.test.ts).

    python scripts/lm-eval-parity.py fixture [--out test/eval/fixtures]
        Makes OUT/lm-eval-tiny/: a tiny random LLaMA saved by transformers (bf16 safetensors) with a
        600-piece SentencePiece BPE tokenizer (tokenizer.model, trained here on US claims with byte
        fallback) that transformers' LlamaTokenizer reads; OUT/lm-eval-task.jsonl: 16 four-choice
        questions (some Chinese choices, so character and byte lengths differ); and
        OUT/lm-eval-ppl.jsonl: 6 documents (US claims longer than the 256-token context, so they
        take several windows, and short Chinese ones); OUT/lm-eval-golden.json: what `run` writes.

    python scripts/lm-eval-parity.py run MODEL_DIR TASK_JSONL PPL_JSONL OUT_JSON
        Scores TASK_JSONL ({question, choices, answer: index}) with lm-eval's HFLM on MODEL_DIR
        (f32, CPU, batch size 8, zero-shot, the tokenizer's own BOS default) as two tasks: "cloze"
        (doc_to_text "Question: {{question}}\\nAnswer:", the choice texts as continuations) and
        "letters" (the options listed as "A. text" lines, the letters as continuations). Writes, per
        request, the context and continuation strings lm-eval built, the token ids of its
        _encode_pair and its log-likelihood; per document acc and acc_norm; and the task means.
        Then PPL_JSONL ({text}) as a loglikelihood_rolling task (perplexity): per document the
        log-likelihood, and bits_per_byte. Here HFLM runs with add_bos_token=False: with a BOS
        adding tokenizer, lm-eval 0.4.13 would put BOS in the token list as well as in front of
        the first window, scoring log p(BOS | BOS) as if BOS were part of the document.

Offline: HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 (the task is a local JSON file).
"""
import argparse
import json
import os
import shutil
import sys
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

HERE = os.path.dirname(os.path.abspath(__file__))
CLAIMS = os.path.join(HERE, "..", "..", "shared", "data", "us-claims-ipstreet", "single_claim.tsv")

QUESTIONS = [
    ("Which office examines US patent applications?", ["the USPTO", "the EPO", "the court", "the police"], 0),
    ("How long is the term of a US utility patent?", ["ten years", "twenty years from filing", "fifty years", "life of the inventor"], 1),
    ("What must an invention be to be patented?", ["popular", "cheap", "novel and non-obvious", "written in English"], 2),
    ("Which part of a patent defines the scope of protection?", ["the abstract", "the drawings", "the title", "the claims"], 3),
    ("A claim that refers to another claim is a", ["dependent claim", "independent claim", "design claim", "trade mark"], 0),
    ("Prior art includes", ["only granted patents", "any public disclosure before the filing date", "secret notes", "future papers"], 1),
    ("Who may file a patent application?", ["anyone at all", "only lawyers", "the inventor or an assignee", "the examiner"], 2),
    ("中国专利法规定发明专利权的期限为", ["十年", "十五年", "五十年", "二十年"], 3),
    ("实用新型专利的保护期限是", ["十年", "二十年", "三十年", "五年"], 0),
    ("Which right protects a brand name?", ["patent", "trademark", "copyright", "trade secret"], 1),
    ("A provisional application lasts", ["six months", "five years", "twelve months", "forever"], 2),
    ("The person skilled in the art judges", ["novelty of trademarks", "court fees", "the filing date", "obviousness"], 3),
    ("专利申请应当向哪个部门提交", ["国家知识产权局", "法院", "公安局", "税务局"], 0),
    ("An office action is sent by", ["the applicant", "the examiner", "the public", "the court clerk"], 1),
    ("Claim 1. A device comprising a housing; what is the preamble?", ["comprising", "a housing", "A device", "Claim 1."], 2),
    ("Which document lists the inventors?", ["the invoice", "the drawings", "the abstract", "the declaration"], 3),
]

LETTERS = "ABCDEFGHIJ"

TASK_YAML = """task: {name}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: {text}
doc_to_choice: {choice}
doc_to_target: answer
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
"""


PPL_YAML = """task: pgpt_ppl
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: loglikelihood_rolling
doc_to_text: ""
doc_to_target: "{{{{text}}}}"
metric_list:
  - metric: bits_per_byte
    aggregation: bits_per_byte
    higher_is_better: false
"""


def run(model_dir, task_file, ppl_file, out_file):
    import lm_eval
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    styles = {
        "cloze": ('"Question: {{question}}\\nAnswer:"', "choices"),
        "letters": (
            json.dumps("{{question}}\n{% for c in choices %}{{ '" + LETTERS + "'[loop.index0] }}. {{c}}\n{% endfor %}Answer:"),
            json.dumps(list("ABCD")),
        ),
    }
    lm = HFLM(pretrained=model_dir, dtype="float32", device="cpu", batch_size=8)
    out = {"lm_eval": lm_eval.__version__ if hasattr(lm_eval, "__version__") else "", "tasks": {}}
    with tempfile.TemporaryDirectory() as d:
        for style, (text, choice) in styles.items():
            with open(os.path.join(d, f"pgpt_{style}.yaml"), "w") as f:
                f.write(TASK_YAML.format(name=f"pgpt_{style}", data=os.path.abspath(task_file), text=text, choice=choice))
        res = simple_evaluate(model=lm, tasks=[f"pgpt_{s}" for s in styles], task_manager=TaskManager(include_path=d),
                              num_fewshot=0, log_samples=True, random_seed=0, numpy_random_seed=0, torch_random_seed=0)
    for style in styles:
        name = f"pgpt_{style}"
        samples = sorted(res["samples"][name], key=lambda s: s["doc_id"])
        docs = []
        for s in samples:
            reqs = []
            for (ctx, cont), resp in zip(s["arguments"], s["filtered_resps"]):
                ctx_ids, cont_ids = lm._encode_pair(ctx, cont)
                reqs.append({"context": ctx, "continuation": cont, "contextIds": ctx_ids, "continuationIds": cont_ids,
                             "loglik": float(resp[0])})
            docs.append({"docId": s["doc_id"], "requests": reqs, "acc": float(s["acc"]), "acc_norm": float(s["acc_norm"])})
        metrics = res["results"][name]
        out["tasks"][style] = {"acc": metrics["acc,none"], "acc_norm": metrics["acc_norm,none"], "docs": docs}
    lm.add_bos_token = False  # what HFLM(add_bos_token=False) sets; tok_encode reads it per call
    lm_nobos = lm
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "pgpt_ppl.yaml"), "w") as f:
            f.write(PPL_YAML.format(data=os.path.abspath(ppl_file)))
        res = simple_evaluate(model=lm_nobos, tasks=["pgpt_ppl"], task_manager=TaskManager(include_path=d), log_samples=True)
    samples = sorted(res["samples"]["pgpt_ppl"], key=lambda s: s["doc_id"])
    out["perplexity"] = {
        "max_length": lm_nobos.max_length, "bits_per_byte": res["results"]["pgpt_ppl"]["bits_per_byte,none"],
        "docs": [{"docId": s["doc_id"], "tokens": len(lm_nobos.tok_encode(s["target"])), "loglik": float(s["filtered_resps"][0])} for s in samples],
    }
    with open(out_file, "w") as f:
        json.dump(out, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")


def fixture(out_dir):
    import sentencepiece as spm
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    model_dir = os.path.join(out_dir, "lm-eval-tiny")
    os.makedirs(model_dir, exist_ok=True)
    with tempfile.TemporaryDirectory() as d:
        corpus = os.path.join(d, "claims.txt")
        with open(CLAIMS, encoding="utf-8") as f, open(corpus, "w", encoding="utf-8") as g:
            g.write("\n".join(line.split("\t", 1)[-1] for line in f.read().splitlines()[:300]))
        spm.SentencePieceTrainer.train(
            input=corpus, model_prefix=os.path.join(d, "m"), model_type="bpe", vocab_size=600, byte_fallback=True,
            normalization_rule_name="identity", remove_extra_whitespaces=False, add_dummy_prefix=True,
            character_coverage=1.0, input_sentence_size=0, shuffle_input_sentence=False, num_threads=1, minloglevel=2)
        shutil.copy(os.path.join(d, "m.model"), os.path.join(model_dir, "tokenizer.model"))
    with open(os.path.join(model_dir, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "LlamaTokenizer", "add_bos_token": True, "add_eos_token": False,
                   "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}, f, indent=1)
    torch.manual_seed(7)
    # A larger init scale than training's 0.02, so the options' log-likelihoods are far apart.
    cfg = LlamaConfig(vocab_size=600, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=256, rms_norm_eps=1e-5, rope_theta=10000.0,
                      initializer_range=0.2, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2)
    # bf16 on disk (half the size); lm-eval and our loader both read it back as f32, exactly.
    model = LlamaForCausalLM(cfg).to(torch.bfloat16)
    model.save_pretrained(model_dir, safe_serialization=True)
    task = os.path.join(out_dir, "lm-eval-task.jsonl")
    with open(task, "w", encoding="utf-8") as f:
        for q, choices, answer in QUESTIONS:
            f.write(json.dumps({"question": q, "choices": choices, "answer": answer}, ensure_ascii=False) + "\n")
    ppl = os.path.join(out_dir, "lm-eval-ppl.jsonl")
    with open(CLAIMS, encoding="utf-8") as f, open(ppl, "w", encoding="utf-8") as g:
        claims = [line.split("\t", 1)[-1] for line in f.read().splitlines()[300:304]]
        texts = [(c, "claims") for c in claims] + [(q, "exam") for q, _, _ in QUESTIONS[7:9]]
        for t, cat in texts:
            g.write(json.dumps({"text": t, "category": cat}, ensure_ascii=False) + "\n")
    run(model_dir, task, ppl, os.path.join(out_dir, "lm-eval-golden.json"))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fixture")
    f.add_argument("--out", default=os.path.join(HERE, "..", "test", "eval", "fixtures"))
    r = sub.add_parser("run")
    r.add_argument("model_dir")
    r.add_argument("task_file")
    r.add_argument("ppl_file")
    r.add_argument("out_json")
    a = p.parse_args()
    if a.cmd == "fixture":
        fixture(a.out)
    else:
        run(a.model_dir, a.task_file, a.ppl_file, a.out_json)


if __name__ == "__main__":
    sys.exit(main())
