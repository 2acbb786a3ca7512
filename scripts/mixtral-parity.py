#!/usr/bin/env python3
"""Hugging Face transformers' MixtralForCausalLM as the reference for our SMoE LlamaForCausalLM.

    python scripts/mixtral-parity.py fixture [--out test/fixtures]
        Makes a tiny random Mixtral (2 layers, dim 64, 4 heads, 2 kv heads, vocab 256, 4 experts,
        top-2, router_aux_loss_coef 0.02; the tiny-moe preset), saves it as a safetensors folder
        (test/fixtures/mixtral-tiny, bf16 on disk, the weights rounded to bf16 first) and golden
        values (test/fixtures/mixtral-tiny-golden.json): logits, loss, router logits, gradients
        and ten AdamW steps.

    python scripts/mixtral-parity.py run MODEL_DIR BATCHES_JSON OUT_DIR [--steps N]
        As scripts/hf-parity.py run, plus "router.<layer>" (the first batch's router logits).

The loss is what our model minimises: the mean cross-entropy plus router_aux_loss_coef times
the mean over layers of load_balancing_loss_func on that layer's router logits (over all tokens
of the packed batch). transformers' own aux term pools its counts over layers instead; it adds
it only with output_router_logits, which we leave off and compute ours from the router logits.
Documents run one at a time (batch size 1), as scripts/hf-parity.py does. An expert no token
of a batch reaches has a zero gradient slice in transformers' fused tensors, which AdamW still
decays: our side counts it as a zero gradient too. Gradients and
weights are reported under the checkpoint names (experts.N.w1/w2/w3): transformers 5 holds the
experts fused (gate_up_proj = [w1; w3], down_proj = w2).
"""
import importlib.util
import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch
import torch.nn.functional as F
from transformers import MixtralConfig, MixtralForCausalLM
from transformers.models.mixtral.modeling_mixtral import load_balancing_loss_func

_spec = importlib.util.spec_from_file_location("hf_parity", os.path.join(os.path.dirname(os.path.abspath(__file__)), "hf-parity.py"))
hf_parity = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(hf_parity)
HYPER, make_batches = hf_parity.HYPER, hf_parity.make_batches


# A router at init std routes near-uniformly, and a near tie that float rounding breaks one way
# here and the other way there would change which experts a token reaches: the fixture's router
# is scaled up so that its top-k choices are clear-cut over all ten steps (the golden file
# records every step's routing and the test checks ours is the same).
ROUTER_SCALE = 4.0


def load(model_dir):
    model = MixtralForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager")
    model.train()  # no dropout, jitter 0: train() only for clarity
    return model


def checkpoint_tensors(model, tensors):
    """{checkpoint name: tensor} from {parameter name: tensor}, splitting the fused experts."""
    cfg = model.config
    E, Fd = cfg.num_local_experts, cfg.intermediate_size
    out = {}
    for n, t in tensors.items():
        if n.endswith(".mlp.experts.gate_up_proj"):
            p = n[: -len("mlp.experts.gate_up_proj")] + "block_sparse_moe.experts."
            for e in range(E):
                out[f"{p}{e}.w1.weight"] = t[e, :Fd]
                out[f"{p}{e}.w3.weight"] = t[e, Fd:]
        elif n.endswith(".mlp.experts.down_proj"):
            p = n[: -len("mlp.experts.down_proj")] + "block_sparse_moe.experts."
            for e in range(E):
                out[f"{p}{e}.w2.weight"] = t[e]
        elif ".mlp.gate." in n:
            out[n.replace(".mlp.gate.", ".block_sparse_moe.gate.")] = t
        else:
            out[n] = t
    return {k: v.contiguous() for k, v in out.items()}


def forward(model, batch):
    tokens = torch.tensor(batch["tokens"], dtype=torch.long)
    targets = torch.tensor(batch["targets"], dtype=torch.long)
    cu = batch["cuSeqlens"]
    parts, routers = [], None
    for s, e in zip(cu[:-1], cu[1:]):
        if e > s:
            out = model(input_ids=tokens[s:e].unsqueeze(0), use_cache=False, output_router_logits=True)
            parts.append(out.logits[0])
            rl = [r.reshape(e - s, -1) for r in out.router_logits]
            routers = rl if routers is None else [torch.cat([a, b], 0) for a, b in zip(routers, rl)]
    logits = torch.cat(parts, 0)
    ce = F.cross_entropy(logits, targets, ignore_index=-100)
    cfg = model.config
    aux = sum(load_balancing_loss_func((r,), cfg.num_local_experts, cfg.num_experts_per_tok) for r in routers) / len(routers)
    return logits, ce + cfg.router_aux_loss_coef * aux, routers


def run(model, batches, steps, hyper):
    named = list(model.named_parameters())
    logits, loss, routers = forward(model, batches[0])
    loss.backward()
    grads = checkpoint_tensors(model, {n: p.grad.detach().clone() for n, p in named})
    model.zero_grad(set_to_none=True)
    opt = torch.optim.AdamW([p for _, p in named], lr=hyper["lr"], betas=(hyper["beta1"], hyper["beta2"]),
                            eps=hyper["eps"], weight_decay=hyper["weight_decay"])
    losses, norms, routing = [], [], []
    for i in range(steps):
        _, l, rl = forward(model, batches[i % len(batches)])
        k = model.config.num_experts_per_tok
        routing.append([torch.topk(r, k, -1).indices.reshape(-1).tolist() for r in rl])
        l.backward()
        norms.append(float(torch.nn.utils.clip_grad_norm_([p for _, p in named], hyper["max_norm"])))
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(l))
    final = checkpoint_tensors(model, {n: p.detach().clone() for n, p in named})
    return logits.detach(), float(loss), [r.detach() for r in routers], grads, losses, norms, final, routing


def fixture(out_dir):
    torch.manual_seed(4321)
    cfg = MixtralConfig(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                        num_key_value_heads=2, max_position_embeddings=256, rms_norm_eps=1e-5, rope_theta=10000.0,
                        tie_word_embeddings=False, initializer_range=0.05, num_local_experts=4, num_experts_per_tok=2,
                        router_aux_loss_coef=0.02, router_jitter_noise=0.0, sliding_window=None)
    model = MixtralForCausalLM(cfg).float()
    with torch.no_grad():
        for n, p in model.named_parameters():
            if ".mlp.gate." in n:
                p.mul_(ROUTER_SCALE)
            p.copy_(p.to(torch.bfloat16).float())  # exactly representable on disk in bf16
            if p.ndim == 1:  # norms at 1 would hide a missing weight multiply: perturb them
                p.add_(torch.randn_like(p) * 0.1).copy_(p.to(torch.bfloat16).float())
    model_dir = os.path.join(out_dir, "mixtral-tiny")
    model.to(torch.bfloat16).save_pretrained(model_dir, safe_serialization=True)
    model = load(model_dir)
    batches = make_batches(7, cfg.vocab_size, 10, [[13, 11], [24], [5, 9, 10], [1, 23]])
    init = checkpoint_tensors(model, {n: p.detach().clone() for n, p in model.named_parameters()})
    logits, loss, routers, grads, losses, norms, final, routing = run(model, batches, 10, HYPER)
    golden = hf_parity.golden_values(batches, cfg.vocab_size, init, logits, loss, grads, losses, norms, final,
                                     router_logits=routers, routing=routing)
    hf_parity.write_golden(os.path.join(out_dir, "mixtral-tiny-golden.json"), golden)


def run_cmd(model_dir, batches_file, out_dir, steps, hyper):
    with open(batches_file) as f:
        batches = json.load(f)
    model = load(model_dir)
    logits, loss, routers, grads, losses, norms, final, routing = run(model, batches, steps, hyper)
    tensors = {"logits": logits.contiguous()}
    tensors.update({f"router.{i}": r.contiguous() for i, r in enumerate(routers)})
    tensors.update({f"grad.{n}": g for n, g in grads.items()})
    tensors.update({f"final.{n}": w for n, w in final.items()})
    hf_parity.write_reference(out_dir, tensors, {"loss": loss, "losses": losses, "gradNorms": norms, "routing": routing})


def main():
    hf_parity.cli(__doc__, fixture, run_cmd)

if __name__ == "__main__":
    sys.exit(main())
