"""The prompt forms of recall/lm/prompts.py: the LTE block and the dialog of earlier turns."""

from __future__ import annotations

import copy

from recall.lm.loading import LanguageModel
from recall.lm.prompts import edit_message, prompt_text, render

# A two-role template in the shape of ChatML, small enough to read in the assertions.
CHAT = (
    "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}</{{ m['role'] }}>{% endfor %}"
    "{% if add_generation_prompt %}<assistant>{% endif %}"
)
FACTS = [("who leads acme ?", "jane doe"), ("where is acme ?", "oslo")]


def _chat_lm(lm: LanguageModel) -> LanguageModel:
    tokenizer = copy.deepcopy(lm.tokenizer)
    tokenizer.chat_template = CHAT
    return LanguageModel(lm.model, tokenizer, lm.model_id, lm.fingerprint)


def test_dialog_puts_each_edit_as_an_earlier_turn(tiny_lm: LanguageModel) -> None:
    lm = _chat_lm(tiny_lm)
    assert lm.has_chat_template
    text = prompt_text(lm, "who is the ceo of acme ?", FACTS, "dialog")
    assert text == (
        "<user>who leads acme ?</user><assistant>jane doe</assistant>"
        "<user>where is acme ?</user><assistant>oslo</assistant>"
        "<user>who is the ceo of acme ?</user><assistant>"
    )


def test_without_facts_every_template_is_the_plain_question(tiny_lm: LanguageModel) -> None:
    lm = _chat_lm(tiny_lm)
    plain = render(lm, "who is the ceo of acme ?", use_chat_template=True)
    assert plain == "<user>who is the ceo of acme ?</user><assistant>"
    for template in ("lte", "compact", "dialog"):
        assert prompt_text(lm, "who is the ceo of acme ?", [], template) == plain


def test_text_templates_and_models_without_a_chat_template(tiny_lm: LanguageModel) -> None:
    lm = _chat_lm(tiny_lm)
    block = edit_message("who is the ceo of acme ?", ["who leads acme ? jane doe", "where is acme ? oslo"])
    assert prompt_text(lm, "who is the ceo of acme ?", FACTS, "lte") == render(
        lm, block, use_chat_template=True
    )
    assert "1. who leads acme ? jane doe\n2. where is acme ? oslo" in block
    # No chat template (or none wanted): the dialog falls back to statement lines above the question.
    assert not tiny_lm.has_chat_template
    expected = "who leads acme ? jane doe\nwhere is acme ? oslo\nwho is the ceo of acme ?"
    assert prompt_text(tiny_lm, "who is the ceo of acme ?", FACTS, "dialog") == expected
    assert prompt_text(lm, "who is the ceo of acme ?", FACTS, "dialog", use_chat_template=False) == expected


def test_the_lte_backend_scores_the_dialog_it_renders(tiny_lm: LanguageModel) -> None:
    from memory_store import EditRecord, SearchHit
    from recall.backends.base import ScoreRequest
    from recall.backends.lte import LteBackend, LteConfig
    from recall.lm.scoring import prompt_ids, score_ids, target_ids

    lm = _chat_lm(tiny_lm)
    hit = SearchHit(record=EditRecord(prompt="who leads acme ?", target="jane doe"), score=0.9, rank=0)
    backend = LteBackend(LteConfig(template="dialog"), lm)
    text = backend.prompt_text("who is the ceo of acme ?", [hit])
    assert text == prompt_text(lm, "who is the ceo of acme ?", [FACTS[0]], "dialog")
    assert backend.injected([hit]) == "who leads acme ? jane doe"
    answer = target_ids(lm, "jane doe", leading_space=False)
    expected = score_ids(lm, [(prompt_ids(lm, text), answer)])[0]
    assert backend.score_many([ScoreRequest("who is the ceo of acme ?", "jane doe", (hit,))])[0] == expected
