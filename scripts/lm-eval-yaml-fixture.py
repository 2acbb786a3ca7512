#!/usr/bin/env python3
"""lm-evaluation-harness task YAMLs over local data as the reference for ours (test/eval/lm-eval-yaml.test.ts).

    python scripts/lm-eval-yaml-fixture.py fixture [--out test/eval/fixtures/lm-eval-yaml]
        Writes OUT/pae-zh.jsonl and OUT/pae-zh.csv: the 12 shortest single-answer questions of the
        China patent agent exam (../shared/data/cn-patent-agent-exam/mcq_sing_pae.csv), as JSON
        Lines ({question, choices, answer: index, source}) and in the exam's own CSV layout; two
        task YAMLs over them in the Chinese exam's prompt format:
          pae-zh-cloze.yaml    dataset_path json, doc_to_text "问题：{{question}}\\n答案：",
                               doc_to_choice "{{choices}}" (a rendered list), doc_to_target
                               "{{answer}}" (rendered digits: an index), target_delimiter "".
          pae-zh-letters.yaml  dataset_path csv (a bare data_files path: the split "train"), the
                               options listed as "A. text" lines, doc_to_choice a YAML list of
                               letters, doc_to_target the column "output" (a choice's text), a
                               description rendered per row from the "source" column.
        and OUT/golden.json: what `run` writes for them on test/eval/fixtures/lm-eval-tiny.

    python scripts/lm-eval-yaml-fixture.py run YAML_DIR MODEL_DIR OUT_JSON
        Runs lm-eval's HFLM (f32, CPU, zero-shot, the tokenizer's own BOS default) on every
        *.yaml of YAML_DIR (data paths relative to YAML_DIR, as our reader takes them) and writes
        per task its acc and acc_norm, and per document the context and continuation of every
        request, its log-likelihood, and the document's acc and acc_norm.

Offline: HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1.
"""
import argparse
import csv
import glob
import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

HERE = os.path.dirname(os.path.abspath(__file__))
PAE = os.path.join(HERE, "..", "..", "shared", "data", "cn-patent-agent-exam", "mcq_sing_pae.csv")
MODEL = os.path.join(HERE, "..", "test", "eval", "fixtures", "lm-eval-tiny")

CLOZE_YAML = """task: pae_zh_cloze
dataset_path: json
dataset_kwargs:
  data_files:
    test: pae-zh.jsonl
test_split: test
output_type: multiple_choice
doc_to_text: "问题：{{question}}\\n答案："
doc_to_choice: "{{choices}}"
doc_to_target: "{{answer}}"
target_delimiter: ""
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""

LETTERS_YAML = """task: pae_zh_letters
dataset_path: csv
dataset_kwargs:
  data_files: pae-zh.csv
test_split: train
output_type: multiple_choice
description: "以下是专利代理师资格考试的单项选择题（{{source}}）。\\n\\n"
doc_to_text: "{{input}}\\nA. {{A}}\\nB. {{B}}\\nC. {{C}}\\nD. {{D}}\\n答案："
doc_to_choice: ["A", "B", "C", "D"]
doc_to_target: output
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
"""


def run(yaml_dir, model_dir, out_file):
    import lm_eval
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    yaml_dir = os.path.abspath(yaml_dir)
    out_file = os.path.abspath(out_file)
    lm = HFLM(pretrained=os.path.abspath(model_dir), dtype="float32", device="cpu", batch_size=8)
    names = []
    for path in sorted(glob.glob(os.path.join(yaml_dir, "*.yaml"))):
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.startswith("task:"):
                    names.append(line.split(":", 1)[1].strip())
    cwd = os.getcwd()
    os.chdir(yaml_dir)  # datasets reads relative data_files from the working folder
    try:
        res = simple_evaluate(model=lm, tasks=names, task_manager=TaskManager(include_path=yaml_dir), num_fewshot=0, log_samples=True,
                              random_seed=0, numpy_random_seed=0, torch_random_seed=0)
    finally:
        os.chdir(cwd)
    out = {"lm_eval": getattr(lm_eval, "__version__", ""), "tasks": {}}
    for name in names:
        docs = []
        for s in sorted(res["samples"][name], key=lambda s: s["doc_id"]):
            reqs = [{"context": ctx, "continuation": cont, "loglik": float(resp[0])}
                    for (ctx, cont), resp in zip(s["arguments"], s["filtered_resps"])]
            docs.append({"docId": s["doc_id"], "requests": reqs, "acc": float(s["acc"]), "acc_norm": float(s["acc_norm"])})
        metrics = res["results"][name]
        out["tasks"][name] = {"acc": metrics["acc,none"], "acc_norm": metrics["acc_norm,none"], "docs": docs}
    with open(out_file, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")


def fixture(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    with open(PAE, encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["output"].strip() in ("A", "B", "C", "D")]
    rows.sort(key=lambda r: (len(r["input"]) + sum(len(r[k]) for k in "ABCD"), r["input"]))
    rows = rows[:12]
    with open(os.path.join(out_dir, "pae-zh.jsonl"), "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps({"question": r["input"], "choices": [r[k] for k in "ABCD"], "answer": "ABCD".index(r["output"].strip()),
                                "source": r["source"]}, ensure_ascii=False) + "\n")
    with open(os.path.join(out_dir, "pae-zh.csv"), "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["input", "output", "A", "B", "C", "D", "source", "multichoice"])
        for r in rows:
            w.writerow([r["input"], r["output"].strip(), r["A"], r["B"], r["C"], r["D"], r["source"], r["multichoice"]])
    with open(os.path.join(out_dir, "pae-zh-cloze.yaml"), "w", encoding="utf-8") as f:
        f.write(CLOZE_YAML)
    with open(os.path.join(out_dir, "pae-zh-letters.yaml"), "w", encoding="utf-8") as f:
        f.write(LETTERS_YAML)
    run(out_dir, MODEL, os.path.join(out_dir, "golden.json"))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fixture")
    f.add_argument("--out", default=os.path.join(HERE, "..", "test", "eval", "fixtures", "lm-eval-yaml"))
    r = sub.add_parser("run")
    r.add_argument("yaml_dir")
    r.add_argument("model_dir")
    r.add_argument("out_json")
    a = p.parse_args()
    if a.cmd == "fixture":
        fixture(a.out)
    else:
        run(a.yaml_dir, a.model_dir, a.out_json)


if __name__ == "__main__":
    sys.exit(main())
