"""Knowledge in superposition (METHODS.md §8; Hu et al., arXiv 2408.07413) measured on a model.

A closed-form edit W += Λ (C⁻¹k_i)ᵀ moves the output of any other key k_j by Λ · p(k_i, k_j), with
p(k_i, k_j) = k_iᵀC⁻¹k_j / k_iᵀC⁻¹k_i: keys are only safe from each other's edits when they are orthogonal
after whitening by C^(-1/2). Per layer, for the knowledge keys of many subjects (the input of the MLP
output projection at the subject's last token, bare prompt, raw: no chat template), the off-diagonal of
the matrix P = [p(k_i, k_j)] is summarised as the paper does: its mean, standard deviation, excess
(Fisher) kurtosis, and the share of entries beyond 3 standard deviations (a Gaussian has 0.27%); plus
the mean whitened angle between keys (90°: orthogonal).

`interference` is the measure after edits: for keys no edit was about, ||ΔW k|| / ||W₀ k|| at each
edited layer, as edits accumulate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from recall.lm.hooks import layer_path
from recall.lm.loading import LanguageModel
from recall.locate.keys import read_at
from recall.locate.statistics import ridged
from recall.locate.subjects import subject_prompt


@dataclass(frozen=True)
class LayerSuperposition:
    """The off-diagonal statistics of P at one layer, over `keys` subjects."""

    layer: int
    keys: int
    mean: float
    std: float
    kurtosis: float  # excess (Fisher): 0 for a Gaussian
    tail: float  # share of entries more than 3 standard deviations from the mean
    angle: float  # mean whitened angle between two keys, degrees
    values: tuple[float, ...]  # the off-diagonal entries, for the histogram


def subject_keys(
    lm: LanguageModel, items: Sequence[tuple[str, str]], layers: Sequence[int]
) -> dict[int, torch.Tensor]:
    """For (prompt, subject) items: the keys (m, d_in) float64 at each layer, read in batches of 32."""
    rows = [subject_prompt(lm, prompt, subject, use_chat_template=False) for prompt, subject in items]
    paths = {layer: layer_path(lm.model, "mlp_out", layer) for layer in layers}
    parts: dict[int, list[torch.Tensor]] = {layer: [] for layer in layers}
    for start in range(0, len(rows), 32):
        read = read_at(lm, rows[start : start + 32], inputs_of=list(paths.values()))
        for layer, path in paths.items():
            parts[layer].append(read[path].double())
    return {layer: torch.cat(chunks) for layer, chunks in parts.items()}


def superposition(layer: int, keys: torch.Tensor, moment: torch.Tensor) -> LayerSuperposition:
    """The statistics of P for keys (m, d_in) and the layer's second moment C (d_in, d_in)."""
    whitened = torch.linalg.solve(ridged(moment), keys.T).T  # (m, d_in): C⁻¹k_i
    gram = whitened @ keys.T  # (m, m): k_iᵀC⁻¹k_j
    self_terms = gram.diagonal()
    p = gram / self_terms[:, None]
    off = ~torch.eye(len(keys), dtype=torch.bool)
    values = p[off]
    mean, std = float(values.mean()), float(values.std())
    centred = values - mean
    kurtosis = float((centred**4).mean() / (centred**2).mean() ** 2) - 3.0
    tail = float((centred.abs() > 3 * std).double().mean())
    cosine = gram / torch.sqrt(self_terms[:, None] * self_terms[None, :])
    angle = float(torch.rad2deg(torch.arccos(cosine[off].clamp(-1, 1))).mean())
    return LayerSuperposition(
        layer, len(keys), mean, std, kurtosis, tail, angle, tuple(float(v) for v in values)
    )


def interference(before: torch.Tensor, after: torch.Tensor, keys: torch.Tensor) -> float:
    """Mean over keys (m, d_in) of ||(W - W₀) k|| / ||W₀ k|| for weights (d_out, d_in)."""
    moved = (after.double() - before.double()) @ keys.T  # (d_out, m)
    base = before.double() @ keys.T
    return float((moved.norm(dim=0) / base.norm(dim=0).clamp(min=1e-12)).mean())
