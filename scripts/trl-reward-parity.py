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
import argparse
import json
import os
import sys
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
import torch
from datasets import Dataset
from torch.utils.data import SequentialSampler


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("model")
    r.add_argument("data")
    r.add_argument("out")
    r.add_argument("--steps", type=int, default=10)
    r.add_argument("--batch-size", type=int, default=2)
    r.add_argument("--lr", type=float, default=1e-3)
    r.add_argument("--max-grad-norm", type=float, default=1.0)
    r.add_argument("--max-length", type=int, default=1024)
    r.add_argument("--margin", type=float)
    r.add_argument("--center", type=float)
    r.add_argument("--adapter")
    args = p.parse_args()

    import transformers
    import trl
    from transformers import AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    tok = AutoTokenizer.from_pretrained(args.model)
    with open(args.data, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    records = [{"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]} for r in rows]
    if args.margin is not None:
        for rec in records:
            rec["margin"] = args.margin
    dataset = Dataset.from_list(records)

    class Recording(RewardTrainer):
        """RewardTrainer that reads its data in order and records each training step's loss and batch."""

        losses = []
        batches = []

        def _get_train_sampler(self, *a, **k):
            return SequentialSampler(self.train_dataset)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            training = model.training
            if training:
                Recording.batches.append({k: inputs[k].tolist() for k in ("input_ids", "attention_mask")})
            out = super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)
            if training:
                Recording.losses.append((out[0] if return_outputs else out).item())
            return out

    with tempfile.TemporaryDirectory() as work:
        config = RewardConfig(
            output_dir=work, max_steps=args.steps, per_device_train_batch_size=args.batch_size, gradient_accumulation_steps=1,
            learning_rate=args.lr, lr_scheduler_type="constant", warmup_steps=0, optim="adamw_torch",
            adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8, weight_decay=0.0, max_grad_norm=args.max_grad_norm,
            max_length=args.max_length, center_rewards_coefficient=args.center,
            use_cpu=True, bf16=False, fp16=False, gradient_checkpointing=False, seed=0, data_seed=0,
            model_init_kwargs={"dtype": torch.float32, "attn_implementation": "eager"},
            logging_steps=1, save_strategy="no", eval_strategy="no", report_to="none", dataloader_drop_last=False,
            disable_tqdm=True,
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

    out = {
        "versions": {"trl": trl.__version__, "transformers": transformers.__version__, "torch": torch.__version__},
        "mode": "lora" if args.adapter else "full",
        "settings": {"steps": args.steps, "batchSize": args.batch_size, "lr": args.lr, "maxGradNorm": args.max_grad_norm, "margin": args.margin, "center": args.center},
        "pad_token_id": pad,
        "losses": Recording.losses,
        "batches": Recording.batches,
    }
    with open(args.out, "w") as f:
        json.dump(out, f)
    print(f"trl-reward-parity: {len(Recording.losses)} steps, losses {[round(x, 5) for x in Recording.losses]}", file=sys.stderr)


if __name__ == "__main__":
    main()
