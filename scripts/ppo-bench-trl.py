"""TRL PPO peer of `npm run bench -- ppo` (scripts/bench/ppo.ts).

trl 1.13 ships no PPOTrainer (it left in trl 1.0), so this runs PPOTrainer.train's loop as TRL
0.x wrote it (huggingface/trl @a08e713 trl/trainer/ppo_trainer.py), with the same four models:
the policy (LlamaForCausalLM from the model folder), a frozen reference copy, a value model
(LlamaForSequenceClassification, one label, the same decoder weights) and the rule-based reward
in place of a reward model. Per iteration:
  rollout: HF generate (left-padded prompts, sampling at the temperature, exactly L new tokens:
           the same lengths as ours), as TRL's batch_generation;
  forward: the policy's log-probs from generate's scores (output_scores, divided once more by
           temperature + 1e-7, log_softmax, gather: TRL's batch_generation + its rollout loop, no
           policy forward), reference log-probs and values (no grad), the score;
  update:  KL penalty, GAE, whitened advantages (scripts/trl-ppo-parity.py's formulas), then
           epochs x minibatches of the clipped policy + value loss, AdamW.
Reads one JSON request on stdin: {model_dir, prompts: [[ids]], B, L, epochs, minibatch, iters,
temperature, threads, lr}. Prints one JSON line: per-iteration times of rollout and update, the
iteration's CPU time (all threads of the process), the generated tokens, and the max-RSS growth
of the process from before the models were built.
"""
import copy
import json
import re
import resource
import sys
import time

import torch

req = json.loads(sys.stdin.readline())
torch.set_num_threads(req["threads"])
torch.manual_seed(0)
from transformers import LlamaForCausalLM, LlamaForSequenceClassification  # noqa: E402
from trl.trainer.utils import selective_log_softmax  # noqa: E402

INVALID_LOGPROB = 1.0


def status_kb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def reset_peak_rss():
    """The peak RSS from here on: Linux resets VmHWM on writing 5 to clear_refs (the imports' own peak
    would otherwise hide the models'); falls back to the process's max RSS elsewhere."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return status_kb("VmRSS")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def peak_rss():
    return status_kb("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def masked_mean(v, m):
    return (v * m).sum() / m.sum()


def masked_whiten(v, m):
    mean = masked_mean(v, m)
    var = masked_mean((v - mean) ** 2, m) * (m.sum() / (m.sum() - 1))
    return (v - mean) * torch.rsqrt(var + 1e-8)


CLEAN = re.compile(r"[\w ,;:.()\-]")


def claim_format(completion):
    # src/train/ppo/rewards.ts claimFormatReward
    text = completion.strip()
    if not text:
        return 0.0
    body = min(1.0, len(text.split()) / 6)
    s = 0.25 * bool(re.match(r"^1\.\s+(A|An|The)\s", text)) + 0.25 * bool(re.search(r"\bcomprising\b", text, re.I))
    s += 0.25 * body * text.endswith(".")
    return s + 0.25 * body * sum(1 for c in text if CLEAN.match(c)) / len(text)


rss0 = reset_peak_rss()
policy = LlamaForCausalLM.from_pretrained(req["model_dir"], torch_dtype=torch.float32)
ref = copy.deepcopy(policy).eval()
value = LlamaForSequenceClassification.from_pretrained(req["model_dir"], num_labels=1, torch_dtype=torch.float32)
for p in ref.parameters():
    p.requires_grad_(False)
params = list(policy.parameters()) + list(value.parameters())
opt = torch.optim.AdamW(params, lr=req["lr"], eps=1e-5)

B, L, T = req["B"], req["L"], req["temperature"]
PAD = 258  # the byte tokenizer's pad id (bytes are ids 0-255)
prompts = req["prompts"]


def left_pad(batch):
    n = max(len(p) for p in batch)
    ids = torch.tensor([[PAD] * (n - len(p)) + p for p in batch])
    att = torch.tensor([[0] * (n - len(p)) + [1] * len(p) for p in batch])
    return ids, att


def forward_logits(model, qr, att, ctx):
    pos = (att.cumsum(1) - 1).clamp(min=0)
    out = model(input_ids=qr, attention_mask=att, position_ids=pos)
    return out.logits[:, ctx - 1 : -1] / (T + 1e-7)


def values_of(qr, att, ctx):
    pos = (att.cumsum(1) - 1).clamp(min=0)
    h = value.model(input_ids=qr, attention_mask=att, position_ids=pos).last_hidden_state
    return value.score(h)[:, ctx - 1 : -1].squeeze(-1)


iters = []
for it in range(req["iters"]):
    batch = [prompts[(it * B + i) % len(prompts)] for i in range(B)]
    q, qa = left_pad(batch)
    ctx = q.shape[1]
    t0, c0 = time.perf_counter(), time.process_time()
    with torch.no_grad():
        # TRL's generate(): GenerationConfig(temperature=T + 1e-7, top_k=0, top_p=1.0, do_sample=True), the scores kept
        out = policy.generate(input_ids=q, attention_mask=qa, max_new_tokens=L, min_new_tokens=L, do_sample=True, temperature=T + 1e-7,
                              top_k=0, top_p=1.0, pad_token_id=PAD, eos_token_id=None, return_dict_in_generate=True, output_scores=True)
        qr = out.sequences
        logitss = torch.stack(out.scores, 1)
    t1 = time.perf_counter()
    resp = qr[:, ctx:]
    att = torch.cat([qa, torch.ones_like(resp)], 1)
    with torch.no_grad():
        # the rollout policy's log-probs from generation's scores, as TRL takes them (no policy forward):
        # logits /= temperature + 1e-7, then log_softmax and gather
        logitss /= T + 1e-7
        logprobs = torch.gather(torch.log_softmax(logitss, -1), 2, resp.unsqueeze(-1)).squeeze(-1)
        del logitss, out
        ref_logprobs = selective_log_softmax(forward_logits(ref, qr, att, ctx), resp)
        vals = values_of(qr, att, ctx)
        scores = torch.tensor([claim_format(bytes([t for t in r.tolist() if t < 256]).decode("utf-8", "replace")) for r in resp])
        kl = logprobs - ref_logprobs
        rewards = -0.05 * kl
        rewards[:, -1] += scores
        last = 0
        adv = []
        for t in reversed(range(L)):
            nv = vals[:, t + 1] if t < L - 1 else 0.0
            last = rewards[:, t] + nv - vals[:, t] + 0.95 * last
            adv.append(last)
        adv = torch.stack(adv[::-1], 1)
        returns = adv + vals
        mask = torch.ones_like(adv)
        adv = masked_whiten(adv, mask)
    t2 = time.perf_counter()
    for _ in range(req["epochs"]):
        perm = torch.randperm(B)
        for s in range(0, B, req["minibatch"]):
            i = perm[s : s + req["minibatch"]]
            logits = forward_logits(policy, qr[i], att[i], ctx)
            nl = selective_log_softmax(logits, resp[i])
            vp = values_of(qr[i], att[i], ctx)
            vc = torch.clamp(vp, vals[i] - 0.2, vals[i] + 0.2)
            vf = 0.5 * torch.max((vp - returns[i]) ** 2, (vc - returns[i]) ** 2).mean()
            ratio = torch.exp(nl - logprobs[i])
            pg = torch.max(-adv[i] * ratio, -adv[i] * torch.clamp(ratio, 0.8, 1.2)).mean()
            loss = pg + 0.1 * vf
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
    t3, c3 = time.perf_counter(), time.process_time()
    iters.append({"rollout": t1 - t0, "update": t3 - t1, "cpu": c3 - c0, "tokens": int(resp.numel()), "reward": float(scores.mean())})
print(json.dumps({"iters": iters, "peakBytes": peak_rss() - rss0, "torch": torch.__version__}))
