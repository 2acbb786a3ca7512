"""What the TRL parity scripts share (scripts/trl-parity.py, trl-dpo-parity.py, trl-reward-parity.py,
reward-parity.py): offline Hugging Face, the `run MODEL DATA OUT` command line, the JSONL pairs or
conversations, a trainer that reads its data in order and records each step's loss and batch, the
training arguments that match `patentgpt` (f32 on the CPU, AdamW at a constant rate, no warm-up, no
weight decay, nothing saved or logged elsewhere), and the JSON written back.

Imported by path: the scripts run as `python scripts/NAME.py`, so scripts/ is first on sys.path.
Importing this module sets HF_HUB_OFFLINE / HF_DATASETS_OFFLINE before torch or datasets load.
"""
import argparse
import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def parser(doc):
    """The top-level parser with its description (the script's docstring)."""
    return argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)


def run_parser(doc):
    """`run MODEL_DIR DATA_JSONL OUT_JSON [--adapter] [--steps] [--batch-size] [--lr]`; the caller adds its own options."""
    p = parser(doc)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("model")
    r.add_argument("data")
    r.add_argument("out")
    r.add_argument("--adapter")
    r.add_argument("--steps", type=int, default=10)
    r.add_argument("--batch-size", type=int, default=2)
    r.add_argument("--lr", type=float, default=1e-3)
    return p, r


def read_jsonl(path, keys):
    """One dict a non-empty line, keeping only `keys`, in file order."""
    with open(path, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [{k: row[k] for k in keys} for row in rows]


def load_causal(model_dir, adapter=None):
    """Seed 0, the folder's tokenizer and LlamaForCausalLM in f32 with eager attention; with `adapter`,
    the PEFT adapter folder loaded trainable on it (both sides start from the same A and B)."""
    import torch
    from transformers import AutoTokenizer, LlamaForCausalLM

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = LlamaForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager")
    if adapter:
        import peft

        model = peft.PeftModel.from_pretrained(model, adapter, is_trainable=True)
    return tok, model


def recording(trainer_cls, keys):
    """A subclass of `trainer_cls` that reads its data in order (sequential sampler) and records, for
    each training forward, the batch's `keys` and the loss compute_loss returned and backpropagated."""
    from torch.utils.data import SequentialSampler

    class Recording(trainer_cls):
        losses = []
        batches = []

        def _get_train_sampler(self, *a, **k):
            return SequentialSampler(self.train_dataset)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            training = model.training
            if training:
                Recording.batches.append({k: inputs[k].tolist() for k in keys})
            out = super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)
            if training:
                Recording.losses.append((out[0] if return_outputs else out).item())
            return out

    Recording.__name__ = f"Recording{trainer_cls.__name__}"
    return Recording


def training_args(config_cls, work, args, **extra):
    """`config_cls` (SFTConfig, DPOConfig, RewardConfig) as `patentgpt` trains: --steps optimizer steps
    of --batch-size at a constant --lr, AdamW (torch, betas 0.9/0.999, eps 1e-8), no warm-up, no weight
    decay, f32 on the CPU, seed 0, a log line every step and nothing saved. `extra` adds or overrides
    (gradient_accumulation_steps, max_grad_norm, the trainer's own fields)."""
    fields = dict(
        output_dir=work, max_steps=args.steps, per_device_train_batch_size=args.batch_size, gradient_accumulation_steps=1,
        learning_rate=args.lr, lr_scheduler_type="constant", warmup_steps=0, optim="adamw_torch",
        adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8, weight_decay=0.0, max_grad_norm=0.0,
        use_cpu=True, bf16=False, fp16=False, gradient_checkpointing=False, seed=0, data_seed=0,
        logging_steps=1, save_strategy="no", eval_strategy="no", report_to="none", dataloader_drop_last=False,
        disable_tqdm=True,
    )
    fields.update(extra)
    return config_cls(**fields)


def versions(*modules):
    """{name: version} of the modules given (trl, transformers, peft, torch...)."""
    return {m.__name__: m.__version__ for m in modules}


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f)
