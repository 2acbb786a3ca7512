"""TRL SFTTrainer peer of `npm run bench -- sft` (scripts/bench/sft.ts): one process per mode.

Reads one JSON request on stdin: the model (a Hugging Face LlamaConfig dict), the conversations
already tokenized by our renderer (input_ids + completion_mask, so both sides train on the same
tokens and the same supervised positions), T, B, the mode (full or lora), LoRA settings, steps.
Builds LlamaForCausalLM and SFTTrainer (completion-only loss, packing bfd at max_length T, which
is padding-free: rows flattened with position ids, as ours packs them), then steps in lockstep
with the caller: before every optimizer step it waits for a line on stdin, after it prints
{"time", "tokens"} (the step's tokens counted from the collated batch). Prints a summary with
the process's max-RSS growth over the run (a high-water mark: weights, gradients, AdamW state,
activations and allocator caches).
"""
import collections
import json
import resource
import sys
import time

import torch

threads = int(sys.argv[1])
torch.set_num_threads(threads)

from datasets import Dataset  # noqa: E402
from peft import LoraConfig  # noqa: E402
from tokenizers import Tokenizer, models  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast, TrainerCallback  # noqa: E402
import trl  # noqa: E402
from trl import SFTConfig, SFTTrainer  # noqa: E402


def rss():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def emit(obj):
    print(json.dumps(obj), flush=True)


req = json.loads(sys.stdin.readline())
c = req["config"]
rss0 = rss()
cfg = LlamaConfig(vocab_size=c["vocab_size"], hidden_size=c["hidden_size"], intermediate_size=c["intermediate_size"],
                  num_hidden_layers=c["num_hidden_layers"], num_attention_heads=c["num_attention_heads"],
                  num_key_value_heads=c["num_key_value_heads"], max_position_embeddings=c["max_position_embeddings"],
                  rms_norm_eps=c["rms_norm_eps"], rope_theta=c["rope_theta"], tie_word_embeddings=c["tie_word_embeddings"],
                  attention_bias=False, mlp_bias=False, pad_token_id=req["padId"], bos_token_id=req["bosId"], eos_token_id=req["eosId"])
torch.manual_seed(0)
model = LlamaForCausalLM._from_config(cfg, attn_implementation=req.get("attn", "sdpa"), dtype=torch.float32)

# The conversations come tokenized; the tokenizer only names the special ids for the collator.
vocab = {f"<{i}>": i for i in range(c["vocab_size"])}
tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel(vocab=vocab, unk_token="<0>")),
                              pad_token=f"<{req['padId']}>", eos_token=f"<{req['eosId']}>", bos_token=f"<{req['bosId']}>")

ds = Dataset.from_list([{"input_ids": e["input_ids"], "completion_mask": e["completion_mask"]} for e in req["examples"]])
steps = req["steps"]
args = SFTConfig(output_dir=req["outDir"], max_steps=steps, per_device_train_batch_size=req["B"], gradient_accumulation_steps=1,
                 learning_rate=1e-4, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0,
                 packing=True, packing_strategy="bfd", max_length=req["T"], completion_only_loss=True,
                 gradient_checkpointing=False, logging_steps=1, save_strategy="no", report_to=[], use_cpu=True, dataloader_num_workers=0,
                 seed=0, data_seed=0, bf16=False, fp16=False, disable_tqdm=True, dataset_num_proc=None)
peft_config = None
if req["mode"] == "lora":
    lo = req["lora"]
    peft_config = LoraConfig(r=lo["r"], lora_alpha=lo["alpha"], lora_dropout=lo["dropout"], target_modules=lo["targetModules"],
                             bias="none", task_type="CAUSAL_LM")

tokens_q = collections.deque()


class Lockstep(TrainerCallback):
    t0 = 0.0
    loss = None

    def on_step_begin(self, a, state, control, **kw):
        line = sys.stdin.readline()
        if not line or line.strip() == "stop":
            control.should_training_stop = True
        self.t0 = time.perf_counter()

    def on_step_end(self, a, state, control, **kw):
        dt = time.perf_counter() - self.t0
        emit({"time": dt, "tokens": tokens_q.popleft() if tokens_q else 0, "step": state.global_step})

    def on_log(self, a, state, control, logs=None, **kw):
        if logs and "loss" in logs:
            self.loss = logs["loss"]


trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok, peft_config=peft_config, callbacks=[Lockstep()])
inner = trainer.data_collator


def counting(features):
    batch = inner(features)
    tokens_q.append(int(batch["input_ids"].numel()))
    return batch


trainer.data_collator = counting
trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
total = sum(p.numel() for p in trainer.model.parameters())
emit({"ready": True, "torch": torch.__version__, "trl": trl.__version__, "threads": torch.get_num_threads(),
      "trainable": trainable, "total": total, "rows": len(trainer.train_dataset)})
cb = [c for c in trainer.callback_handler.callbacks if isinstance(c, Lockstep)][0]
trainer.train()
emit({"done": True, "rssGrowth": rss() - rss0, "loss": cb.loss})
