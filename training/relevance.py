"""`python -m training relevance`: fit the relevance probe that lets the answering model decline an
admitted edit it would not use (recall/backends/review.py).

The run: draw train cases, pair questions with edits (used: the edit's own question, a paraphrase, a
portability question; unused: the nearest other-subject edit to the question, and the edit nearest a
locality question, which is what a gate that opens wrongly admits), read each pair's last-token state
at one layer of the answering model, and fit L2-regularised logistic regression on the cases not held
out. The threshold declines `false_reject` of the held-out used pairs. The probe, its training.json
and (with `bundle_as`) a copy in recall/adapters/ come out at the end.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from recall.backends.review import RelevanceProbe, last_states, pair_prompts
from recall.build import load_encoder
from recall.datasets.cases import EvalCase
from recall.lm.lora import load_adapted
from recall.lm.prompts import Fact, statement
from recall.retrieval.encoder import Encoder
from training.config import RelevanceTrainConfig
from training.errors import TrainingError
from training.lte_data import nearest_others, nearest_to
from training.runs import bundle, start_run

COMMAND = "python -m training relevance --config configs/train/lte_relevance.yaml"


@dataclass(frozen=True)
class Pair:
    """A question beside one edit, and whether the model should use the edit to answer it."""

    question: str
    fact: Fact
    used: bool
    kind: str  # own (the edit's question or a paraphrase), portability, neighbour, locality
    case: int  # the case it was built from: held-out cases keep all their pairs out of the fit


def build_pairs(cases: list[EvalCase], encoder: Encoder) -> list[Pair]:
    """Used and unused pairs for every case (see the module docstring)."""
    facts: list[Fact] = [(c.prompt, c.target) for c in cases]
    statements = [statement(p, t) for p, t in facts]
    keys = encoder.encode_keys(statements)  # (N, dim), L2-normalised
    others = nearest_others(keys, statements, 1, [c.subject for c in cases])
    asked = [i for i, c in enumerate(cases) if c.locality]
    queries = encoder.encode_queries([cases[i].locality[0][0] for i in asked])  # (Q, dim)
    near = dict(zip(asked, nearest_to(queries, keys, 1), strict=True))
    pairs: list[Pair] = []
    for i, case in enumerate(cases):
        for question in (case.prompt, *case.rephrases[:1]):
            pairs.append(Pair(question, facts[i], True, "own", i))
            if others[i]:
                pairs.append(Pair(question, facts[others[i][0]], False, "neighbour", i))
        for question, _ in case.portability[:1]:
            pairs.append(Pair(question, facts[i], True, "portability", i))
        # The edit nearest a locality question may be the case's own: unrelated to it all the same.
        if i in near:
            pairs.append(Pair(case.locality[0][0], facts[near[i][0]], False, "locality", i))
    return pairs


def fit_logistic(states: torch.Tensor, labels: torch.Tensor, l2: float) -> tuple[torch.Tensor, float]:
    """(weight (d,), bias) of logistic regression on raw states (n, d), fit on standardised features
    (mean loss + l2/2 |w|^2, L-BFGS) and folded back so that score = sigmoid(states @ weight + bias)."""
    mean, std = states.mean(0), states.std(0).clamp_min(1e-6)  # (d,) each
    x = (states - mean) / std
    w = torch.zeros(x.shape[1], requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.LBFGS([w, b], max_iter=500, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(x @ w + b, labels) + l2 / 2 * (w @ w)
        loss.backward()  # type: ignore[no-untyped-call]
        return loss

    optimizer.step(closure)  # type: ignore[no-untyped-call]
    weight = (w / std).detach()
    return weight, float(b.detach()[0] - (weight @ mean))


def accept_rates(pairs: list[Pair], scores: torch.Tensor, threshold: float) -> dict[str, float]:
    """Per kind, the share of pairs whose edit the probe keeps."""
    rates: dict[str, float] = {}
    for kind in sorted({p.kind for p in pairs}):
        picked = [float(s) >= threshold for p, s in zip(pairs, scores, strict=True) if p.kind == kind]
        rates[kind] = round(sum(picked) / len(picked), 4)
    return rates


def describe_probe(probe_dir: Path, info: dict[str, Any]) -> None:
    """The artifact's README.md, from its training.json."""
    config, probe, kept = info["config"], info["probe"], info["held_out_accept"]
    reader = (
        f"{config['model']} with the `{config['adapter']}` adapter merged"
        if config["adapter"]
        else config["model"]
    )
    lines = [
        f"# Relevance probe for {reader}",
        "",
        "A linear probe (recall/backends/review.py) on the model's layer-"
        f"{probe['layer']} hidden state at the last token of a prompt that holds one admitted edit",
        f"(template `{probe['template']}`). A backend using it declines an admitted edit scoring below "
        f"{probe['threshold']:.3f}: the model would not use it.",
        "",
        f"Rebuild: `{info['command']}` (from the repository root, beside ../shared).",
        "",
        f"- pairs: {info['pairs']['fit']} fit, {info['pairs']['held_out']} held out (by case)",
        "- held-out share of pairs whose edit is kept: " + ", ".join(f"{k} {v}" for k, v in kept.items()),
        "  (own question or paraphrase and portability questions should keep it; the nearest edit of another",
        "  subject and the edit nearest a locality question should not)",
        f"- whole run {info['total_seconds'] / 60:.1f} min",
    ]
    (probe_dir / "README.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def run(config: RelevanceTrainConfig, *, fresh: bool = False, command: str = COMMAND) -> Path:
    """Fit the probe and write it (with training.json) to output_dir/probe; returns that directory.
    `command` is what training.json says rebuilds it."""
    began = time.perf_counter()
    start = start_run(config, fresh=fresh)
    reader = load_adapted(start.lm, config.adapter) if config.adapter else start.lm
    if config.layer > int(reader.model.config.num_hidden_layers):
        raise TrainingError(
            f"layer {config.layer} is past the model's {reader.model.config.num_hidden_layers}"
        )
    cases = [case for items in start.sources.values() for case in items]
    random.Random(config.seed).shuffle(cases)
    cases = cases[: config.max_cases]
    pairs = build_pairs(cases, load_encoder(config.encoder, 64))
    first_held = int(len(cases) * (1 - config.holdout_fraction))  # cases from here on are held out
    fit_rows = [i for i, p in enumerate(pairs) if p.case < first_held]
    check_rows = [i for i, p in enumerate(pairs) if p.case >= first_held]
    fit, check = [pairs[i] for i in fit_rows], [pairs[i] for i in check_rows]
    if not any(p.used for p in check) or len({p.used for p in fit}) < 2:
        raise TrainingError("too few train cases for both used and unused pairs; raise max_cases")
    print(f"cases {len(cases)}; pairs {len(fit)} to fit, {len(check)} held out; reading layer {config.layer}")
    prompts = pair_prompts(reader, [(p.question, p.fact) for p in pairs], config.template)
    states = last_states(reader, prompts, config.layer, progress=True)  # (pairs, d)
    fit_states, check_states = states[fit_rows], states[check_rows]  # (n_fit, d), (n_check, d)
    weight, bias = fit_logistic(fit_states, torch.tensor([float(p.used) for p in fit]), config.l2)
    check_scores = torch.sigmoid(check_states @ weight + bias)  # (n_check,)
    used_scores = check_scores[torch.tensor([p.used for p in check])]
    threshold = float(torch.quantile(used_scores, config.false_reject)) if config.false_reject else 0.0

    probe_dir = Path(config.output_dir) / "probe"
    probe = RelevanceProbe(config.layer, weight, bias, threshold, config.template)
    held_out = accept_rates(check, check_scores, threshold)
    info = {
        "model": config.model,
        "model_fingerprint": reader.fingerprint,  # the adapted model's: the probe reads its states
        "command": command,
        "config": config.to_dict(),
        "pairs": {"fit": len(fit), "held_out": len(check)},
        "held_out_accept": held_out,  # per kind, the share of held-out pairs whose edit is kept
        "total_seconds": round(time.perf_counter() - began, 1),
    }
    probe.save(probe_dir, info)
    describe_probe(probe_dir, {**info, "probe": probe.settings()})
    bundle(probe_dir, config.bundle_as)
    print(f"probe: {probe_dir}; threshold {threshold:.3f}; held-out share kept: {held_out}")
    return probe_dir
