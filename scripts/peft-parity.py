#!/usr/bin/env python3
"""PEFT as the reference for our LoRA (src/nn/lora.ts) and its adapter format (src/models/peft.ts).

    python scripts/peft-parity.py fixture [--out test/fixtures]
        On the tiny LLaMA folder test/fixtures/hf-tiny (scripts/hf-parity.py), makes a LoRA adapter
        with PEFT (r 4, alpha 8, q_proj/v_proj/down_proj, B random so the adapter matters), saves it
        as a PEFT folder (OUT/peft-tiny-adapter) and golden values (OUT/peft-tiny-golden.json):
        logits, loss, the gradient of every lora_A/lora_B, and merge_and_unload's weights.

    python scripts/peft-parity.py run BASE_DIR ADAPTER_DIR BATCH_JSON OUT_DIR
        Loads BASE_DIR with transformers (f32) and ADAPTER_DIR with PeftModel.from_pretrained
        (trainable), and writes OUT_DIR/reference.safetensors: "logits", "grad.<name>" for every
        adapter tensor and "merged.<name>" for every weight merge_and_unload changed (names as ours:
        model.layers.0.self_attn.q_proj.lora_A.weight); OUT_DIR/reference.json holds the loss.

A packed batch (tokens, targets, cuSeqlens) is fed one document at a time, as scripts/hf-parity.py.
"""
import argparse
import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch
import torch.nn.functional as F
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import save_file
from transformers import LlamaForCausalLM

PREFIX = "base_model.model."


def load_base(model_dir):
    return LlamaForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager")


def logits_and_loss(model, batch):
    tokens = torch.tensor(batch["tokens"], dtype=torch.long)
    targets = torch.tensor(batch["targets"], dtype=torch.long)
    cu = batch["cuSeqlens"]
    parts = [model(input_ids=tokens[s:e].unsqueeze(0), use_cache=False).logits[0] for s, e in zip(cu[:-1], cu[1:]) if e > s]
    logits = torch.cat(parts, 0)
    return logits, F.cross_entropy(logits, targets, ignore_index=-100)


def our_name(peft_name):
    """base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight -> model.layers.0...lora_A.weight"""
    return peft_name[len(PREFIX):].replace(".default.", ".")


def reference(peft_model, batch):
    """Logits, loss, adapter gradients, and merge_and_unload's weights of the adapted layers."""
    peft_model.train()
    logits, loss = logits_and_loss(peft_model, batch)
    loss.backward()
    grads = {our_name(n): p.grad.detach().clone() for n, p in peft_model.named_parameters() if "lora_" in n}
    adapted = sorted({n.rsplit(".lora_", 1)[0] for n in grads})
    merged_model = peft_model.merge_and_unload()
    state = merged_model.state_dict()
    merged = {f"{m}.weight": state[f"{m}.weight"].detach().clone() for m in adapted}
    return logits.detach(), loss.item(), grads, merged


def cmd_fixture(args):
    fixtures = args.out
    base_dir = os.path.join(fixtures, "hf-tiny")
    golden = json.load(open(os.path.join(fixtures, "hf-tiny-golden.json")))
    batch = golden["batches"][0]
    torch.manual_seed(0)
    base = load_base(base_dir)
    config = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj", "down_proj"],
                        task_type="CAUSAL_LM", init_lora_weights=False)  # B random: the adapter's term is not zero
    peft_model = get_peft_model(base, config)
    adapter_dir = os.path.join(fixtures, "peft-tiny-adapter")
    peft_model.peft_config["default"].base_model_name_or_path = "test/fixtures/hf-tiny"
    peft_model.save_pretrained(adapter_dir)
    os.remove(os.path.join(adapter_dir, "README.md"))  # PEFT's model card: not part of the format
    # What both sides will load: reload from disk so the golden values are the file's.
    base = load_base(base_dir)
    peft_model = PeftModel.from_pretrained(base, adapter_dir, is_trainable=True)
    logits, loss, grads, merged = reference(peft_model, batch)
    g = torch.Generator().manual_seed(1)
    n_rows, vocab = logits.shape
    columns = sorted(torch.randperm(vocab, generator=g)[:16].tolist())

    def sample(t, k=64):
        flat = t.reshape(-1)
        idx = sorted(torch.randperm(flat.numel(), generator=g)[:k].tolist()) if flat.numel() > k else list(range(flat.numel()))
        return {"index": idx, "values": [flat[i].item() for i in idx], "norm": flat.norm().item(), "shape": list(t.shape)}

    import peft
    out = {
        "peft": peft.__version__,
        "batch": batch,
        "logits": {"columns": columns, "values": logits[:, columns].tolist()},
        "loss": loss,
        "grads": {n: {"values": t.reshape(-1).tolist(), "shape": list(t.shape)} for n, t in grads.items()},
        "merged": {n: sample(t) for n, t in merged.items()},
    }
    with open(os.path.join(fixtures, "peft-tiny-golden.json"), "w") as f:
        json.dump(out, f)
    print(f"wrote {adapter_dir} and peft-tiny-golden.json: loss {loss:.6f}, {len(grads)} adapter tensors", file=sys.stderr)


def cmd_run(args):
    batch = json.load(open(args.batch))
    base = load_base(args.base)
    peft_model = PeftModel.from_pretrained(base, args.adapter, is_trainable=True)
    logits, loss, grads, merged = reference(peft_model, batch)
    tensors = {"logits": logits.contiguous()}
    tensors.update({f"grad.{n}": t.contiguous() for n, t in grads.items()})
    tensors.update({f"merged.{n}": t.contiguous() for n, t in merged.items()})
    os.makedirs(args.out, exist_ok=True)
    save_file(tensors, os.path.join(args.out, "reference.safetensors"))
    with open(os.path.join(args.out, "reference.json"), "w") as f:
        json.dump({"loss": loss, "adapters": sorted(grads)}, f)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fixture")
    f.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "test", "fixtures"))
    r = sub.add_parser("run")
    r.add_argument("base")
    r.add_argument("adapter")
    r.add_argument("batch")
    r.add_argument("out")
    args = p.parse_args()
    {"fixture": cmd_fixture, "run": cmd_run}[args.cmd](args)


if __name__ == "__main__":
    main()
