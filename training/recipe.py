"""`python -m training recipe`: RECIPE's knowledge model for a frozen LLM (METHODS.md §1.5).

Each step takes `retrieval_batch` edits. The retriever terms use all of them (cheap: MiniLM):
- L_nbr: each in-scope query (edit question and paraphrase) must pick its own key among the batch's
  keys and the sentinel;
- L_ks_in: with its own key removed, the sentinel must beat every other key (hinge-masked);
- L_ks_out: for a locality query the sentinel must beat every key (hinge-masked).
The editing terms run the frozen LLM on the first `edit_batch` edits, each with its own prompt
P_i = [MLP_P(r_k_i); the statement's token embeddings] prepended, shuffled among 0-2 distractor prompts
(its nearest other edits in the batch, `distractor_mix`): hinged NLL of the target after the question
(L_rel) and the paraphrase (L_gen), and KL(base || prompted) on the locality answer tokens (L_loc).
With `conflict_rate`, one distractor of the question's block is a conflicting edit: the paraphrase with
another target. The question must still get its own target, so the model learns to follow the prompt
whose words match the question, as a memory holding two edits of one fact needs.
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.nn.functional import cross_entropy, normalize

from recall.artifacts import ArtifactError, write_training_info
from recall.backends.recipe.files import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    edit_prompts,
    fact_prompts,
    load_weights,
    new_knowledge_model,
    resolve_knowledge,
    save_knowledge,
)
from recall.backends.recipe.model import KnowledgeModel, KnowledgeSettings
from recall.lm.loading import LanguageModel
from recall.lm.prompts import Fact
from recall.lm.scoring import target_logits
from training.config import RecipeTrainConfig
from training.errors import TrainingError
from training.loop import LoopSettings, TrainLoop
from training.losses import kl_from_base
from training.recipe_data import RecipeExample, build_edits, tokenise
from training.recipe_gate import calibrate_margin
from training.runs import bundle, start_run

COMMAND = "python -m training recipe --config configs/train/recipe.yaml"

_EPS = 1e-8


def hinged_nll(logits: torch.Tensor, labels: torch.Tensor, scale: float) -> torch.Tensor:
    """Mean -log p(label) over the rows where p(label) < scale x the best other p (all rows if scale
    is 0). logits (N, C), labels (N,). Zero when no row counts."""
    probs = logits.softmax(-1)
    target = probs.gather(1, labels[:, None])[:, 0]
    if scale <= 0:
        return -(target + _EPS).log().mean()
    other = probs.scatter(1, labels[:, None], 0.0).amax(-1)
    keep = target < scale * other
    if not keep.any():
        return logits.sum() * 0.0
    return -(target[keep] + _EPS).log().mean()


def retrieval_losses(
    model: KnowledgeModel, batch: Sequence[RecipeExample], config: RecipeTrainConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """(contrastive loss, raw keys r_k (B, R) for the prompt head)."""
    edits = [e.edit for e in batch]
    keys_raw = model.encode([e.statement for e in edits], "key")  # (B, R)
    keys = normalize(keys_raw, dim=-1)
    sentinel = normalize(model.sentinel_key(), dim=-1)  # (1, R)
    candidates = torch.cat([keys, sentinel])  # (B + 1, R); the sentinel is column B
    size = len(edits)
    own = torch.arange(size, device=keys.device)
    loss = keys.sum() * 0.0
    for texts in ([e.rel for e in edits], [e.gen for e in edits]):
        logits = normalize(model.encode(texts, "query"), dim=-1) @ candidates.T / config.temperature
        loss = loss + cross_entropy(logits, own)  # L_nbr
        # L_ks_in: the query's own key is replaced by the sentinel's score; the sentinel is the target.
        swapped = logits[:, :size].clone()
        swapped[own, own] = logits[:, size]
        loss = loss + hinged_nll(swapped, own, config.contrastive_hinge)
    loc = normalize(model.encode([e.loc for e in edits], "query"), dim=-1) @ candidates.T
    sentinel_label = torch.full((size,), size, device=keys.device)
    loss = loss + hinged_nll(loc / config.temperature, sentinel_label, config.contrastive_hinge)  # L_ks_out
    return loss, keys_raw


def editing_losses(
    lm: LanguageModel,
    blocks: PromptBlocks,
    batch: Sequence[RecipeExample],
    config: RecipeTrainConfig,
) -> torch.Tensor:
    """blocks: each edit's prefixes (L_i, d). Weighted L_rel + L_gen + L_loc."""
    pairs = [e.rel for e in batch] + [e.gen for e in batch] + [e.loc for e in batch]
    prefixes = [*blocks.rel, *blocks.other, *blocks.other]
    logits = target_logits(lm, pairs, prefixes)  # (answer tokens of all pairs, V)
    lengths = [len(t) for _, t in pairs]
    labels = torch.tensor([tok for _, t in pairs for tok in t], device=logits.device)
    cut = [sum(lengths[: len(batch)]), sum(lengths[: 2 * len(batch)])]
    rel, gen, loc = logits[: cut[0]], logits[cut[0] : cut[1]], logits[cut[1] :]
    with torch.no_grad():
        base = target_logits(lm, [e.loc for e in batch])  # p_pre: no prompt
    kl = kl_from_base(base, loc).mean()
    return (
        config.rel_weight * hinged_nll(rel, labels[: cut[0]], config.edit_hinge)
        + config.gen_weight * hinged_nll(gen, labels[cut[0] : cut[1]], config.edit_hinge)
        + config.loc_weight * kl
    )


def conflicting_edit(batch: Sequence[RecipeExample], index: int) -> Fact | None:
    """Edit `index`'s paraphrase answered by the next edit's target, as (prompt, target): an edit of the
    same fact with another answer. None when the edit has no paraphrase or the next edit has the same
    target."""
    edit, next_edit = batch[index].edit, batch[(index + 1) % len(batch)].edit
    if edit.gen == edit.rel or next_edit.target == edit.target:
        return None
    return (edit.gen, next_edit.target)


@dataclass(frozen=True)
class PromptBlocks:
    """The prefixes the first `edit_batch` edits train under: `rel` for the question (it may hold a
    conflicting edit), `other` for the paraphrase and the locality question."""

    rel: list[torch.Tensor]
    other: list[torch.Tensor]


def prompt_blocks(
    lm: LanguageModel,
    model: KnowledgeModel,
    batch: Sequence[RecipeExample],
    keys_raw: torch.Tensor,
    config: RecipeTrainConfig,
) -> PromptBlocks:
    """Each edit's own prompt, shuffled among the prompts of 0, 1 or 2 (`distractor_mix`) of its nearest
    other edits in the batch, as a top-k memory admits them. With probability `conflict_rate` a row with
    distractors swaps its last one, in the question's block only, for a conflicting edit: the paraphrase
    stating the next batch edit's target. keys_raw (B, R) is detached: the editing losses train MLP_P
    only (in RECIPE they also reach MLP_K through r_k, which here pulled every key towards one
    direction)."""
    keys = keys_raw.detach()
    size = min(config.edit_batch, len(batch))
    rng = random.Random(f"{config.seed}:{batch[0].edit.statement}")  # the same draw on resume
    unit = normalize(keys, dim=-1)
    similar = unit[:size] @ unit.T  # (E, B)
    similar[torch.arange(size), torch.arange(size)] = -2.0  # never its own distractor
    most = min(len(config.distractor_mix) - 1, len(batch) - 1)
    nearest = similar.topk(most, dim=-1).indices.tolist() if most else [[] for _ in range(size)]
    counts = rng.choices(range(most + 1), weights=config.distractor_mix[: most + 1], k=size)
    members = [[e, *nearest[e][: counts[e]]] for e in range(size)]
    needed = sorted({i for parts in members for i in parts})
    made = edit_prompts(model, lm, [(batch[i].edit.rel, batch[i].edit.target) for i in needed], keys[needed])
    prompt: dict[int | Fact, torch.Tensor] = dict(zip(needed, made, strict=True))
    conflicts: dict[int, Fact] = {}  # edit -> its conflicting edit
    for e in range(size):
        conflict = conflicting_edit(batch, e) if counts[e] else None
        if conflict is not None and rng.random() < config.conflict_rate:
            conflicts[e] = conflict
    if conflicts:
        facts = list(conflicts.values())
        prompt.update(zip(facts, fact_prompts(model, lm, facts), strict=True))
    rel, other = [], []
    for e, parts in enumerate(members):
        rng.shuffle(parts)
        other.append(torch.cat([prompt[i] for i in parts]))
        if e in conflicts:
            dropped = nearest[e][counts[e] - 1]  # the farthest distractor makes room
            with_conflict: list[int | Fact] = [p for p in parts if p != dropped]
            with_conflict.insert(rng.randrange(len(with_conflict) + 1), conflicts[e])
            rel.append(torch.cat([prompt[i] for i in with_conflict]))
        else:
            rel.append(other[-1])
    return PromptBlocks(rel, other)


def step_loss(
    lm: LanguageModel, model: KnowledgeModel, batch: Sequence[RecipeExample], config: RecipeTrainConfig
) -> torch.Tensor:
    contrastive, keys_raw = retrieval_losses(model, batch, config)
    blocks = prompt_blocks(lm, model, batch, keys_raw, config)
    edits = batch[: len(blocks.other)]
    return config.contrastive_weight * contrastive + editing_losses(lm, blocks, edits, config)


@torch.no_grad()
def validate(lm: LanguageModel, model: KnowledgeModel, val: Sequence[RecipeExample]) -> dict[str, float]:
    """Gate and edit quality on held-out edits, all of them in memory at once.

    rel_hit / gen_hit: the query's top-1 key is its own edit and beats the sentinel; loc_fa: some key
    beats the sentinel for a locality question; rel_acc / gen_acc: teacher-forced token accuracy with
    the edit's own prompt; rel_conflict_acc: the same for the question with a conflicting edit (the
    paraphrase stating another target) ranked second; loc_agree: argmax agreement with the base model on
    locality answers.
    """
    model.eval()
    edits = [e.edit for e in val]
    keys = normalize(model.encode([e.statement for e in edits], "key"), dim=-1)
    sentinel = normalize(model.sentinel_key(), dim=-1)[0]
    metrics: dict[str, float] = {}
    own = torch.arange(len(edits), device=keys.device)
    for kind in ("rel", "gen", "loc"):
        queries = normalize(model.encode([getattr(e, kind) for e in edits], "query"), dim=-1)
        scores = queries @ keys.T  # (n, n)
        best, index = scores.max(-1)
        admitted = best > queries @ sentinel
        if kind == "loc":
            metrics["loc_fa"] = round(float(admitted.float().mean()), 4)
        else:
            metrics[f"{kind}_hit"] = round(float((admitted & (index == own)).float().mean()), 4)
    sample = val[:64]
    prompts = fact_prompts(model, lm, [(e.edit.rel, e.edit.target) for e in sample])
    for kind in ("rel", "gen", "loc"):
        pairs = [getattr(e, kind) for e in sample]
        labels = torch.tensor([tok for _, t in pairs for tok in t], device=keys.device)
        predicted = target_logits(lm, pairs, list(prompts)).argmax(-1)
        if kind == "loc":
            base = target_logits(lm, pairs).argmax(-1)
            metrics["loc_agree"] = round(float((predicted == base).float().mean()), 4)
        else:
            metrics[f"{kind}_acc"] = round(float((predicted == labels).float().mean()), 4)
    rows = [(i, fact) for i in range(len(sample)) if (fact := conflicting_edit(sample, i)) is not None]
    if rows:
        conflicts = fact_prompts(model, lm, [fact for _, fact in rows])
        blocks = [torch.cat([prompts[i], c]) for (i, _), c in zip(rows, conflicts, strict=True)]
        pairs = [sample[i].rel for i, _ in rows]
        labels = torch.tensor([tok for _, t in pairs for tok in t], device=keys.device)
        predicted = target_logits(lm, pairs, blocks).argmax(-1)
        metrics["rel_conflict_acc"] = round(float((predicted == labels).float().mean()), 4)
    model.train()
    return metrics


def run(config: RecipeTrainConfig, *, fresh: bool = False, command: str = COMMAND) -> Path:
    """Train (or resume) the knowledge model; returns the artifact directory. `command` is what
    training.json says rebuilds it."""
    began = time.perf_counter()
    start = start_run(config, fresh=fresh)
    run_dir, lm, sources, excluded = start.run_dir, start.lm, start.sources, start.excluded
    examples, dropped = tokenise(lm, build_edits(sources, config.seed), config.max_length)
    random.Random(config.seed).shuffle(examples)
    n_val = max(1, min(config.val_edits, int(len(examples) * config.val_fraction)))
    val, train = examples[:n_val], examples[n_val:]
    cases = {name: len(items) for name, items in sources.items()}
    print(f"cases {cases}; {excluded} left out (no-op, or prompt in an evaluation split)")
    print(
        f"edits: {len(train)} train, {len(val)} validation, {dropped} dropped (> {config.max_length} tokens)"
    )

    settings = KnowledgeSettings(
        encoder=config.encoder,
        model=config.model,
        model_fingerprint=lm.fingerprint,
        llm_hidden=int(lm.model.config.hidden_size),
        knowledge_dim=config.knowledge_dim,
        prompt_tokens=config.prompt_tokens,
        statement_tokens=config.statement_tokens,
        statement_form=config.statement_form,
        sentinel_tokens=config.sentinel_tokens,
        trainable_layers=config.trainable_layers,
    )
    model = new_knowledge_model(settings, lm)
    if config.init_from:
        start_from(model, config.init_from)
        print(f"starting from the knowledge model {config.init_from}")
    model.to(lm.device)
    model.train()
    scaled = [
        (p, config.encoder_lr_scale if n.startswith("bert.") else
         1.0 if n.startswith("prompt_head.") else config.retriever_lr_scale)
        for n, p in model.named_parameters() if p.requires_grad
    ]  # fmt: skip
    for p, scale in scaled:
        p.requires_grad_(scale > 0)  # a part at learning rate 0 stays as it is, with no gradient kept
    params, scales = [p for p, s in scaled if s > 0], [s for _, s in scaled if s > 0]
    loop_settings = LoopSettings.from_config(config, config.retrieval_batch, 1)
    loop: TrainLoop[RecipeExample] = TrainLoop(
        params,
        train,
        [len(e.rel[0]) + len(e.rel[1]) for e in train],
        lambda batch: step_loss(lm, model, batch, config),
        lambda: validate(lm, model, val),
        loop_settings,
        run_dir,
        config.to_dict(),
        lr_scales=scales,
    )
    if not fresh and loop.resume():
        print(f"resumed from {loop.checkpoint_path} at step {loop.state.step}/{loop.total_steps}")
    state = loop.run()
    gate = calibrate_margin(model, val, config.sentinel_false_accept)
    model.settings = dataclasses.replace(model.settings, sentinel_margin=gate["margin"])
    print(
        f"sentinel margin {gate['margin']:.4f} over {gate['keys']} keys: held-out locality false accepts "
        f"{gate['loc_false_accept']:.2%} (without it {gate['loc_false_accept_at_zero']:.2%}); own edit "
        f"admitted for {gate['rel_own_admitted']:.2%} of questions, "
        f"{gate['gen_own_admitted']:.2%} of paraphrases"
    )

    artifact = run_dir / "model"
    save_knowledge(model, artifact)
    info = {
        "model": config.model,
        "model_fingerprint": lm.fingerprint,
        "command": command,
        "config": config.to_dict(),
        "data": {"cases": cases, "excluded": excluded, "dropped": dropped},
        "examples": {"train": len(train), "validation": len(val)},
        "steps": state.step,
        "train_seconds": round(state.seconds, 1),
        "total_seconds_this_process": round(time.perf_counter() - began, 1),
        "validation": state.log,
        "sentinel": gate,
    }
    write_training_info(artifact, info)
    describe(artifact, info)
    bundle(artifact, config.bundle_as)
    size = (artifact / "recipe.safetensors").stat().st_size / 2**20
    print(f"knowledge model: {artifact} ({size:.1f} MB; {state.step} steps, {state.seconds / 60:.1f} min)")
    return artifact


# What must agree between a knowledge model and the one a run starts from (`init_from`): the rest
# (statement_tokens, the sentinel margin, the text limit) only changes how prompts are read or gated.
_SHAPE = ("encoder", "model", "model_fingerprint", "llm_hidden", "knowledge_dim", "prompt_tokens",
          "statement_form", "sentinel_tokens", "trainable_layers")  # fmt: skip


def start_from(model: KnowledgeModel, name_or_path: str) -> None:
    """Load a trained knowledge model's weights into `model` (the run's new one). Raises TrainingError
    when its shape differs from the run's, naming the settings."""
    path = resolve_knowledge(name_or_path)
    try:
        trained = json.loads((path / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise TrainingError(f"cannot read {str(path / CONFIG_FILE)!r}: {exc}") from exc
    own = model.settings.to_dict()
    differ = [f"{k} {trained.get(k)!r} (this run: {own[k]!r})" for k in _SHAPE if trained.get(k) != own[k]]
    if differ:
        raise TrainingError(f"init_from {name_or_path!r} has another shape: " + "; ".join(differ))
    try:
        load_weights(model, path / WEIGHTS_FILE)
    except ArtifactError as exc:
        raise TrainingError(str(exc)) from exc


def describe(artifact: Path, info: dict[str, Any]) -> None:
    """The artifact's README, built from training.json."""
    log = info["validation"]
    final = log[-1] if isinstance(log, list) and log else {}
    config = info["config"]
    lines = [
        f"# RECIPE knowledge model for {info['model']}",
        "",
        "MLP_K / MLP_Q over the bundled MiniLM (top layers fine-tuned), the prompt head MLP_P and the",
        "knowledge sentinel (METHODS.md §1). recall's recipe backend uses it (`--backend recipe`): the",
        "store keeps its keys and the sentinel gates each query. An admitted edit becomes",
        f"{config['prompt_tokens']} prompt vectors and the embeddings of up to "
        f"{config['statement_tokens']} tokens "
        + (
            "of the edit written as an earlier chat exchange (`statement_form: dialog`),"
            if config.get("statement_form") == "dialog"
            else "of its statement,"
        ),
        "in front of the frozen model's input.",
        "",
        f"Rebuild: `{info['command']}` (from the repository root, beside ../shared).",
        "",
        f"- data: {info['data']}",
        f"- edits: {info['examples']}; {info['steps']} steps",
        f"- training {float(info['train_seconds']) / 60:.1f} min "
        f"({float(info['total_seconds_this_process']) / 60:.1f} min in the process that finished the run)",
        f"- final validation: {json.dumps(final)}",
        f"- sentinel: {json.dumps(info.get('sentinel', {}))}",
        "",
        "training.json holds the resolved config and the full validation log.",
    ]
    (artifact / "README.md").write_text("\n".join(lines) + "\n")
