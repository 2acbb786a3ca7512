#!/usr/bin/env python3
"""TRL's SFTTrainer as the reference for `patentgpt sft` (test/models/trl-parity.test.ts).

    python scripts/trl-parity.py run MODEL_DIR DATA_JSONL OUT_JSON [--adapter ADAPTER_DIR]
        [--steps 10] [--batch-size 2] [--grad-accum 1] [--lr 1e-3] [--max-length 128] [--max-grad-norm 0]

MODEL_DIR is a tiny LLaMA folder with tokenizer.model and a tokenizer_config.json whose Jinja
chat_template has {% generation %} blocks (the test makes it); DATA_JSONL holds one
{"messages": [...]} conversation a line. SFTTrainer trains on them for --steps optimizer steps with
what `patentgpt sft` does: f32 on the CPU, the conversations in file order (sequential sampler, no
shuffling), one conversation a row padded to the batch's longest (packing and padding-free off),
the loss on the assistant tokens only (assistant_only_loss: the template's generation blocks),
AdamW (torch) with a constant learning rate, no warm-up, no weight decay, no clipping unless
--max-grad-norm. With --grad-accum G, a step's loss is the sum of its G micro-batches' losses,
each summed token losses / the step's supervised tokens (transformers' num_items_in_batch): the
step's mean over all its supervised tokens, which is what TRL logs and backpropagates. With --adapter, the PEFT adapter folder is loaded
trainable on the base (PeftModel.from_pretrained), so both sides start from the same A and B.

OUT_JSON: versions, the loss of each step (the values SFTTrainer.compute_loss returned and
backpropagated, summed over the step's micro-batches), TRL's logged losses (rounded to 4 digits
by transformers), and the input ids and labels of each micro-batch, to find where a difference
comes from.
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
    r.add_argument("--grad-accum", type=int, default=1)
    r.add_argument("--lr", type=float, default=1e-3)
    r.add_argument("--max-length", type=int, default=128)
    r.add_argument("--max-grad-norm", type=float, default=0.0)
    args = p.parse_args()

    import peft
    import transformers
    import trl
    from trl import SFTConfig, SFTTrainer

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(args.model)
    model = LlamaForCausalLM.from_pretrained(args.model, dtype=torch.float32, attn_implementation="eager")
    if args.adapter:
        model = peft.PeftModel.from_pretrained(model, args.adapter, is_trainable=True)
    with open(args.data, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    dataset = Dataset.from_list([{"messages": r["messages"]} for r in rows])

    class Recording(SFTTrainer):
        """SFTTrainer that reads its data in order and records each training step's loss and batch."""

        losses = []
        batches = []

        def _get_train_sampler(self, *a, **k):
            return SequentialSampler(self.train_dataset)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            training = model.training
            if training:
                Recording.batches.append({k: inputs[k].tolist() for k in ("input_ids", "labels", "attention_mask")})
            out = super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)
            if training:
                Recording.losses.append((out[0] if return_outputs else out).item())
            return out

    with tempfile.TemporaryDirectory() as work:
        config = SFTConfig(
            output_dir=work, max_steps=args.steps, per_device_train_batch_size=args.batch_size, gradient_accumulation_steps=args.grad_accum,
            learning_rate=args.lr, lr_scheduler_type="constant", warmup_steps=0, optim="adamw_torch",
            adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8, weight_decay=0.0, max_grad_norm=args.max_grad_norm,
            assistant_only_loss=True, packing=False, padding_free=False, max_length=args.max_length,
            use_cpu=True, bf16=False, fp16=False, gradient_checkpointing=False, seed=0, data_seed=0,
            logging_steps=1, save_strategy="no", eval_strategy="no", report_to="none", dataloader_drop_last=False,
            disable_tqdm=True,
        )
        trainer = Recording(model=model, args=config, train_dataset=dataset, processing_class=tok)
        trainer.train()

    g = args.grad_accum
    micro = Recording.losses
    assert len(micro) == args.steps * g, (len(micro), args.steps, g)
    steps = [sum(micro[i * g:(i + 1) * g]) for i in range(args.steps)]
    logged = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    out = {
        "versions": {"trl": trl.__version__, "transformers": transformers.__version__, "peft": peft.__version__, "torch": torch.__version__},
        "mode": "lora" if args.adapter else "full",
        "settings": {"steps": args.steps, "batchSize": args.batch_size, "gradAccum": g, "lr": args.lr, "maxLength": args.max_length, "maxGradNorm": args.max_grad_norm},
        "losses": steps,
        "microLosses": micro,
        "loggedLosses": logged,
        "batches": Recording.batches,
    }
    with open(args.out, "w") as f:
        json.dump(out, f)
    print(f"trl-parity: {len(steps)} steps, losses {[round(x, 5) for x in steps]}, logged {logged}", file=sys.stderr)


if __name__ == "__main__":
    main()
