#!/usr/bin/env python3
"""The torch side of `npm run bench -- moe` part 2: transformers' MixtralForCausalLM + torch AdamW.

    python scripts/moe-bench-torch.py THREADS ATTN

One process; it reads JSON requests line by line on stdin and answers one JSON line each:
    {"cmd": "init", "config": <our toHFConfig(cfg)>, "B": B, "T": T, "tokens": [B*T ids]}
    {"cmd": "step"}   one training step, timed: forward + loss (with the load-balancing loss,
                      output_router_logits on, as our loss has it), backward, clip 1.0, AdamW
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
from transformers import MixtralConfig, MixtralForCausalLM

torch.set_num_threads(int(sys.argv[1]))
ATTN = sys.argv[2] if len(sys.argv) > 2 else "sdpa"


def rss():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main():
    import transformers

    print(json.dumps({"ready": True, "torch": torch.__version__, "transformers": transformers.__version__,
                      "threads": torch.get_num_threads(), "attn": ATTN}), flush=True)
    model = opt = ids = None
    rss0 = 0
    for line in sys.stdin:
        req = json.loads(line)
        if req["cmd"] == "init":
            c = dict(req["config"])
            for k in ("architectures", "model_type", "torch_dtype"):
                c.pop(k, None)
            c["output_router_logits"] = True  # the aux loss is part of our training loss too
            cfg = MixtralConfig(**c)
            torch.manual_seed(0)
            rss0 = rss()
            model = MixtralForCausalLM._from_config(cfg, attn_implementation=ATTN, torch_dtype=torch.float32)
            model.train()
            opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
            ids = torch.tensor(req["tokens"], dtype=torch.long).view(req["B"], req["T"])
            print(json.dumps({"ok": True}), flush=True)
        elif req["cmd"] == "step":
            t0 = time.perf_counter()
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
