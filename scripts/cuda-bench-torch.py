#!/usr/bin/env python3
"""The PyTorch side of the CUDA benches (scripts/bench/cuda.ts): the same shapes on the same GPU.

usage: cuda-bench-torch.py '<json spec>'   (the spec scripts/bench/cuda.ts sends; see there)

Prints one JSON line: the device, its measured copy bandwidth, and per bench the seconds of one
call (median of timed runs after warm-up, CUDA events around each), for
  - attention: scaled_dot_product_attention forward + backward, causal, (B, H, L, D), f32 and bf16;
  - gemm: torch.matmul (M, K) @ (K, N), f32 (TF32 off, as ours) and bf16;
  - moe: top-k routing, stable sort by expert, gather (permute) and weighted combine;
  - train: one step of transformers' LlamaForCausalLM (sdpa attention) + fused AdamW under bf16
    autocast, the same config and batch shape as ours.
A bench that fails reports {"error": "..."} and the others still run. No network is used.
"""
import json
import sys
import time


def timed(fn, warmup=2, reps=5):
    import torch

    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    times.sort()
    return times[len(times) // 2]


def attention(spec, dtype_name):
    import torch
    import torch.nn.functional as F

    dtype = {"f32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    B, L, H, Hkv, D = spec["B"], spec["L"], spec["H"], spec["Hkv"], spec["D"]
    g = torch.Generator(device="cuda").manual_seed(0)
    q = torch.randn(B, H, L, D, device="cuda", dtype=dtype, generator=g, requires_grad=True)
    k = torch.randn(B, Hkv, L, D, device="cuda", dtype=dtype, generator=g, requires_grad=True)
    v = torch.randn(B, Hkv, L, D, device="cuda", dtype=dtype, generator=g, requires_grad=True)
    dout = torch.randn(B, H, L, D, device="cuda", dtype=dtype, generator=g)

    def step():
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=Hkv != H)
        out.backward(dout)
        q.grad = k.grad = v.grad = None

    return timed(step)


def gemm(spec, dtype_name):
    import torch

    dtype = {"f32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    torch.backends.cuda.matmul.allow_tf32 = False
    M, N, K = spec["M"], spec["N"], spec["K"]
    a = torch.randn(M, K, device="cuda", dtype=dtype)
    b = torch.randn(K, N, device="cuda", dtype=dtype)
    return timed(lambda: torch.matmul(a, b), warmup=3, reps=10)


def moe(spec):
    import torch

    N, C, E, k = spec["N"], spec["C"], spec["E"], spec["k"]
    x = torch.randn(N, C, device="cuda")
    logits = torch.randn(N, E, device="cuda")

    def step():
        vals, idx = torch.topk(logits, k, dim=-1)
        w = torch.softmax(vals, dim=-1)
        flat = idx.reshape(-1)
        order = torch.sort(flat, stable=True).indices
        counts = torch.bincount(flat, minlength=E)
        offsets = torch.cumsum(counts, 0)
        xs = x.index_select(0, order // k)  # permute
        slot_pos = torch.empty_like(order)
        slot_pos[order] = torch.arange(order.numel(), device="cuda")
        y = xs.index_select(0, slot_pos).view(N, k, C)  # un-permute
        out = (y * w.unsqueeze(-1)).sum(1)  # combine
        return out, offsets

    return timed(step, warmup=3, reps=10)


def copy_bandwidth():
    import torch

    n = 1 << 28  # 1 GiB of f32
    x = torch.empty(n, device="cuda")
    y = torch.empty_like(x)
    s = timed(lambda: y.copy_(x), warmup=2, reps=5)
    return 2 * 4 * n / s / 1e9


def train(spec):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(**spec["hf"], attn_implementation="sdpa")
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg).cuda()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1, fused=True)
    B, T = spec["B"], spec["T"]
    ids = torch.randint(0, cfg.vocab_size, (B, T), device="cuda")

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    s = timed(step, warmup=2, reps=spec.get("steps", 5))
    del model, opt
    torch.cuda.empty_cache()
    return s


def guarded(fn, *args):
    try:
        return {"seconds": fn(*args)}
    except Exception as e:  # a failed bench is reported, the others still run
        return {"error": f"{type(e).__name__}: {e}"[:400]}


def main():
    spec = json.loads(sys.argv[1])
    import torch

    if not torch.cuda.is_available():
        print(json.dumps({"error": "torch sees no CUDA device"}))
        return
    t0 = time.time()
    out = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__}
    try:
        out["copyGBs"] = copy_bandwidth()
    except Exception as e:
        out["copyError"] = f"{type(e).__name__}: {e}"[:200]
    out["attention"] = [
        {**a, "dtype": d, **guarded(attention, a, d)} for a in spec.get("attention", []) for d in ("f32", "bf16")
    ]
    out["gemm"] = [{**g, "dtype": d, **guarded(gemm, g, d)} for g in spec.get("gemm", []) for d in ("f32", "bf16")]
    out["moe"] = [{**m, **guarded(moe, m)} for m in spec.get("moe", [])]
    out["train"] = [{"name": t["name"], **guarded(train, t)} for t in spec.get("train", [])]
    out["wallSeconds"] = time.time() - t0
    print(json.dumps(out))


if __name__ == "__main__":
    main()
