"""`recall calibrate --review`: the replay of margin and review window, and one collection pass on the
tiny llama with hand-written probes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from recall.backends.recipe.encoder import RecipeEncoder
from recall.backends.review import RelevanceProbe
from recall.cli.calibrate.review import GateQuery, collect, replay
from recall.errors import ConfigError
from recall.lm.loading import LanguageModel

QUERIES = [
    GateQuery(True, (0.2, 0.0), (True, False)),  # a rephrase well past the cut-off
    GateQuery(True, (0.03,), (True,)),  # a rephrase just past it, kept by the probe
    GateQuery(True, (-0.02,), (True,)),  # a rephrase just under it
    GateQuery(False, (0.04, 0.01), (False, False)),  # a locality question the probe declines
    GateQuery(False, (), ()),  # nothing near
]


def test_replay_admits_above_the_margin_and_reviews_within_the_window() -> None:
    never = replay(QUERIES, 0.0, 0.0)  # the gate alone at the trained margin
    assert (never.false_reject, never.false_accept) == pytest.approx((100 / 3, 50.0))
    assert (never.reviewed_in, never.reviewed_out) == (0.0, 0.0)
    always = replay(QUERIES, 0.0, None)  # every admitted query reviewed
    assert (always.false_reject, always.false_accept) == pytest.approx((100 / 3, 0.0))
    assert (always.reviewed_in, always.reviewed_out) == pytest.approx((200 / 3, 50.0))
    window = replay(QUERIES, 0.0, 0.1)  # only the first rephrase is sure
    assert window.reviewed_in == pytest.approx(100 / 3)
    assert window.false_accept == 0.0
    looser = replay(QUERIES, -0.03, 0.1)  # the third rephrase gets in, through review
    assert looser.false_reject == 0.0
    tighter = replay(QUERIES, 0.05, None)  # only the first rephrase beats the margin
    assert (tighter.false_reject, tighter.false_accept) == pytest.approx((200 / 3, 0.0))


def test_collect_scores_every_hit_near_the_cut_off(
    tmp_path: Path, tiny_lm: LanguageModel, tiny_recipe_dir: Path
) -> None:
    rows = [
        {
            "prompt": f"who is the ceo of acme {i} ?",
            "target": "jane doe",
            "rephrases": [f"who leads acme {i} ?"],
            "locality": [["what is the largest planet ?", "jupiter"]],
        }
        for i in range(4)
    ]
    data = tmp_path / "cases.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    encoder = RecipeEncoder(str(tiny_recipe_dir))
    base = [f"backend.checkpoint={tiny_recipe_dir}", f"encoder.name={tiny_recipe_dir}", "model.name=tiny"]
    base += ["backend.long_checkpoint=null"]
    results = {}
    for name, bias in (("keep", 5.0), ("decline", -5.0)):
        probe = tmp_path / name  # a constant score, sigmoid(bias), for every pair
        zero = torch.zeros(int(tiny_lm.model.config.hidden_size))
        RelevanceProbe(1, zero, bias, 0.5, "dialog").save(probe, {"model_fingerprint": tiny_lm.fingerprint})
        overrides = [*base, f"backend.relevance={probe}", "sentinel.margin=null"]
        results[name] = collect("recipe", overrides, data, "jsonl", 4, 3, lm=tiny_lm, encoder=encoder)
    (keep, trained), (decline, _) = results["keep"], results["decline"]
    assert sum(q.in_scope for q in keep) == 3
    assert sum(not q.in_scope for q in keep) == 3
    assert trained == pytest.approx(encoder.sentinel_margin)
    assert [q.excess for q in keep] == [q.excess for q in decline]  # the same hits, another verdict
    assert all(q.excess for q in keep)  # every question has hits near the cut-off on the tiny model
    assert all(all(q.kept) for q in keep)
    assert not any(any(q.kept) for q in decline)
    assert all(list(q.excess) == sorted(q.excess, reverse=True) for q in keep)
    # a probe that keeps everything changes no rate; one that declines everything closes every review
    kept, unreviewed = replay(keep, -0.08, None), replay(keep, -0.08, 0.0)
    assert (kept.false_reject, kept.false_accept) == (unreviewed.false_reject, unreviewed.false_accept)
    declined = replay(decline, -0.08, None)
    assert (declined.false_reject, declined.false_accept) == (100.0, 0.0)


def test_collect_needs_a_relevance_probe(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="relevance probe"):
        collect("lte", [], tmp_path / "none.jsonl", "jsonl", 1, 1)


def test_replay_holds_hits_about_unnamed_subjects_to_the_subject_margin() -> None:
    queries = [
        # a rephrase: its own edit (named) just past the cut-off, another subject's edit above it
        GateQuery(True, (0.06, 0.02), (True, True), (False, True), (False, True)),
        # a locality question about another subject: the edit it meets is not named
        GateQuery(False, (0.04,), (True,), (False,), (False,)),
    ]
    off = replay(queries, 0.0, 0.0)
    assert (off.false_reject, off.own_missed, off.false_accept) == (0.0, 0.0, 100.0)
    on = replay(queries, 0.0, 0.0, subject_margin=0.05)  # the rephrase's other hit clears 0.05 more
    assert (on.false_reject, on.own_missed, on.false_accept) == (0.0, 0.0, 0.0)
    strict = replay(queries, 0.0, 0.0, subject_margin=2.0)
    assert strict.false_accept == 0.0
    assert strict.false_reject == 0.0
    tight = replay(queries, 0.03, 0.0, subject_margin=2.0)  # the own edit now under the cut-off
    assert (tight.false_reject, tight.own_missed) == (100.0, 100.0)
