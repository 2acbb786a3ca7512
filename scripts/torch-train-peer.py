#!/usr/bin/env python3
"""The torch side of the training benches: transformers' LlamaForCausalLM (`npm run bench -- train`)
or MixtralForCausalLM (`npm run bench -- moe` part 2) + torch AdamW.

    python scripts/torch-train-peer.py llama|mixtral THREADS [ATTN]

One process; it reads JSON requests line by line on stdin and answers one JSON line each:
    {"cmd": "init", "config": <our toHFConfig(cfg)>, "B": B, "T": T, "tokens": [B*T ids]}
    {"cmd": "step"}   one training step, timed: forward + loss (mixtral: with the load-balancing
                      loss, output_router_logits on, as our loss has it), backward, clip 1.0, AdamW;
                      with "autocast": true the forward runs under torch.autocast("cpu", bfloat16)
                      (mixed precision: bf16 matmuls, f32 weights, AdamW state and reductions)
    {"cmd": "free"}   drops the model; answers the max RSS growth since init
The first line it prints is {"ready": true, "torch": version, "threads": n}.
"""
import json
import os
import resource
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch
from transformers import LlamaConfig, LlamaForCausalLM, MixtralConfig, MixtralForCausalLM

ARCH = sys.argv[1]
torch.set_num_threads(int(sys.argv[2]))
ATTN = sys.argv[3] if len(sys.argv) > 3 else "sdpa"


def rss():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def build(c):
    """The model of our toHFConfig(cfg) `c`, float32, random (seed 0)."""
    if ARCH == "llama":
        cfg = LlamaConfig(vocab_size=c["vocab_size"], hidden_size=c["hidden_size"], intermediate_size=c["intermediate_size"],
                          num_hidden_layers=c["num_hidden_layers"], num_attention_heads=c["num_attention_heads"],
                          num_key_value_heads=c["num_key_value_heads"], max_position_embeddings=c["max_position_embeddings"],
                          rms_norm_eps=c["rms_norm_eps"], rope_theta=c["rope_theta"], tie_word_embeddings=c["tie_word_embeddings"],
                          attention_bias=False, mlp_bias=False)
        cls = LlamaForCausalLM
    else:
        c = dict(c)
        for k in ("architectures", "model_type", "torch_dtype"):
            c.pop(k, None)
        c["output_router_logits"] = True  # the aux loss is part of our training loss too
        cfg = MixtralConfig(**c)
        cls = MixtralForCausalLM
    torch.manual_seed(0)
    return cls._from_config(cfg, attn_implementation=ATTN, torch_dtype=torch.float32)


def main():
    import transformers

    if ARCH not in ("llama", "mixtral"):
        sys.exit(f"torch-train-peer.py: the architecture must be llama or mixtral, got {ARCH!r}")
    print(json.dumps({"ready": True, "torch": torch.__version__, "transformers": transformers.__version__,
                      "threads": torch.get_num_threads(), "arch": ARCH, "attn": ATTN}), flush=True)
    model = opt = ids = None
    rss0 = 0
    for line in sys.stdin:
        req = json.loads(line)
        if req["cmd"] == "init":
            rss0 = rss()
            model = build(req["config"])
            model.train()
            opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
            ids = torch.tensor(req["tokens"], dtype=torch.long).view(req["B"], req["T"])
            print(json.dumps({"ok": True}), flush=True)
        elif req["cmd"] == "step":
            t0 = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bool(req.get("autocast"))):
                out = model(input_ids=ids, labels=ids)
            t1 = time.perf_counter()
            out.loss.backward()
            t2 = time.perf_counter()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            t3 = time.perf_counter()
            print(json.dumps({"time": t3 - t0, "phases": [t1 - t0, t2 - t1, t3 - t2], "loss": out.loss.item()}), flush=True)
            del out
        else:
            print(json.dumps({"rssGrowth": rss() - rss0}), flush=True)
            model = opt = ids = None


if __name__ == "__main__":
    main()
