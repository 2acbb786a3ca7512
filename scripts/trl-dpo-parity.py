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
import sys
import tempfile

from _trl_common import load_causal, read_jsonl, recording, run_parser, training_args, versions, write_json


def main():
    p, r = run_parser(__doc__)
    r.add_argument("--beta", type=float, default=0.1)
    r.add_argument("--loss", default="sigmoid")
    r.add_argument("--max-length", type=int, default=128)
    args = p.parse_args()

    import peft
    import torch
    import transformers
    import trl
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    tok, model = load_causal(args.model, args.adapter)
    dataset = Dataset.from_list(read_jsonl(args.data, ("prompt", "chosen", "rejected")))
    Recording = recording(DPOTrainer, ("input_ids", "completion_mask", "attention_mask"))

    with tempfile.TemporaryDirectory() as work:
        config = training_args(
            DPOConfig, work, args,
            beta=args.beta, loss_type=[args.loss], max_length=args.max_length, precompute_ref_log_probs=not args.adapter,
        )
        trainer = Recording(model=model, args=config, train_dataset=dataset, processing_class=tok)
        trainer.train()

    assert len(Recording.losses) == args.steps, (len(Recording.losses), args.steps)
    logged = [{k: v for k, v in h.items() if k.startswith(("rewards/", "logps/")) or k == "loss"} for h in trainer.state.log_history if "loss" in h]
    write_json(args.out, {
        "versions": versions(trl, transformers, peft, torch),
        "settings": {"steps": args.steps, "batchSize": args.batch_size, "lr": args.lr, "beta": args.beta, "loss": args.loss, "maxLength": args.max_length, "lora": bool(args.adapter)},
        "losses": Recording.losses,
        "logged": logged,
        "batches": Recording.batches,
    })
    print(f"trl-dpo-parity: {len(Recording.losses)} steps, losses {[round(x, 5) for x in Recording.losses]}", file=sys.stderr)


if __name__ == "__main__":
    main()
