#!/usr/bin/env python3
"""Hugging Face transformers as the reference for our LlamaForCausalLM.

    python scripts/hf-parity.py fixture [--out test/fixtures]
        Makes a tiny random LLaMA (2 layers, dim 64, 4 heads, 2 kv heads, vocab 256) with
        transformers, saves it as a safetensors folder (bf16 on disk: the weights are rounded to
        bf16 first, so the f32 model both sides load is exactly what the file holds), and golden
        values: logits, loss, gradients and ten AdamW steps (test/fixtures/hf-tiny-golden.json).

    python scripts/hf-parity.py run MODEL_DIR BATCHES_JSON OUT_DIR [--steps N] [--lr ...]
        Loads MODEL_DIR with transformers in f32 and writes OUT_DIR/reference.safetensors: logits
        and parameter gradients of the first batch ("logits", "grad.<name>"), and the weights after
        N AdamW steps over the batches ("final.<name>"); OUT_DIR/reference.json holds the losses.

A packed batch (tokens, targets, cuSeqlens) is fed to transformers one document at a time
(batch size 1): that is exactly what our packed attention with document boundaries computes.
The loss is the mean cross-entropy over the targets that are not -100, as ours.
"""
import argparse
import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM

HYPER = {"lr": 3e-3, "beta1": 0.9, "beta2": 0.95, "eps": 1e-8, "weight_decay": 0.1, "max_norm": 1.0}


def load(model_dir):
    model = LlamaForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager")
    model.train()  # no dropout in LLaMA; train() only for clarity
    return model


def logits_and_loss(model, batch):
    tokens = torch.tensor(batch["tokens"], dtype=torch.long)
    targets = torch.tensor(batch["targets"], dtype=torch.long)
    cu = batch["cuSeqlens"]
    parts = []
    for s, e in zip(cu[:-1], cu[1:]):
        if e > s:
            parts.append(model(input_ids=tokens[s:e].unsqueeze(0), use_cache=False).logits[0])
    logits = torch.cat(parts, 0)
    loss = F.cross_entropy(logits, targets, ignore_index=-100)
    return logits, loss


def run(model, batches, steps, hyper):
    """Logits, loss and gradients on batches[0]; then `steps` AdamW steps starting over from batches[0]."""
    named = list(model.named_parameters())
    logits, loss = logits_and_loss(model, batches[0])
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in named}
    model.zero_grad(set_to_none=True)
    opt = torch.optim.AdamW([p for _, p in named], lr=hyper["lr"], betas=(hyper["beta1"], hyper["beta2"]),
                            eps=hyper["eps"], weight_decay=hyper["weight_decay"])
    losses, norms = [], []
    for i in range(steps):
        _, l = logits_and_loss(model, batches[i % len(batches)])
        l.backward()
        norms.append(float(torch.nn.utils.clip_grad_norm_([p for _, p in named], hyper["max_norm"])))
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(l))
    final = {n: p.detach().clone() for n, p in named}
    return logits.detach(), float(loss), grads, losses, norms, final


def make_batches(seed, vocab, count, doc_lengths):
    g = torch.Generator().manual_seed(seed)
    out = []
    for b in range(count):
        lengths = doc_lengths[b % len(doc_lengths)]
        tokens, targets, cu = [], [], [0]
        for n in lengths:
            doc = torch.randint(0, vocab, (n,), generator=g).tolist()
            tokens += doc
            targets += doc[1:] + [-100]
            cu.append(cu[-1] + n)
        out.append({"tokens": tokens, "targets": targets, "cuSeqlens": cu})
    return out


def sample(t, k, seed):
    """k values at deterministic indices of a flattened tensor, with the indices."""
    flat = t.reshape(-1)
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(flat.numel(), generator=g)[: min(k, flat.numel())].sort().values
    return {"index": idx.tolist(), "values": [float(f"{v:.9g}") for v in flat[idx].double().tolist()],
            "norm": float(flat.double().norm()), "shape": list(t.shape)}


def golden_values(batches, vocab, init, logits, loss, grads, losses, norms, final, router_logits=None, routing=None):
    """The golden JSON of a fixture (shared with scripts/mixtral-parity.py, which adds its router
    logits and routing): 24 sampled logit columns and every row's logsumexp, the loss, sampled
    gradients, and the steps' losses, gradient norms, sampled final weights and update norms."""
    cols = torch.randperm(vocab, generator=torch.Generator().manual_seed(3))[:24].sort().values
    r9 = lambda xs: [float(f"{v:.9g}") for v in xs]
    golden = {
        "transformers": __import__("transformers").__version__, "torch": torch.__version__,
        "hyper": HYPER, "batches": batches,
        "logits": {"columns": cols.tolist(), "values": [r9(row) for row in logits[:, cols].tolist()],
                   "logsumexp": r9(torch.logsumexp(logits.double(), -1).tolist())},
        "loss": loss,
    }
    if router_logits is not None:
        golden["routerLogits"] = [r9(r.reshape(-1).tolist()) for r in router_logits]
    golden["grads"] = {n: sample(g, 24, i) for i, (n, g) in enumerate(grads.items())}
    steps = {"losses": losses, "gradNorms": norms}
    if routing is not None:
        steps["routing"] = routing
    steps["final"] = {n: sample(final[n], 24, 100 + i) for i, n in enumerate(final)}
    steps["deltaNorms"] = {n: float((final[n] - init[n]).double().norm()) for n in final}
    golden["steps"] = steps
    return golden


def write_golden(path, golden):
    """Writes a fixture's golden JSON (compact, one line) and prints its loss and step losses."""
    with open(path, "w") as f:
        json.dump(golden, f, separators=(",", ":"))
        f.write("\n")
    print(json.dumps({"loss": golden["loss"], "losses": golden["steps"]["losses"]}))


def fixture(out_dir):
    torch.manual_seed(1234)
    cfg = LlamaConfig(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=256, rms_norm_eps=1e-5, rope_theta=10000.0,
                      tie_word_embeddings=False, initializer_range=0.05)
    model = LlamaForCausalLM(cfg).float()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(torch.bfloat16).float())  # exactly representable on disk in bf16
            if p.ndim == 1:  # norms at 1 would hide a missing weight multiply: perturb them
                p.add_(torch.randn_like(p) * 0.1).copy_(p.to(torch.bfloat16).float())
    model_dir = os.path.join(out_dir, "hf-tiny")
    model.to(torch.bfloat16).save_pretrained(model_dir, safe_serialization=True)
    model = load(model_dir)
    batches = make_batches(7, cfg.vocab_size, 10, [[13, 11], [24], [5, 9, 10], [1, 23]])
    init = {n: p.detach().clone() for n, p in model.named_parameters()}
    logits, loss, grads, losses, norms, final = run(model, batches, 10, HYPER)
    golden = golden_values(batches, cfg.vocab_size, init, logits, loss, grads, losses, norms, final)
    write_golden(os.path.join(out_dir, "hf-tiny-golden.json"), golden)


def run_cmd(model_dir, batches_file, out_dir, steps, hyper):
    with open(batches_file) as f:
        batches = json.load(f)
    model = load(model_dir)
    logits, loss, grads, losses, norms, final = run(model, batches, steps, hyper)
    tensors = {"logits": logits.contiguous()}
    tensors.update({f"grad.{n}": g.contiguous() for n, g in grads.items()})
    tensors.update({f"final.{n}": w.contiguous() for n, w in final.items()})
    write_reference(out_dir, tensors, {"loss": loss, "losses": losses, "gradNorms": norms,
                                       "names": [n for n, _ in model.named_parameters()]})


def write_reference(out_dir, tensors, summary):
    """What `run` leaves for the tests (parity-helpers.ts pythonReference; shared with
    mixtral-parity.py): the tensors in reference.safetensors, the summary in reference.json."""
    os.makedirs(out_dir, exist_ok=True)
    save_file(tensors, os.path.join(out_dir, "reference.safetensors"))
    with open(os.path.join(out_dir, "reference.json"), "w") as f:
        json.dump(summary, f)
    print(json.dumps({"loss": summary["loss"]}))


def cli(doc, fixture, run_cmd):
    """The `fixture` / `run` command line of a parity script (this one, mixtral-parity.py)."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    fx = sub.add_parser("fixture")
    fx.add_argument("--out", default="test/fixtures")
    r = sub.add_parser("run")
    r.add_argument("model_dir")
    r.add_argument("batches")
    r.add_argument("out_dir")
    r.add_argument("--steps", type=int, default=10)
    for k, v in HYPER.items():
        r.add_argument("--" + k.replace("_", "-"), type=float, default=v)
    a = ap.parse_args()
    torch.set_num_threads(1)
    if a.cmd == "fixture":
        fixture(a.out)
    else:
        run_cmd(a.model_dir, a.batches, a.out_dir, a.steps, {k: getattr(a, k) for k in HYPER})


def main():
    cli(__doc__, fixture, run_cmd)

if __name__ == "__main__":
    sys.exit(main())
