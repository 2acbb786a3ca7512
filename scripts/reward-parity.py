#!/usr/bin/env python3
"""transformers' sequence classification as the reference for our reward model (src/models/reward.ts;
test/models/reward-parity.test.ts).

    python scripts/reward-parity.py scores MODEL_DIR ROWS_JSON OUT_JSON
        AutoModelForSequenceClassification on MODEL_DIR (f32, eager attention) scores the
        right-padded rows of ROWS_JSON ({"rows": [[ids...], ...], "attention_mask": [[1, 1, 0], ...]})
        in one batch, as TRL's RewardTrainer does. OUT_JSON: {"architecture", "pad_token_id",
        "scores": [one per row], "last_index": [the position transformers read each score at],
        "versions"}.

    python scripts/reward-parity.py from-causal CAUSAL_DIR OUT_DIR --seed S --pad-token-id P
        AutoModelForSequenceClassification.from_pretrained(CAUSAL_DIR, num_labels=1) after
        set_seed(S), as RewardTrainer starts a reward model from a causal LM (lm_head dropped,
        score.weight newly drawn), config.pad_token_id = P, saved with save_pretrained.
"""
import json
import sys

from _trl_common import parser, versions, write_json
import torch


def main():
    p = parser(__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("scores")
    s.add_argument("model")
    s.add_argument("rows")
    s.add_argument("out")
    f = sub.add_parser("from-causal")
    f.add_argument("causal")
    f.add_argument("out")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--pad-token-id", type=int, required=True)
    args = p.parse_args()

    import transformers
    from transformers import AutoModelForSequenceClassification, set_seed

    if args.cmd == "from-causal":
        set_seed(args.seed)
        model = AutoModelForSequenceClassification.from_pretrained(args.causal, num_labels=1, dtype=torch.float32)
        model.config.pad_token_id = args.pad_token_id
        model.save_pretrained(args.out)
        print(f"reward-parity: {type(model).__name__} saved to {args.out}", file=sys.stderr)
        return

    model = AutoModelForSequenceClassification.from_pretrained(args.model, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    with open(args.rows) as fh:
        data = json.load(fh)
    ids = torch.tensor(data["rows"], dtype=torch.long)
    mask = torch.tensor(data["attention_mask"], dtype=torch.long)
    with torch.no_grad():
        scores = model(input_ids=ids, attention_mask=mask).logits.squeeze(-1)
    pad = model.config.pad_token_id
    # transformers' own rule (GenericForSequenceClassification): the rightmost token that is not the pad id
    non_pad = (ids != pad).to(torch.int32)
    last = (torch.arange(ids.shape[-1], dtype=torch.int32) * non_pad).argmax(-1)
    out = {
        "architecture": type(model).__name__,
        "pad_token_id": pad,
        "num_labels": model.config.num_labels,
        "scores": scores.tolist(),
        "last_index": last.tolist(),
        "versions": versions(transformers, torch),
    }
    write_json(args.out, out)


if __name__ == "__main__":
    main()
