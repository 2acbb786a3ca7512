#!/usr/bin/env python3
"""TRL's DPOTrainer as the reference for `patentgpt dpo` (test/train/dpo-parity.test.ts).

    python scripts/trl-dpo-parity.py run MODEL_DIR DATA_JSONL OUT_JSON [--adapter ADAPTER_DIR]
        [--steps 10] [--batch-size 2] [--lr 1e-3] [--beta 0.1] [--loss sigmoid|ipo] [--max-length 128]

MODEL_DIR is a tiny LLaMA folder with tokenizer.model and a tokenizer_config.json holding a Jinja
chat_template (the test makes it); DATA_JSONL holds one conversational pair a line:
{"prompt": [{"role": "user", ...}], "chosen": [{"role": "assistant", ...}], "rejected": [...]}.
DPOTrainer trains on them for --steps optimizer steps with what `patentgpt dpo` does: f32 on the
CPU, the pairs in file order (sequential sampler, no shuffling), TRL's own tokenization (the
prompt rendered with add_generation_prompt, the completion everything after it), the reference
log-probs of the initial model (precompute_ref_log_probs; with --adapter, PEFT's adapter loaded
trainable on the base and the reference the base with the adapter disabled), AdamW (torch) at a
constant learning rate, no warm-up, no weight decay, no clipping, dropout off.

OUT_JSON: versions, the loss of each step (the values DPOTrainer.compute_loss returned and
backpropagated), TRL's logged metrics per step (rewards/*, logps/*), and the input ids and
completion masks of each batch, to find where a difference comes from.
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
from transformers import AutoTokenizer, LlamaForCausalLM


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("model")
    r.add_argument("data")
    r.add_argument("out")
    r.add_argument("--adapter")
    r.add_argument("--steps", type=int, default=10)
    r.add_argument("--batch-size", type=int, default=2)
    r.add_argument("--lr", type=float, default=1e-3)
    r.add_argument("--beta", type=float, default=0.1)
    r.add_argument("--loss", default="sigmoid")
    r.add_argument("--max-length", type=int, default=128)
    args = p.parse_args()

    import peft
    import transformers
    import trl
    from trl import DPOConfig, DPOTrainer

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(args.model)
    model = LlamaForCausalLM.from_pretrained(args.model, dtype=torch.float32, attn_implementation="eager")
    if args.adapter:
        model = peft.PeftModel.from_pretrained(model, args.adapter, is_trainable=True)
    with open(args.data, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    dataset = Dataset.from_list([{"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]} for r in rows])

    class Recording(DPOTrainer):
        """DPOTrainer that reads its data in order and records each training step's loss and batch."""

        losses = []
        batches = []

        def _get_train_sampler(self, *a, **k):
            return SequentialSampler(self.train_dataset)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            training = model.training
            if training:
                Recording.batches.append({k: inputs[k].tolist() for k in ("input_ids", "completion_mask", "attention_mask")})
            out = super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)
            if training:
                Recording.losses.append((out[0] if return_outputs else out).item())
            return out

    with tempfile.TemporaryDirectory() as work:
        config = DPOConfig(
            output_dir=work, max_steps=args.steps, per_device_train_batch_size=args.batch_size, gradient_accumulation_steps=1,
            learning_rate=args.lr, lr_scheduler_type="constant", warmup_steps=0, optim="adamw_torch",
            adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8, weight_decay=0.0, max_grad_norm=0.0,
            beta=args.beta, loss_type=[args.loss], max_length=args.max_length, precompute_ref_log_probs=not args.adapter,
            use_cpu=True, bf16=False, fp16=False, gradient_checkpointing=False, seed=0, data_seed=0,
            logging_steps=1, save_strategy="no", eval_strategy="no", report_to="none", dataloader_drop_last=False,
            disable_tqdm=True,
        )
        trainer = Recording(model=model, args=config, train_dataset=dataset, processing_class=tok)
        trainer.train()

    assert len(Recording.losses) == args.steps, (len(Recording.losses), args.steps)
    logged = [{k: v for k, v in h.items() if k.startswith(("rewards/", "logps/")) or k == "loss"} for h in trainer.state.log_history if "loss" in h]
    out = {
        "versions": {"trl": trl.__version__, "transformers": transformers.__version__, "peft": peft.__version__, "torch": torch.__version__},
        "settings": {"steps": args.steps, "batchSize": args.batch_size, "lr": args.lr, "beta": args.beta, "loss": args.loss, "maxLength": args.max_length, "lora": bool(args.adapter)},
        "losses": Recording.losses,
        "logged": logged,
        "batches": Recording.batches,
    }
    with open(args.out, "w") as f:
        json.dump(out, f)
    print(f"trl-dpo-parity: {len(Recording.losses)} steps, losses {[round(x, 5) for x in Recording.losses]}", file=sys.stderr)


if __name__ == "__main__":
    main()
