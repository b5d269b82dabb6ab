"""Query views: a question that ends a longer text is also read as its last sentence, and the gate reads
whichever view admits an edit by the wider margin (recall/retrieval/views.py, gate.py)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from recall.cli.memory import explain
from recall.config import load_config
from recall.memory import EditMemory
from recall.retrieval.views import last_sentence, query_views

MakeMemory = Callable[..., EditMemory]
GATE = ["encoder.name=hashing", "model.name=tiny", "sentinel.min_cosine=0.6", "retrieval.top_k=3"]
EDIT = ("The mother tongue of Danielle Darrieux is", "English")
# CounterFact writes some rephrases behind an unrelated sentence: the hashed vector of the whole is far
# from the edit's keys, its last sentence is the edit's question
PREFIXED = (
    "Regarding individual vitamin and mineral supplementation, research in several large trials shows "
    "mixed results. The mother tongue of Danielle Darrieux is"
)


@pytest.mark.parametrize(
    ("query", "tail"),
    [
        (PREFIXED, EDIT[0]),
        ("One person killed. Heath Brothers plays", "Heath Brothers plays"),
        ("Shanghalla is a planetoid in the 30th century . George V Coast is in", "George V Coast is in"),
        ("Some context first.\nWho runs Acme?", "Who runs Acme?"),
        ("The weather was fine! Who runs Acme?", "Who runs Acme?"),
        ("Context. Which position does X play? They play as", "Which position does X play? They play as"),
        ("What war did Carlos W. Colby fight in?", None),  # an initial (zsRE)
        ("Who was the star in the movie, Mr. Smith Carries On?", None),  # a title
        ("Which position does Tarvaris Jackson play? They play as", None),  # a question's answer start
        ("The CEO of Acme is", None),  # one sentence
        ("What is 3.5 times 2?", None),  # a decimal point is no break
        ("Who runs Acme. Thanks.", None),  # a one-word last sentence is no question
        ("Who runs acme? it is a company", None),  # no capital after the break
    ],
)
def test_the_last_sentence_is_cut_where_a_sentence_ends(query: str, tail: str | None) -> None:
    assert last_sentence(query) == tail
    assert query_views(query, last=True) == [query] if tail is None else [query, tail]
    assert query_views(query, last=False) == [query]


def test_a_question_behind_an_unrelated_sentence_is_read_as_its_last_sentence(
    make_memory: MakeMemory,
) -> None:
    views = make_memory("views", load_config(backend="lte", overrides=GATE))
    whole = make_memory(
        "whole", load_config(backend="lte", overrides=[*GATE, "retrieval.last_sentence=false"])
    )
    for memory in (views, whole):
        memory.add(*EDIT, subject="Danielle Darrieux")
    assert not whole.retrieve(PREFIXED).admitted  # the prefix pulls the whole query under the cut-off
    read = views.retrieve(PREFIXED)
    assert [h.record.target for h in read.admitted] == ["English"]
    assert read.view == EDIT[0]
    assert read.query == PREFIXED
    assert read.hits[0].score > read.threshold
    # a last sentence that admits nothing loses to the whole question, which is then read as asked
    own = views.retrieve(f"{EDIT[0]}? Please answer briefly.")
    assert own.admitted
    assert own.view is None
    # unrelated text with no edit behind either view admits nothing
    assert not views.retrieve("The weather was fine. What is the largest planet?").admitted


def test_why_says_which_sentence_was_read(make_memory: MakeMemory) -> None:
    memory = make_memory(config=load_config(backend="lte", overrides=GATE))
    memory.add(*EDIT, subject="Danielle Darrieux")
    shown = explain(memory.ask(PREFIXED, max_new_tokens=2))
    assert f"read as its last sentence: {EDIT[0]!r}" in shown
    assert "read as" not in explain(memory.ask(EDIT[0], max_new_tokens=2))


def test_an_edit_question_behind_a_sentence_is_keyed_as_its_last_sentence_first(
    make_memory: MakeMemory,
) -> None:
    memory = make_memory(config=load_config(backend="lte", overrides=GATE))
    first = memory.add(PREFIXED, "English", subject="Danielle Darrieux")
    keys = memory.store.vectors(first.edit_id)  # (3, dim): last sentence, whole question, statement
    assert keys.shape[0] == 3
    assert memory.encoder.encode_keys([EDIT[0]])[0] == pytest.approx(keys[0])
    # the same question without the sentence before it is the same question: it supersedes
    second = memory.add(EDIT[0], "French", subject="Danielle Darrieux")
    assert [r.edit_id for r in second.superseded] == [first.edit_id]
    whole = make_memory(
        "whole", load_config(backend="lte", overrides=[*GATE, "retrieval.last_sentence=false"])
    )
    kept = whole.add(PREFIXED, "English", subject="Danielle Darrieux")
    assert whole.store.vectors(kept.edit_id).shape[0] == 2
    assert not whole.add(EDIT[0], "French", subject="Danielle Darrieux").superseded


def test_retrieve_many_is_retrieve_for_each_question(make_memory: MakeMemory) -> None:
    memory = make_memory(config=load_config(backend="lte", overrides=GATE))
    memory.add(*EDIT, subject="Danielle Darrieux")
    memory.add("Who runs Acme?", "Jane Doe")
    asked = [PREFIXED, EDIT[0], "who runs acme ?", "The weather was fine. What is the largest planet?"]
    together = memory.retrieve_many(asked)
    assert together == [memory.retrieve(q) for q in asked]
    assert [bool(r.admitted) for r in together] == [True, True, True, False]
