"""The knowledge sentinel's margin, calibrated once training ends (training/recipe.py).

RECIPE admits a key when its cosine beats the query's cosine with the sentinel. On ZsRE with 1000 edits
in memory that let 2-4% of unrelated questions through, above the 1% the recipe backend aims at. The
margin m is the smallest m >= 0 at which at most `target` of the held-out edits' locality questions
admit any key, with the held-out edits in memory under both keys the shipped preset stores (question
and statement). The held-out edits never trained the sentinel.

The training edits stay out of that memory: CounterFact and KnowEdit locality questions are often about
another training edit's subject and relation, so they are in scope for it ('Queen Maud Land is located
in the continent' finds 'Queen Maud Land is in Asia'). Against all 8,868 training keys 17.7% of them
admitted something, and the margin that cut that to 1% (0.144) also shut out 31% of paraphrases.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch.nn.functional import normalize

from recall.backends.recipe.model import KnowledgeModel, Side
from training.recipe_data import RecipeExample

_CHUNK = 128


def _encode(model: KnowledgeModel, texts: Sequence[str], side: Side) -> torch.Tensor:
    """(n, R) unit vectors, encoded in chunks."""
    chunks = [texts[i : i + _CHUNK] for i in range(0, len(texts), _CHUNK)]
    return torch.cat([normalize(model.encode(chunk, side), dim=-1) for chunk in chunks])


def margin_for(excess: torch.Tensor, target: float) -> float:
    """The smallest m >= 0 with at most floor(target * n) of `excess` (n,) strictly above it."""
    allowed = int(target * len(excess) + 1e-9)
    if allowed >= len(excess):
        return 0.0
    ranked = excess.sort(descending=True).values
    return max(0.0, float(ranked[allowed]))


@torch.no_grad()
def calibrate_margin(model: KnowledgeModel, val: Sequence[RecipeExample], target: float) -> dict[str, float]:
    """The margin and the held-out gate rates at it.

    Returns margin; keys (how many were in memory); loc_false_accept (held-out locality questions
    admitting any key); gen_own_admitted and rel_own_admitted (held-out paraphrases and questions whose
    own edit beats the threshold); and loc_false_accept_at_zero, the rate without a margin.
    """
    model.eval()
    edits = [e.edit for e in val]
    keys = torch.cat(
        [_encode(model, [e.statement for e in edits], "key"), _encode(model, [e.rel for e in edits], "key")]
    )  # (2N, R): statement keys, then question keys
    sentinel = normalize(model.sentinel_key(), dim=-1)[0]  # (R,)

    def excess(texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(best key score - sentinel score, own edit's score - sentinel score), each (n,)."""
        queries = _encode(model, texts, "query")
        scores = queries @ keys.T  # (n, 2N)
        floor = queries @ sentinel
        rows = torch.arange(len(texts))
        own = torch.maximum(scores[rows, rows], scores[rows, rows + len(edits)])
        return scores.amax(-1) - floor, own - floor

    loc, _ = excess([e.edit.loc for e in val])
    _, gen_own = excess([e.edit.gen for e in val])
    _, rel_own = excess([e.edit.rel for e in val])
    margin = math.ceil(margin_for(loc, target) * 1e6) / 1e6  # rounded up: the count stays within target
    model.train()
    return {
        "margin": margin,
        "keys": int(keys.shape[0]),
        "target_false_accept": target,
        "loc_false_accept": round(float((loc > margin).float().mean()), 4),
        "loc_false_accept_at_zero": round(float((loc > 0).float().mean()), 4),
        "gen_own_admitted": round(float((gen_own > margin).float().mean()), 4),
        "rel_own_admitted": round(float((rel_own > margin).float().mean()), 4),
    }
