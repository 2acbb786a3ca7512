#!/usr/bin/env python3
"""Hugging Face transformers' generate() as the reference for our inference engine.

    python scripts/infer-reference.py fixture [--out test/fixtures]
        Makes a small random LLaMA with transformers (2 layers, dim 32, 4 heads, 2 kv heads,
        vocab 256, init std 0.3 so that greedy choices are clear-cut), saves it as an f32
        safetensors folder (OUT/infer-tiny-f32) and greedy continuations of 64 tokens of a few
        prompts (OUT/infer-tiny-golden.json), with the smallest top-1/top-2 logit gap seen.

    python scripts/infer-reference.py generate MODEL_DIR PROMPTS_JSON [MODEL_DIR PROMPTS_JSON ...] [--new 64]
        Loads each MODEL_DIR in f32 and prints one JSON line {"results": [{"outputs": [[ids...], ...],
        "minGap": g}, ...]}: greedy generate() (with its KV cache) of --new tokens after each prompt,
        EOS ignored. Several folders in one call share one interpreter start.
"""
import argparse
import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch
from transformers import LlamaConfig, LlamaForCausalLM

PROMPTS = [
    [1, 17, 200, 45, 3],
    [1] + [(i * 37 + 11) % 256 for i in range(40)],
    [1, 250],
    [(i * 13 + 5) % 256 for i in range(100)],
]


def greedy(model, prompts, new):
    outputs, min_gap = [], float("inf")
    for p in prompts:
        ids = torch.tensor([p], dtype=torch.long)
        with torch.no_grad():
            # An explicit mask: with pad_token_id set, generate() would otherwise mask every 0 in the prompt.
            r = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new, min_new_tokens=new, do_sample=False, eos_token_id=None,
                               pad_token_id=0, output_scores=True, return_dict_in_generate=True)
        for s in r.scores:
            top = torch.topk(s[0].float(), 2).values
            min_gap = min(min_gap, float(top[0] - top[1]))
        outputs.append(r.sequences[0, len(p):].tolist())
    return outputs, min_gap


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fixture")
    f.add_argument("--out", default="test/fixtures")
    g = sub.add_parser("generate")
    g.add_argument("pairs", nargs="+")
    g.add_argument("--new", type=int, default=64)
    a = ap.parse_args()
    if a.cmd == "fixture":
        torch.manual_seed(0)
        cfg = LlamaConfig(vocab_size=256, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                          rms_norm_eps=1e-5, rope_theta=10000.0, initializer_range=0.3, tie_word_embeddings=False,
                          bos_token_id=1, eos_token_id=2)
        model = LlamaForCausalLM(cfg).float().eval()
        d = os.path.join(a.out, "infer-tiny-f32")
        model.save_pretrained(d, safe_serialization=True)
        model = LlamaForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
        outputs, gap = greedy(model, PROMPTS, 64)
        import transformers
        with open(os.path.join(a.out, "infer-tiny-golden.json"), "w") as fh:
            json.dump({"transformers": transformers.__version__, "torch": torch.__version__, "prompts": PROMPTS,
                       "outputs": outputs, "minGap": gap}, fh)
        print(f"min top-1/top-2 gap {gap:.4g}")
    else:
        results = []
        for model_dir, prompts_file in zip(a.pairs[::2], a.pairs[1::2]):
            model = LlamaForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
            with open(prompts_file) as fh:
                prompts = json.load(fh)
            outputs, gap = greedy(model, prompts, a.new)
            results.append({"outputs": outputs, "minGap": gap})
        print(json.dumps({"results": results}))


if __name__ == "__main__":
    main()
