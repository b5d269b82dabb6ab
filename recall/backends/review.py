"""The relevance review: the model that answers with edits reads each admitted edit beside the question and
declines the ones it would not use (Self-RAG's "is this passage relevant" judgement, here a linear probe).

Retrieval gates on one cosine between two MiniLM vectors; an unrelated question with the same relation
("Where was X born?" against an edit about Y's birthplace) passes it. The aligned model tells such
pairs apart far better: its hidden state at the end of the prompt, with the edit as an earlier exchange,
separates used from unused edits almost linearly (ZsRE train probe, held-out AUC 0.998). A probe
(`python -m training relevance`) reads that state at one layer; a hit scoring below the probe's
threshold is declined, so the question goes to the base model as if the gate had closed.

An artifact is a folder with `relevance.safetensors` (weight (d,), bias (1,)) and `training.json`
(the layer, the threshold, the model fingerprint it was fit on, the command, held-out numbers).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from memory_store import SearchHit
from recall.artifacts import (
    ArtifactError,
    artifact_info,
    check_trained_for,
    resolve_artifact,
    write_training_info,
)
from recall.digests import file_sha256
from recall.lm.hooks import StopForward, decoder_layers, stop_after
from recall.lm.loading import LanguageModel
from recall.lm.prompts import Fact, TemplateName, prompt_text
from recall.lm.scoring import pad_right, prompt_ids

PROBE_FILE = "relevance.safetensors"


@dataclass(frozen=True)
class RelevanceProbe:
    """score = sigmoid(weight . h + bias), h the layer-`layer` hidden state at the prompt's last token;
    an edit is used when score >= threshold."""

    layer: int
    weight: torch.Tensor  # (d,)
    bias: float
    threshold: float
    template: TemplateName

    def settings(self) -> dict[str, Any]:
        """What training.json records under "probe" (the weights are in PROBE_FILE)."""
        return {"layer": self.layer, "threshold": round(self.threshold, 6), "template": self.template}

    def save(self, folder: Path, info: dict[str, Any]) -> None:
        """Write the weights and training.json: `info` (the model fingerprint, how it was fit) plus the
        probe's own settings under "probe"."""
        folder.mkdir(parents=True, exist_ok=True)
        save_file(
            {"weight": self.weight.contiguous().float(), "bias": torch.tensor([self.bias])},
            str(folder / PROBE_FILE),
        )
        write_training_info(folder, {**info, "probe": self.settings()})


def resolve_probe(name_or_path: str) -> Path:
    return resolve_artifact(name_or_path, PROBE_FILE, "relevance probe", "python -m training relevance")


def load_probe(name_or_path: str, lm: LanguageModel) -> RelevanceProbe:
    """The probe, checked to have been fit on `lm` (the model that answers with edits, adapter merged)."""
    folder = resolve_probe(name_or_path)
    info = artifact_info(folder)
    try:
        check_trained_for(f"relevance probe {name_or_path}", info, lm.model_id, lm.fingerprint)
    except ArtifactError as exc:
        raise ArtifactError(f"{exc}, or turn the review off with --set backend.relevance=null") from exc
    try:
        tensors = load_file(str(folder / PROBE_FILE))
        probe = info["probe"]
        layer, threshold, template = int(probe["layer"]), float(probe["threshold"]), str(probe["template"])
    except (OSError, KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"cannot read the relevance probe in {folder}: {exc!r}") from exc
    hidden = int(lm.model.config.hidden_size)
    layers = int(lm.model.config.num_hidden_layers)
    weight = tensors.get("weight")
    if weight is None or weight.shape != (hidden,) or not 0 <= layer <= layers:
        raise ArtifactError(
            f"relevance probe {name_or_path!r} does not fit {lm.model_id} "
            f"(hidden size {hidden}, {layers} layers): retrain it for this model"
        )
    return RelevanceProbe(layer, weight, float(tensors["bias"][0]), threshold, template)  # type: ignore[arg-type]


@torch.inference_mode()
def last_states(
    lm: LanguageModel,
    prompts: Sequence[list[int]],
    layer: int,
    batch_size: int = 16,
    *,
    progress: bool = False,
) -> torch.Tensor:
    """(n, d): the layer-`layer` hidden state at each prompt's last token (0 = the embeddings).

    The forward stops once layer `layer` has run (a probe at layer 20 of 30 costs two thirds of a pass);
    the state is the one `output_hidden_states` gives, so the last layer's is read after the final norm.
    """
    if not prompts:
        return torch.zeros((0, int(lm.model.config.hidden_size)))
    decoder: Any = lm.model.base_model
    layers = decoder_layers(lm.model)
    pad = int(lm.tokenizer.pad_token_id or 0)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))  # similar lengths pad less
    states = torch.zeros((len(prompts), int(lm.model.config.hidden_size)))
    early = 0 < layer < len(layers)
    reached: list[torch.Tensor] = []
    stopping = stop_after(layers[layer - 1], reached) if early else contextlib.nullcontext()
    with stopping:
        starts = range(0, len(order), batch_size)
        for start in tqdm(starts, desc="reading states", unit="batch", disable=not progress):
            rows = order[start : start + batch_size]
            input_ids, mask = pad_right([prompts[i] for i in rows], pad)  # (B, T) each
            reached.clear()
            try:
                out = decoder(
                    input_ids=input_ids.to(lm.device),
                    attention_mask=mask.to(lm.device),
                    output_hidden_states=not early,
                )
                hidden = out.hidden_states[layer]  # (B, T, d)
            except StopForward:
                hidden = reached[0]
            last = mask.sum(dim=1) - 1  # (B,) right padding: each prompt's last real token
            states[rows] = hidden[torch.arange(len(rows)), last.to(lm.device)].float().cpu()
    return states


def pair_prompts(
    lm: LanguageModel, pairs: Sequence[tuple[str, Fact]], template: TemplateName
) -> list[list[int]]:
    """The token ids of each (question, edit) as the lte backend renders it with that edit alone."""
    return [prompt_ids(lm, prompt_text(lm, question, [fact], template)) for question, fact in pairs]


def relevance_scores(
    lm: LanguageModel, probe: RelevanceProbe, pairs: Sequence[tuple[str, Fact]]
) -> list[float]:
    """The probe's score in [0, 1] for each (question, edit): how sure the model is that it uses the edit."""
    states = last_states(lm, pair_prompts(lm, pairs, probe.template), probe.layer)  # (n, d)
    return torch.sigmoid(states @ probe.weight + probe.bias).tolist()


def review_hits(
    lm: LanguageModel,
    probe: RelevanceProbe | None,
    queries: Sequence[str],
    admitted: Sequence[Sequence[SearchHit]],
) -> list[tuple[SearchHit, ...]]:
    """Each query's admitted hits less those the probe declines (all of them without a probe). One
    prompt per (query, hit), rendered with that edit alone in the probe's template, read by `lm` (the
    model the probe was fit on)."""
    if probe is None:
        return [tuple(hits) for hits in admitted]
    pairs = [
        (query, (hit.record.prompt, hit.record.target))
        for query, hits in zip(queries, admitted, strict=True)
        for hit in hits
    ]
    keep = [score >= probe.threshold for score in relevance_scores(lm, probe, pairs)]
    reviewed: list[tuple[SearchHit, ...]] = []
    for hits in admitted:  # `keep` holds every query's hits in turn
        verdicts, keep = keep[: len(hits)], keep[len(hits) :]
        reviewed.append(tuple(hit for hit, kept in zip(hits, verdicts, strict=True) if kept))
    return reviewed


def probe_digest(name_or_path: str) -> str:
    """sha256[:16] of the probe's weights, for report stamps (`describe`)."""
    return file_sha256(resolve_probe(name_or_path) / PROBE_FILE)[:16]
