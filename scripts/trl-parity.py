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
import sys
import tempfile

from _trl_common import load_causal, read_jsonl, recording, run_parser, training_args, versions, write_json


def main():
    p, r = run_parser(__doc__)
    r.add_argument("--grad-accum", type=int, default=1)
    r.add_argument("--max-length", type=int, default=128)
    r.add_argument("--max-grad-norm", type=float, default=0.0)
    args = p.parse_args()

    import peft
    import torch
    import transformers
    import trl
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    tok, model = load_causal(args.model, args.adapter)
    dataset = Dataset.from_list(read_jsonl(args.data, ("messages",)))
    Recording = recording(SFTTrainer, ("input_ids", "labels", "attention_mask"))

    with tempfile.TemporaryDirectory() as work:
        config = training_args(
            SFTConfig, work, args, gradient_accumulation_steps=args.grad_accum, max_grad_norm=args.max_grad_norm,
            assistant_only_loss=True, packing=False, padding_free=False, max_length=args.max_length,
        )
        trainer = Recording(model=model, args=config, train_dataset=dataset, processing_class=tok)
        trainer.train()

    g = args.grad_accum
    micro = Recording.losses
    assert len(micro) == args.steps * g, (len(micro), args.steps, g)
    steps = [sum(micro[i * g:(i + 1) * g]) for i in range(args.steps)]
    logged = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    write_json(args.out, {
        "versions": versions(trl, transformers, peft, torch),
        "mode": "lora" if args.adapter else "full",
        "settings": {"steps": args.steps, "batchSize": args.batch_size, "gradAccum": g, "lr": args.lr, "maxLength": args.max_length, "maxGradNorm": args.max_grad_norm},
        "losses": steps,
        "microLosses": micro,
        "loggedLosses": logged,
        "batches": Recording.batches,
    })
    print(f"trl-parity: {len(steps)} steps, losses {[round(x, 5) for x in steps]}, logged {logged}", file=sys.stderr)


if __name__ == "__main__":
    main()
