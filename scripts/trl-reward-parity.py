#!/usr/bin/env python3
"""TRL's RewardTrainer as the reference for `patentgpt reward` (test/train/reward-trl-parity.test.ts).

    python scripts/trl-reward-parity.py run MODEL_DIR DATA_JSONL OUT_JSON
        [--steps 10] [--batch-size 2] [--lr 1e-3] [--max-grad-norm 1.0] [--margin M] [--center C]
        [--adapter ADAPTER_DIR]

MODEL_DIR is a tiny reward folder (LlamaForSequenceClassification, one label) with tokenizer.model
and a tokenizer_config.json with a chat template; DATA_JSONL holds one {"prompt": [messages],
"chosen": [messages], "rejected": [messages]} pair a line (conversational: TRL renders prompt +
response with apply_chat_template). RewardTrainer trains on them for --steps optimizer steps with
what `patentgpt reward` does: f32 on the CPU, pairs in file order (sequential sampler), AdamW
(torch) at a constant learning rate, no warm-up, no weight decay, clipping at --max-grad-norm, no
gradient accumulation, no gradient checkpointing. --margin adds a "margin" column (the same
value for every pair: -log sigmoid(r_c - r_r - margin)); --center sets center_rewards_coefficient
(TRL's default is None: off). With --adapter, the PEFT adapter folder (task_type SEQ_CLS,
modules_to_save ["score"]) is loaded trainable on the reward model (PeftModel.from_pretrained), so
both sides start from the same A and B and train the adapters and the whole score head.

OUT_JSON: versions, the loss of each step (what compute_loss returned and backpropagated), the
pad id TRL scored with, and each step's input_ids / attention_mask (chosen rows, then rejected).
"""
import sys
import tempfile

from _trl_common import read_jsonl, recording, run_parser, training_args, versions, write_json


def main():
    p, r = run_parser(__doc__)
    r.add_argument("--max-grad-norm", type=float, default=1.0)
    r.add_argument("--max-length", type=int, default=1024)
    r.add_argument("--margin", type=float)
    r.add_argument("--center", type=float)
    args = p.parse_args()

    import torch
    import transformers
    import trl
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    tok = AutoTokenizer.from_pretrained(args.model)
    records = read_jsonl(args.data, ("prompt", "chosen", "rejected"))
    if args.margin is not None:
        for rec in records:
            rec["margin"] = args.margin
    dataset = Dataset.from_list(records)
    Recording = recording(RewardTrainer, ("input_ids", "attention_mask"))

    with tempfile.TemporaryDirectory() as work:
        config = training_args(
            RewardConfig, work, args, max_grad_norm=args.max_grad_norm,
            max_length=args.max_length, center_rewards_coefficient=args.center,
            model_init_kwargs={"dtype": torch.float32, "attn_implementation": "eager"},
        )
        model = args.model
        if args.adapter:
            import peft
            from transformers import AutoModelForSequenceClassification

            config.model_init_kwargs = None
            base = AutoModelForSequenceClassification.from_pretrained(args.model, num_labels=1, dtype=torch.float32, attn_implementation="eager")
            model = peft.PeftModel.from_pretrained(base, args.adapter, is_trainable=True)
        trainer = Recording(model=model, args=config, train_dataset=dataset, processing_class=tok)
        pad = trainer.model.config.pad_token_id
        trainer.train()

    write_json(args.out, {
        "versions": versions(trl, transformers, torch),
        "mode": "lora" if args.adapter else "full",
        "settings": {"steps": args.steps, "batchSize": args.batch_size, "lr": args.lr, "maxGradNorm": args.max_grad_norm, "margin": args.margin, "center": args.center},
        "pad_token_id": pad,
        "losses": Recording.losses,
        "batches": Recording.batches,
    })
    print(f"trl-reward-parity: {len(Recording.losses)} steps, losses {[round(x, 5) for x in Recording.losses]}", file=sys.stderr)


if __name__ == "__main__":
    main()
