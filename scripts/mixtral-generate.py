#!/usr/bin/env python3
"""Hugging Face transformers' MixtralForCausalLM generate() as the reference for our SMoE engine
and its GGUF export.

    python scripts/mixtral-generate.py MODEL_DIR PROMPTS_JSON [--new 24]
        Loads MODEL_DIR (a MixtralForCausalLM safetensors folder) in f32 and prints one JSON line
        {"outputs": [[ids...], ...], "minGap": g, "routerGap": r}: greedy generate() (with its KV
        cache) of --new tokens after each prompt, EOS ignored, as scripts/infer-reference.py
        does for LLaMA. minGap is the smallest top-1/top-2 logit gap of any chosen token;
        routerGap the smallest gap between the k-th and (k+1)-th router logit of any token in
        any layer (logits, not probabilities: two probabilities both near 0 differ by little
        however clear the choice): a near tie there would let float rounding pick another expert, so a
        test compares token for token only where both are clear.
"""
import argparse
import importlib.util
import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch
from transformers import MixtralForCausalLM
from transformers.models.mixtral.modeling_mixtral import MixtralTopKRouter

_spec = importlib.util.spec_from_file_location("infer_reference", os.path.join(os.path.dirname(os.path.abspath(__file__)), "infer-reference.py"))
infer_reference = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(infer_reference)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("prompts")
    ap.add_argument("--new", type=int, default=24)
    a = ap.parse_args()
    model = MixtralForCausalLM.from_pretrained(a.model_dir, dtype=torch.float32).eval()
    k = model.config.num_experts_per_tok
    router_gap = [float("inf")]

    def watch(_module, _inputs, out):
        logits = out[0].float()  # the top-k by probability is the top-k by logit
        top = torch.topk(logits, min(k + 1, logits.shape[-1]), dim=-1).values
        if top.shape[-1] > k:
            router_gap[0] = min(router_gap[0], float((top[..., k - 1] - top[..., k]).min()))

    for m in model.modules():
        if isinstance(m, MixtralTopKRouter):
            m.register_forward_hook(watch)
    with open(a.prompts) as fh:
        prompts = json.load(fh)
    outputs, gap = infer_reference.greedy(model, prompts, a.new)
    print(json.dumps({"outputs": outputs, "minGap": gap, "routerGap": router_gap[0]}))


if __name__ == "__main__":
    main()
