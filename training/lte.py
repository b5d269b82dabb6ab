"""`python -m training lte`: LoRA alignment of the LLM to LTE's edit template (METHODS.md §2).

The run: load the train cases, build the alignment rows with our encoder's distractors, tokenise each
row exactly as the lte backend renders it (recall.lm.prompts), then train a peft LoRA adapter on the
answer tokens only: next-token loss for edit rows, and for out_of_scope rows KL(base || adapted), where
the base model (adapter off) sees the question alone, as it does when no edit is admitted.
The adapter, its training.json and (with `bundle_as`) a copy in recall/adapters/ come out at the end.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, get_peft_model

from recall.artifacts import write_training_info
from recall.build import load_encoder
from recall.lm.loading import LanguageModel
from recall.lm.lora import TRAINING_FILE
from recall.lm.prompts import TemplateName, prompt_text
from recall.lm.scoring import end_of_turn_id, prompt_ids, score_ids, target_ids, target_logits
from training.config import LteTrainConfig
from training.errors import TrainingError
from training.loop import LoopSettings, TrainLoop
from training.losses import kl_from_base
from training.lte_data import AlignmentRow, build_rows
from training.runs import bundle, start_run

COMMAND = "python -m training lte --config configs/train/lte_lora.yaml"

# A context in which the model runs without its adapter: the base model (peft's disable_adapter).
AdapterOff = Callable[[], AbstractContextManager[None]]


@dataclass(frozen=True)
class Example:
    """A tokenised row: the rendered prompt, the answer ids, its kind, and for out_of_scope rows the
    question rendered alone (`plain`: what the base model sees when no edit is admitted)."""

    prompt: list[int]
    target: list[int]  # edit answers end with the end-of-turn token; locality answers do not
    kind: str
    plain: list[int] | None = None


def encode_rows(
    lm: LanguageModel, rows: Sequence[AlignmentRow], max_length: int, template: TemplateName = "lte"
) -> tuple[list[Example], int]:
    """Examples in row order, and how many rows were dropped for being longer than `max_length`."""
    end = end_of_turn_id(lm)  # appended to every edit answer: the model learns to stop after it
    if end is None:
        raise TrainingError(f"{lm.model_id} has neither an end-of-turn nor an EOS token to end answers")
    examples: list[Example] = []
    dropped = 0
    for row in rows:
        text = prompt_text(lm, row.question, row.facts, template)
        prompt = prompt_ids(lm, text)
        plain = None
        target = target_ids(lm, row.target, leading_space=False)
        if row.kind == "out_of_scope":
            plain = prompt_ids(lm, prompt_text(lm, row.question, ()))
        else:
            target = [*target, end]
        if not target or len(prompt) + len(target) > max_length:
            dropped += 1
            continue
        examples.append(Example(prompt, target, row.kind, plain))
    return examples, dropped


def base_logits(lm: LanguageModel, batch: Sequence[Example], adapter_off: AdapterOff) -> torch.Tensor:
    """(out_of_scope answer tokens, V): the base model's logits on the plain questions."""
    with torch.no_grad(), adapter_off():
        return target_logits(lm, [(e.plain, e.target) for e in batch if e.plain is not None])


def answer_loss(lm: LanguageModel, batch: Sequence[Example], adapter_off: AdapterOff) -> torch.Tensor:
    """Mean over the batch's answer tokens (prompt tokens carry no loss) of the cross-entropy for edit
    rows and of KL(base || adapted) for out_of_scope rows."""
    edits = [e for e in batch if e.plain is None]
    local = [e for e in batch if e.plain is not None]
    logits = target_logits(lm, [(e.prompt, e.target) for e in edits + local])  # (answer tokens, V)
    labels = torch.tensor([tok for e in edits for tok in e.target], dtype=torch.long, device=lm.device)
    cut = len(labels)  # the edit rows' tokens come first
    total = torch.nn.functional.cross_entropy(logits[:cut], labels, reduction="sum")
    if local:
        total = total + kl_from_base(base_logits(lm, local, adapter_off), logits[cut:]).sum()
    return total / len(logits)


@torch.no_grad()
def validate(lm: LanguageModel, examples: Sequence[Example], adapter_off: AdapterOff) -> dict[str, float]:
    """Per kind: teacher-forced token accuracy and mean NLL of the answer tokens; for out_of_scope rows
    also `out_of_scope_agree`, the argmax agreement with the base model on the plain question (the
    eval's locality with a wrongly admitted edit)."""
    lm.model.eval()  # type: ignore[no-untyped-call]
    scores = score_ids(lm, [(e.prompt, e.target) for e in examples], batch_size=16)
    local = [e for e in examples if e.plain is not None]
    agree: list[float] = []
    for start in range(0, len(local), 16):
        chunk = local[start : start + 16]
        adapted = target_logits(lm, [(e.prompt, e.target) for e in chunk]).argmax(-1)
        agree.extend((adapted == base_logits(lm, chunk, adapter_off).argmax(-1)).float().tolist())
    lm.model.train()
    metrics: dict[str, float] = {}
    for kind in sorted({e.kind for e in examples}):
        picked = [s for s, e in zip(scores, examples, strict=True) if e.kind == kind]
        metrics[f"{kind}_acc"] = round(sum(s.accuracy for s in picked) / len(picked), 4)
        metrics[f"{kind}_nll"] = round(-sum(s.mean_logprob for s in picked) / len(picked), 4)
    if agree:
        metrics["out_of_scope_agree"] = round(sum(agree) / len(agree), 4)
    return metrics


def name_base_model(adapter_dir: Path, model: str) -> None:
    """Name the base model in adapter_config.json by its recall name, not this machine's cache path."""
    config_file = adapter_dir / "adapter_config.json"
    adapter_config = json.loads(config_file.read_text())
    adapter_config["base_model_name_or_path"] = model
    config_file.write_text(json.dumps(adapter_config, indent=2) + "\n")


def describe_adapter(adapter_dir: Path, model: str) -> None:
    """Replace peft's blank model card with one built from training.json."""
    info = json.loads((adapter_dir / TRAINING_FILE).read_text())
    final = info["validation"][-1] if info["validation"] else {}
    rows = ", ".join(f"{n} {k}" for k, n in info["data"]["rows"].items())
    cases = ", ".join(f"{k} {n}" for k, n in info["data"]["cases"].items())
    template = info["config"].get("template", "lte")
    block = (
        "the earlier chat exchanges that state admitted edits"
        if template == "dialog"
        else f"the edit block of the `{template}` template"
    )
    lines = [
        f"# LTE alignment adapter for {model}",
        "",
        f"A LoRA adapter (peft) that teaches the model to answer from {block}",
        "when they apply, and to answer as the base model would when they do not (METHODS.md §2).",
        "recall's lte backend uses it only for prompts that carry admitted edits (`--backend lte_aligned`),",
        f"with `template: {template}` (recall/lm/prompts.py).",
        "",
        f"Rebuild: `{info['command']}` (from the repository root, beside ../shared).",
        "",
        f"- train cases: {cases}; rows: {rows}; "
        f"{info['data']['excluded']} cases left out (no-op edits, or prompts in an evaluation split)",
        f"- {info['examples']['train']} training rows, {info['examples']['validation']} validation rows; "
        f"{info['steps']} optimizer steps",
        f"- training {info['train_seconds'] / 60:.1f} min; whole run "
        f"{info['total_seconds_this_process'] / 60:.1f} min (data included)",
        "- final validation (teacher-forced token accuracy on the row's answer): "
        + ", ".join(f"{k} {v}" for k, v in final.items() if k.endswith("_acc")),
        "- with the statements nearest a locality question in the block, argmax agreement with the base "
        f"model on its answer: out_of_scope_agree {final.get('out_of_scope_agree', '-')}",
        "",
        "training.json holds the resolved config and the full validation log.",
    ]
    (adapter_dir / "README.md").write_text("\n".join(lines) + "\n")


def run(config: LteTrainConfig, *, fresh: bool = False, command: str = COMMAND) -> Path:
    """Train (or resume) the LoRA adapter; returns the adapter directory. `command` is what training.json
    says rebuilds it."""
    began = time.perf_counter()
    start = start_run(config, fresh=fresh)
    run_dir, lm, sources, excluded = start.run_dir, start.lm, start.sources, start.excluded
    rows, report = build_rows(config, sources, load_encoder(config.encoder, 64), excluded)
    print(
        f"cases {report.cases}; rows {report.rows}; "
        f"{excluded} left out (no-op, or prompt in an evaluation split)"
    )
    examples, dropped = encode_rows(lm, rows, config.max_length, config.template)
    random.Random(config.seed).shuffle(examples)
    n_val = max(1, int(len(examples) * config.val_fraction))
    val, train = examples[:n_val], examples[n_val:]
    print(
        f"examples: {len(train)} train, {len(val)} validation, "
        f"{dropped} dropped (> {config.max_length} tokens)"
    )

    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=list(config.target_modules),
        task_type="CAUSAL_LM",
    )
    peft_model: Any = get_peft_model(lm.model, lora)
    # The LlamaForCausalLM inside, now holding LoRA layers: scoring code treats it like any model.
    tuned = LanguageModel(peft_model.base_model.model, lm.tokenizer, lm.model_id, lm.fingerprint)
    tuned.model.train()
    params = [p for p in peft_model.parameters() if p.requires_grad]
    settings = LoopSettings.from_config(config, config.batch_size, config.grad_accum)
    loop: TrainLoop[Example] = TrainLoop(
        params,
        train,
        [len(e.prompt) + len(e.target) for e in train],
        lambda b: answer_loss(tuned, b, peft_model.disable_adapter),
        lambda: validate(tuned, val, peft_model.disable_adapter),
        settings,
        run_dir,
        config.to_dict(),
    )
    if not fresh and loop.resume():
        print(f"resumed from {loop.checkpoint_path} at step {loop.state.step}/{loop.total_steps}")
    state = loop.run()

    adapter_dir = run_dir / "adapter"
    peft_model.save_pretrained(str(adapter_dir))
    name_base_model(adapter_dir, config.model)  # before training.json records the files' digests
    info = {
        "model": config.model,
        "model_fingerprint": lm.fingerprint,
        "command": command,
        "config": config.to_dict(),
        "data": asdict(report),
        "examples": {"train": len(train), "validation": len(val), "dropped": dropped},
        "steps": state.step,
        "train_seconds": round(state.seconds, 1),
        "total_seconds_this_process": round(time.perf_counter() - began, 1),
        "validation": state.log,
    }
    write_training_info(adapter_dir, info)
    describe_adapter(adapter_dir, config.model)
    bundle(adapter_dir, config.bundle_as)
    print(f"adapter: {adapter_dir} ({state.step} steps, {state.seconds / 60:.1f} min of training)")
    return adapter_dir
