"""PPO step math of TRL's PPOTrainer on fixed rollouts, for test/train/ppo-math.test.ts.

trl 1.13 (the version of the local index) no longer ships PPOTrainer (it left in 1.0), so its
rollout and loss math is reproduced here line by line from trl/trainer/ppo_trainer.py of the
0.x series (huggingface/trl @a08e713, PPOTrainer.train: L759-761 missing_eos_penalty,
L764-771 padding masks and INVALID_LOGPROB, L775-781 KL and rewards, L784-787 whiten_rewards,
L790-799 GAE and whitened advantages, L823-859 the minibatch losses and statistics), with
masked_mean / masked_var / masked_whiten from trl/trainer/utils.py of the same series and
AdaptiveKLController from trl/trainer/utils.py of trl <= 0.11. What trl 1.13 still has is
imported and used: selective_log_softmax (the log-probs of the sampled tokens) and
entropy_from_logits.

Two cases on the same rollouts: "trl" (TRL exactly: the score one past the EOS, values over
padding_mask_p1, k1 KL, missing_eos_penalty) and "eos" (the same formulas with the score on the
EOS and values over the response mask, k3 KL, whiten_rewards): the layout patentgpt uses.

Usage: python scripts/trl-ppo-parity.py [--write test/fixtures/trl-ppo-golden.json]
Prints the JSON on its last line.
"""
import json
import sys

import numpy as np
import torch
import trl
from trl.trainer.utils import entropy_from_logits, selective_log_softmax

INVALID_LOGPROB = 1.0
EOS, PAD = 2, 0
B, T, V = 5, 7, 11


# trl/trainer/utils.py (0.x): masked_mean, masked_var, masked_whiten
def masked_mean(values, mask, axis=None):
    if axis is not None:
        return (values * mask).sum(axis=axis) / mask.sum(axis=axis)
    return (values * mask).sum() / mask.sum()


def masked_var(values, mask, unbiased=True):
    mean = masked_mean(values, mask)
    centered_values = values - mean
    variance = masked_mean(centered_values**2, mask)
    if unbiased:
        mask_sum = mask.sum()
        bessel_correction = mask_sum / (mask_sum - 1)
        variance = variance * bessel_correction
    return variance


def masked_whiten(values, mask, shift_mean=True):
    mean, var = masked_mean(values, mask), masked_var(values, mask)
    whitened = (values - mean) * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        whitened += mean
    return whitened


# trl/trainer/utils.py (<= 0.11)
class AdaptiveKLController:
    def __init__(self, init_kl_coef, target, horizon):
        self.value = init_kl_coef
        self.target = target
        self.horizon = horizon

    def update(self, current, n_steps):
        proportional_error = np.clip(current / self.target - 1, -0.2, 0.2)
        mult = 1 + proportional_error * n_steps / self.horizon
        self.value *= mult


def first_true_indices(bools, dtype=torch.long):
    row_len = bools.size(-1)
    zero_or_index = row_len * (~bools).type(dtype) + torch.arange(row_len, dtype=dtype, device=bools.device)
    return torch.min(zero_or_index, dim=-1).values


def truncate_response(stop_token_id, pad_token_id, responses):
    trunc_idxs = first_true_indices(responses == stop_token_id).unsqueeze(-1)
    new_size = [1] * (len(responses.size()) - 1) + [responses.shape[1]]
    idxs = torch.arange(responses.shape[1], device=responses.device).view(*new_size)
    return torch.masked_fill(responses, idxs > trunc_idxs, pad_token_id)


def rollouts():
    g = torch.Generator().manual_seed(7)
    responses = torch.randint(3, V, (B, T), generator=g)
    responses[0, 2] = EOS  # EOS early
    responses[1, 5] = EOS  # EOS late
    responses[2, 0] = EOS  # EOS first (a one-token response)
    responses[3, 3] = EOS  # then junk after it, which truncation drops
    responses[3, 5] = EOS
    # row 4: no EOS at all (missing_eos_penalty, score on the last position)
    old_logits = torch.randn(B, T, V, generator=g, dtype=torch.float64).float()
    logits = (old_logits.double() + 0.3 * torch.randn(B, T, V, generator=g, dtype=torch.float64)).float()
    ref_logits = (old_logits.double() + 0.5 * torch.randn(B, T, V, generator=g, dtype=torch.float64)).float()
    values = torch.randn(B, T, generator=g, dtype=torch.float64).float()
    vpred = (values.double() + 0.3 * torch.randn(B, T, generator=g, dtype=torch.float64)).float()
    scores = torch.randn(B, generator=g, dtype=torch.float64).float()
    return responses, old_logits, logits, ref_logits, values, vpred, scores


def run_case(mode, kl_estimator, whiten_rewards, missing_eos_penalty, kl_coef=0.05, gamma=0.98, lam=0.9,
             cliprange=0.2, cliprange_value=0.15, vf_coef=0.1):
    responses, old_logits, logits, ref_logits, values, vpred, scores = rollouts()
    # L759-761 (scores of responses without EOS), after truncate_response and the score lookup
    postprocessed = truncate_response(EOS, PAD, responses)
    sequence_lengths = first_true_indices(postprocessed == PAD) - 1
    contain_eos_token = torch.any(postprocessed == EOS, dim=-1)
    scores = scores.clone()
    if missing_eos_penalty is not None:
        scores[~contain_eos_token] -= missing_eos_penalty
    logprobs = selective_log_softmax(old_logits, responses)
    ref_logprobs = selective_log_softmax(ref_logits, responses)
    # L764-771
    response_idxs = torch.arange(responses.shape[1]).repeat(responses.shape[0], 1)
    padding_mask = response_idxs > sequence_lengths.unsqueeze(1)
    logprobs = torch.masked_fill(logprobs, padding_mask, INVALID_LOGPROB)
    ref_logprobs = torch.masked_fill(ref_logprobs, padding_mask, INVALID_LOGPROB)
    sequence_lengths_p1 = sequence_lengths + 1
    padding_mask_p1 = response_idxs > (sequence_lengths_p1.unsqueeze(1))
    value_mask_pad = padding_mask_p1 if mode == "trl" else padding_mask
    values = torch.masked_fill(values, value_mask_pad, 0)
    # L775-781
    logr = ref_logprobs - logprobs
    kl = -logr if kl_estimator == "k1" else (logr.exp() - 1) - logr
    non_score_reward = -kl_coef * kl
    rewards = non_score_reward.clone()
    actual_start = torch.arange(rewards.size(0))
    if mode == "trl":
        actual_end = torch.where(sequence_lengths_p1 < rewards.size(1), sequence_lengths_p1, sequence_lengths)
    else:
        actual_end = sequence_lengths  # the EOS itself (the last valid token)
    rewards[actual_start, actual_end] += scores
    # L784-787
    if whiten_rewards:
        rewards = masked_whiten(rewards, mask=~value_mask_pad, shift_mean=False)
        rewards = torch.masked_fill(rewards, value_mask_pad, 0)
    # L790-799
    lastgaelam = 0
    advantages_reversed = []
    gen_length = responses.shape[1]
    for t in reversed(range(gen_length)):
        nextvalues = values[:, t + 1] if t < gen_length - 1 else 0.0
        delta = rewards[:, t] + gamma * nextvalues - values[:, t]
        lastgaelam = delta + gamma * lam * lastgaelam
        advantages_reversed.append(lastgaelam)
    advantages = torch.stack(advantages_reversed[::-1], axis=1)
    returns = advantages + values
    advantages = masked_whiten(advantages, ~padding_mask)
    advantages = torch.masked_fill(advantages, padding_mask, 0)

    # L823-859: one minibatch = the whole batch
    logits_leaf = logits.clone().requires_grad_(True)
    vpred_leaf = vpred.clone().requires_grad_(True)
    new_logprobs = selective_log_softmax(logits_leaf, responses)
    new_logprobs = torch.masked_fill(new_logprobs, padding_mask, INVALID_LOGPROB)
    vp = torch.masked_fill(vpred_leaf, value_mask_pad, 0)
    vpredclipped = torch.clamp(vp, values - cliprange_value, values + cliprange_value)
    vf_losses1 = torch.square(vp - returns)
    vf_losses2 = torch.square(vpredclipped - returns)
    vf_loss_max = torch.max(vf_losses1, vf_losses2)
    vf_loss = 0.5 * masked_mean(vf_loss_max, ~value_mask_pad)
    vf_clipfrac = masked_mean((vf_losses2 > vf_losses1).float(), ~value_mask_pad)
    logprobs_diff = new_logprobs - logprobs
    ratio = torch.exp(logprobs_diff)
    pg_losses = -advantages * ratio
    pg_losses2 = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    pg_loss_max = torch.max(pg_losses, pg_losses2)
    pg_loss = masked_mean(pg_loss_max, ~padding_mask)
    loss = pg_loss + vf_coef * vf_loss
    loss.backward()
    with torch.no_grad():
        pg_clipfrac = masked_mean((pg_losses2 > pg_losses).float(), ~padding_mask)
        # TRL: 0.5 * (logprobs_diff**2).mean() and entropy over every position; here over the valid ones
        approxkl = 0.5 * masked_mean(logprobs_diff**2, ~padding_mask)
        entropy = entropy_from_logits(logits)

    def flat(t):
        return [float(x) for x in t.detach().reshape(-1).tolist()]

    return {
        "mode": mode, "klEstimator": kl_estimator, "whitenRewards": whiten_rewards, "missingEosPenalty": missing_eos_penalty,
        "klCoef": kl_coef, "gamma": gamma, "lam": lam, "cliprange": cliprange, "cliprangeValue": cliprange_value, "vfCoef": vf_coef,
        "lengths": [int(x) + 1 for x in sequence_lengths.tolist()], "hasEos": [int(x) for x in contain_eos_token.tolist()],
        "scores": flat(scores), "kl": flat(torch.masked_fill(kl, padding_mask, 0)), "rewards": flat(rewards),
        "advantages": flat(advantages), "returns": flat(returns), "newLogprobs": flat(torch.masked_fill(new_logprobs, padding_mask, 0)),
        "entropy": flat(entropy), "pgLoss": float(pg_loss.detach()), "vfLoss": float(vf_loss.detach()), "loss": float(loss.detach()),
        "clipFraction": float(pg_clipfrac), "valueClipFraction": float(vf_clipfrac), "approxKl": float(approxkl),
        "gradLogits": flat(logits_leaf.grad), "gradValues": flat(vpred_leaf.grad),
    }


def main():
    responses, old_logits, logits, ref_logits, values, vpred, scores = rollouts()

    def flat(t):
        return [float(x) for x in t.reshape(-1).tolist()]

    ctl = AdaptiveKLController(0.2, 6.0, 10000)
    kl_updates = []
    for current in [1.0, 5.5, 6.0, 9.0, 30.0, 0.0]:
        ctl.update(current, 64)
        kl_updates.append({"current": current, "nSteps": 64, "value": float(ctl.value)})
    out = {
        "versions": {"trl": trl.__version__, "torch": torch.__version__},
        "source": "scripts/trl-ppo-parity.py: TRL PPOTrainer (huggingface/trl @a08e713 trl/trainer/ppo_trainer.py) formulas, trl's selective_log_softmax and entropy_from_logits",
        "B": B, "T": T, "V": V, "eos": EOS,
        "responses": [[int(x) for x in r] for r in responses.tolist()],
        "oldLogits": flat(old_logits), "logits": flat(logits), "refLogits": flat(ref_logits),
        "values": flat(values), "vpred": flat(vpred), "scores": flat(scores),
        "cases": [run_case("trl", "k1", False, 1.0), run_case("eos", "k3", True, 0.5)],
        "adaptiveKl": {"init": 0.2, "target": 6.0, "horizon": 10000, "updates": kl_updates},
    }
    text = json.dumps(out)
    if len(sys.argv) > 2 and sys.argv[1] == "--write":
        with open(sys.argv[2], "w") as f:
            f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
