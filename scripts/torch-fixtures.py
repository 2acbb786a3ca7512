#!/usr/bin/env python3
"""Golden values from PyTorch for every native op (forward and backward), including the
elementwise and reduction family (broadcast binary ops, unary ops, where, dim reductions,
softmax, gather/scatter_add).

    python scripts/torch-fixtures.py [--seed N] [--out test/fixtures/torch-ops.json]

Each case stores its inputs, the upstream gradient and torch's outputs and input gradients, so
test/torch-parity.test.ts can check our ops without Python. The same test runs this script live
with another seed where torch is installed. The formulas follow Hugging Face LlamaForCausalLM
(LlamaRMSNorm, rotate_half RoPE, SiLU-gated MLP) and torch's own ops (sdpa, cross_entropy, AdamW).
"""
import argparse
import json

import torch
import torch.nn.functional as F


def t(x):
    return {"shape": list(x.shape), "data": [float(f"{v:.9g}") for v in x.detach().reshape(-1).double().tolist()]}


def ints(x):
    return {"shape": list(x.shape), "data": [int(v) for v in x.reshape(-1).tolist()]}


def leaf(*shape, scale=1.0):
    return (torch.randn(*shape, dtype=torch.float64) * scale).float().requires_grad_(True)


def grads_of(out, inputs):
    upstream = torch.randn_like(out)
    out.backward(upstream)
    return upstream, [x.grad for x in inputs]


def case_linear():
    x, w = leaf(5, 7), leaf(6, 7)
    y = x @ w.T
    up, (dx, dw) = grads_of(y, [x, w])
    return {"inputs": {"x": t(x), "weight": t(w)}, "upstream": t(up), "out": t(y), "grads": {"x": t(dx), "weight": t(dw)}}


def case_matmul():
    a, b = leaf(2, 3, 4), leaf(2, 4, 5)
    y = a @ b
    up, (da, db) = grads_of(y, [a, b])
    return {"inputs": {"a": t(a), "b": t(b)}, "upstream": t(up), "out": t(y), "grads": {"a": t(da), "b": t(db)}}


def attention_case(T, H, Hkv, D, seqlens, causal):
    q, k, v = leaf(T, H, D), leaf(T, Hkv, D), leaf(T, Hkv, D)
    # Block-diagonal (per packed sequence) and causal mask, as flash_attn_varlen computes.
    doc = torch.repeat_interleave(torch.arange(len(seqlens)), torch.tensor(seqlens))
    mask = doc[:, None] == doc[None, :]
    if causal:
        mask &= torch.ones(T, T, dtype=torch.bool).tril()
    out = F.scaled_dot_product_attention(
        q.transpose(0, 1)[None], k.transpose(0, 1)[None], v.transpose(0, 1)[None], attn_mask=mask, enable_gqa=True
    )[0].transpose(0, 1)
    up, (dq, dk, dv) = grads_of(out, [q, k, v])
    cu = [0]
    for n in seqlens:
        cu.append(cu[-1] + n)
    return {
        "inputs": {"q": t(q), "k": t(k), "v": t(v)},
        "cuSeqlens": cu,
        "causal": causal,
        "upstream": t(up),
        "out": t(out),
        "grads": {"q": t(dq), "k": t(dk), "v": t(dv)},
    }


def case_rmsnorm():
    x, w = leaf(5, 12), leaf(12)
    eps = 1e-5
    # LlamaRMSNorm
    y = w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))
    up, (dx, dw) = grads_of(y, [x, w])
    return {"inputs": {"x": t(x), "weight": t(w)}, "eps": eps, "upstream": t(up), "out": t(y), "grads": {"x": t(dx), "weight": t(dw)}}


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


def rope_case(T, H, D, theta, pos_scale, positions):
    x = leaf(T, H, D)
    # LlamaRotaryEmbedding (rope_type default / linear): inv_freq in f32, positions scaled.
    inv_freq = 1.0 / (theta ** (torch.arange(0, D, 2, dtype=torch.int64).float() / D))
    pos = torch.tensor(positions, dtype=torch.float32) / pos_scale
    freqs = pos[:, None] * inv_freq[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos()[:, None, :], emb.sin()[:, None, :]
    y = x * cos + rotate_half(x) * sin
    up, (dx,) = grads_of(y, [x])
    return {
        "inputs": {"x": t(x)},
        "positions": positions,
        "theta": theta,
        "posScale": pos_scale,
        "upstream": t(up),
        "out": t(y),
        "grads": {"x": t(dx)},
    }


def case_swiglu():
    g, u = leaf(4, 10), leaf(4, 10)
    y = F.silu(g) * u
    up, (dg, du) = grads_of(y, [g, u])
    return {"inputs": {"gate": t(g), "up": t(u)}, "upstream": t(up), "out": t(y), "grads": {"gate": t(dg), "up": t(du)}}


def case_cross_entropy():
    logits = leaf(6, 11, scale=3.0)
    targets = torch.tensor([3, -100, 0, 10, 7, -100])
    loss = F.cross_entropy(logits, targets, ignore_index=-100)
    loss.backward()
    return {"inputs": {"logits": t(logits)}, "targets": ints(targets), "out": t(loss.reshape(1)), "grads": {"logits": t(logits.grad)}}


def case_logprobs():
    logits = leaf(5, 9, scale=2.0)
    ids = torch.tensor([0, 8, 4, 4, 1])
    y = F.log_softmax(logits, dim=-1).gather(1, ids[:, None])[:, 0]
    up, (dl,) = grads_of(y, [logits])
    return {"inputs": {"logits": t(logits)}, "ids": ints(ids), "upstream": t(up), "out": t(y), "grads": {"logits": t(dl)}}


def case_embedding():
    table = leaf(7, 5)
    ids = torch.tensor([[1, 6, 1], [0, 3, 1]])
    y = F.embedding(ids, table)
    up, (dt,) = grads_of(y, [table])
    return {"inputs": {"table": t(table)}, "ids": ints(ids), "upstream": t(up), "out": t(y), "grads": {"table": t(dt)}}


def case_adamw():
    p = torch.randn(13).float().requires_grad_(True)
    start = p.detach().clone()
    hp = {"lr": 1e-2, "beta1": 0.9, "beta2": 0.95, "eps": 1e-8, "weightDecay": 0.1}
    opt = torch.optim.AdamW([p], lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]), eps=hp["eps"], weight_decay=hp["weightDecay"])
    grads, params = [], []
    for _ in range(4):
        g = torch.randn(13).float()
        p.grad = g.clone()
        opt.step()
        grads.append(t(g))
        params.append(t(p))
    return {"start": t(start), "hp": hp, "grads": grads, "params": params}


def binary_case(fn, a_shape, b_shape, positive_b=False):
    a, b = leaf(*a_shape), leaf(*b_shape)
    if positive_b:
        b = (b.detach().abs() + 0.5).requires_grad_(True)
    y = fn(a, b)
    up, (da, db) = grads_of(y, [a, b])
    return {"inputs": {"a": t(a), "b": t(b)}, "upstream": t(up), "out": t(y), "grads": {"a": t(da), "b": t(db)}}


def unary_case(fn, shape, positive=False, **extra):
    x = leaf(*shape, scale=3.0)
    if positive:
        x = (x.detach().abs() + 0.1).requires_grad_(True)
    y = fn(x)
    up, (dx,) = grads_of(y, [x])
    return {"inputs": {"x": t(x)}, **extra, "upstream": t(up), "out": t(y), "grads": {"x": t(dx)}}


def case_where():
    a, b = leaf(2, 3), leaf(3)
    cond = torch.rand(2, 3) > 0.5
    y = torch.where(cond, a, b)
    up, (da, db) = grads_of(y, [a, b])
    return {"inputs": {"a": t(a), "b": t(b)}, "cond": ints(cond.int()), "upstream": t(up), "out": t(y), "grads": {"a": t(da), "b": t(db)}}


def case_max_dim():
    x = leaf(3, 5)
    values, indices = x.max(dim=1)
    up, (dx,) = grads_of(values, [x])
    return {"inputs": {"x": t(x)}, "dim": 1, "indices": ints(indices), "upstream": t(up), "out": t(values), "grads": {"x": t(dx)}}


def case_gather():
    x = leaf(3, 5)
    index = torch.randint(0, 5, (3, 4))
    y = x.gather(1, index)
    up, (dx,) = grads_of(y, [x])
    return {"inputs": {"x": t(x)}, "dim": 1, "index": ints(index), "upstream": t(up), "out": t(y), "grads": {"x": t(dx)}}


def case_scatter_add():
    x, src = leaf(4, 3), leaf(5, 3)
    index = torch.randint(0, 4, (5, 3))
    y = x.scatter_add(0, index, src)
    up, (dx, dsrc) = grads_of(y, [x, src])
    return {"inputs": {"x": t(x), "src": t(src)}, "dim": 0, "index": ints(index), "upstream": t(up), "out": t(y),
            "grads": {"x": t(dx), "src": t(dsrc)}}


# The elementwise and reduction family (appended after the older cases so their values keep).
def elementwise_cases():
    return {
        "sub_trailing": binary_case(torch.sub, (3, 4), (4,)),
        "mul_column": binary_case(torch.mul, (3, 4), (3, 1)),
        "div_scalar": binary_case(torch.div, (2, 3), (1,), positive_b=True),
        "minimum_row": binary_case(torch.minimum, (3, 4), (1, 4)),
        "maximum_trailing": binary_case(torch.maximum, (2, 3, 4), (3, 4)),
        "neg": unary_case(torch.neg, (2, 5)),
        "exp": unary_case(torch.exp, (2, 5)),
        "log": unary_case(torch.log, (2, 5), positive=True),
        "sigmoid": unary_case(torch.sigmoid, (2, 5)),
        "logsigmoid": unary_case(F.logsigmoid, (2, 5)),
        "clamp": unary_case(lambda x: x.clamp(-0.5, 0.7), (2, 5), min=-0.5, max=0.7),
        "where": case_where(),
        "sum_dim": unary_case(lambda x: x.sum(dim=1), (2, 3, 4), dim=1, keepdim=False),
        "mean_dim_keepdim": unary_case(lambda x: x.mean(dim=-1, keepdim=True), (2, 3, 4), dim=-1, keepdim=True),
        "max_dim": case_max_dim(),
        "softmax": unary_case(lambda x: torch.softmax(x, dim=-1), (4, 7)),
        "log_softmax": unary_case(lambda x: torch.log_softmax(x, dim=-1), (2, 2, 7)),
        "gather": case_gather(),
        "scatter_add": case_scatter_add(),
    }


# Sparse MoE (Mixtral's MixtralSparseMoeBlock): router softmax in float, topk, renormalised over
# the k, each expert a SiLU-gated MLP over the tokens that chose it, weighted and summed back.
def case_moe_swiglu(N=7, C=6, H=5, E=4, k=2):
    x, gate = leaf(N, C), leaf(E, C)
    w1, w3, w2 = leaf(E, H, C, scale=0.5), leaf(E, H, C, scale=0.5), leaf(E, C, H, scale=0.5)
    logits = x @ gate.T
    probs = torch.softmax(logits, dim=1, dtype=torch.float)
    weights, selected = torch.topk(probs, k, dim=-1)
    weights = weights / weights.sum(dim=-1, keepdim=True)
    out = torch.zeros_like(x)
    for e in range(E):
        top_x, idx = torch.where(selected == e)
        h = (F.silu(x[top_x] @ w1[e].T) * (x[top_x] @ w3[e].T)) @ w2[e].T
        out = out.index_add(0, top_x, h * weights[top_x, idx, None])
    up, grads = grads_of(out, [x, gate, w1, w3, w2])
    names = ["x", "gate", "w1", "w3", "w2"]
    return {"inputs": {n: t(v) for n, v in zip(names, [x, gate, w1, w3, w2])}, "k": k, "indices": ints(selected),
            "weights": t(weights), "upstream": t(up), "out": t(out), "grads": {n: t(g) for n, g in zip(names, grads)}}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="test/fixtures/torch-ops.json")
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    cases = {
        "linear": case_linear(),
        "matmul": case_matmul(),
        "attention_gqa_causal": attention_case(9, 4, 2, 8, [9], True),
        "attention_mha_varlen": attention_case(10, 2, 2, 6, [4, 1, 5], True),
        "attention_gqa8_full_varlen": attention_case(7, 8, 1, 4, [3, 4], False),
        "rmsnorm": case_rmsnorm(),
        "rope": rope_case(6, 2, 8, 10000.0, 1.0, [0, 1, 2, 3, 4, 5]),
        "rope_scaled": rope_case(5, 3, 12, 500000.0, 4.0, [0, 7, 100, 4095, 16383]),
        "swiglu": case_swiglu(),
        "cross_entropy": case_cross_entropy(),
        "logprobs": case_logprobs(),
        "embedding": case_embedding(),
        "adamw": case_adamw(),
    }
    cases.update(elementwise_cases())
    # Appended last so the older cases' random draws, and values, stay as they were.
    cases["moe_swiglu"] = case_moe_swiglu()
    doc = {"torch": torch.__version__, "seed": args.seed, "cases": cases}
    with open(args.out, "w") as f:
        json.dump(doc, f, separators=(",", ":"))
    print(json.dumps({"out": args.out, "cases": len(cases)}))


if __name__ == "__main__":
    main()
