"""Whose fact an edit is: the subject guessed from a question, whether a query names a subject, the gate
holding hits about an unnamed subject to retrieval.subject_margin, and the newer of two admitted edits
of one fact overriding the older (recall/retrieval/subjects.py, gate.py, current.py)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from recall.config import load_config
from recall.memory import EditMemory
from recall.retrieval.subjects import guess_subject, names_subject

MakeMemory = Callable[..., EditMemory]
TINY = ["encoder.name=hashing", "model.name=tiny"]


@pytest.mark.parametrize(
    ("question", "subject"),
    [
        ("What university did Watts Humphrey attend?", "Watts Humphrey"),
        ("The CEO of Acme is", "Acme"),
        ("Who runs Acme?", "Acme"),
        ("Where is Acme's HQ?", "Acme"),
        ("Danielle Darrieux's mother tongue is", "Danielle Darrieux"),
        ("In which country is the Republic of Ireland located?", "Republic of Ireland"),
        ("Apple A5 was created by", "Apple A5"),
        ("Who is the CEO of IBM?", "CEO of IBM"),  # only acronyms: all of them kept
        ("what is the boiling point of water", None),
    ],
)
def test_the_subject_is_the_longest_run_of_capitalised_words(question: str, subject: str | None) -> None:
    assert guess_subject(question) == subject


def test_a_query_names_a_subject_by_its_words_or_their_inflections() -> None:
    assert names_subject("Danielle Darrieux, a native speaker of", "Danielle Darrieux")
    assert names_subject("darrieux danielle speaks", "Danielle Darrieux")  # case and order aside
    assert names_subject("What year did Peoples Drugs end?", "Peoples Drug")  # zsRE's inflections
    assert names_subject("Where is the Republic's capital, Ireland?", "the Republic of Ireland")
    assert not names_subject("The mother tongue of Thomas Joannes Stieltjes is", "Danielle Darrieux")
    assert not names_subject("the French actress speaks", "Danielle Darrieux")  # an alias does not
    assert not names_subject("Who founded Alabama Power?", "Al")  # a short word matches whole only
    assert not names_subject("Toyota Corolla is made by", "Toyota Camry")  # one word of two


def _open_gate(cosine: float) -> list[str]:
    return [*TINY, f"sentinel.min_cosine={cosine}", "retrieval.top_k=3"]


def test_the_gate_holds_an_edit_about_a_subject_the_query_does_not_name(make_memory: MakeMemory) -> None:
    overrides = [*_open_gate(0.2), "retrieval.search_k=5"]
    plain = make_memory("plain", load_config(backend="lte", overrides=overrides))
    subject = make_memory(
        "subject", load_config(backend="lte", overrides=[*overrides, "retrieval.subject_margin=0.5"])
    )
    for memory in (plain, subject):
        memory.add("The mother tongue of Danielle Darrieux is", "English", subject="Danielle Darrieux")
    other = "The mother tongue of Thomas Joannes Stieltjes is"
    assert plain.retrieve(other).admitted  # the relation alone gets it through
    held = subject.retrieve(other)
    assert not held.admitted
    assert held.hits
    assert held.verdict(held.hits[0]) == "rejected"
    assert subject.retrieve("Danielle Darrieux's mother tongue is").admitted  # named: the sentinel alone
    # an edit given no subject is held to what its question names ("Acme")
    subject.add("Who runs Acme?", "Jane Doe")
    assert subject.retrieve("who runs acme corporation ?").admitted
    assert all(h.record.target != "Jane Doe" for h in subject.retrieve("who runs globex ?").admitted)


def test_the_newer_of_two_edits_of_one_fact_answers_and_the_older_is_overridden(
    make_memory: MakeMemory,
) -> None:
    overrides = [*_open_gate(0.1), "conflict.min_cosine=0.99", "conflict.similar_cosine=0.3"]
    overrides.append("conflict.restated_cosine=0.3")
    memory = make_memory(config=load_config(backend="lte", overrides=overrides))
    older = memory.add("Who is the CEO of Acme?", "Jane Doe")
    newer = memory.add("Who is the chief executive of Acme?", "Bob Roe")
    assert not newer.superseded
    assert [h.record.edit_id for h in newer.similar] == [older.edit_id]
    for question in ("Who is Acme's chief executive?", "Who is the CEO of Acme?"):  # the latter word for word
        retrieval = memory.retrieve(question)
        assert [h.record.edit_id for h in retrieval.admitted] == [newer.edit_id], question
        assert [h.record.edit_id for h in retrieval.overridden] == [older.edit_id]
        assert retrieval.verdict(retrieval.overridden[0]) == "overridden"
    memory.forget(newer.edit_id)  # the older stands again
    assert [h.record.edit_id for h in memory.retrieve("Who is the CEO of Acme?").admitted] == [older.edit_id]


def test_an_edit_kept_beside_overrides_nothing_and_another_subject_is_another_fact(
    make_memory: MakeMemory,
) -> None:
    overrides = [*_open_gate(0.1), "conflict.min_cosine=0.99", "conflict.similar_cosine=0.3"]
    overrides.append("conflict.restated_cosine=0.3")
    memory = make_memory(config=load_config(backend="lte", overrides=overrides))
    first = memory.add("Who is the CEO of Acme?", "Jane Doe")
    beside = memory.add("Who is the chief executive of Acme?", "Bob Roe", policy="keep_both")
    assert beside.record.meta["policy"] == "keep_both"
    admitted = {h.record.edit_id for h in memory.retrieve("Who is Acme's chief executive?").admitted}
    assert admitted == {first.edit_id, beside.edit_id}
    other = make_memory("other", load_config(backend="lte", overrides=overrides))
    acme = other.add("Who is the CEO of Acme?", "Jane Doe")
    globex = other.add("Who is the CEO of Globex?", "Bob Roe")
    retrieval = other.retrieve("Who is the CEO of Acme or Globex?")
    assert {h.record.edit_id for h in retrieval.admitted} == {acme.edit_id, globex.edit_id}
    assert not retrieval.overridden


def test_calibrate_current_counts_what_the_gate_does_with_pairs_of_edits(make_memory: MakeMemory) -> None:
    from recall.cli.calibrate.current import count, other_fact_pairs, same_fact_pairs
    from recall.datasets.cases import EvalCase

    cases = [
        EvalCase(
            case_id=str(i),
            prompt=f"Who is the CEO of Acme{i}?",
            target=f"Jane{i}",
            subject=f"Acme{i}",
            rephrases=(f"Who is the chief executive of Acme{i}?", f"Who is Acme{i}'s chief executive?"),
            locality=((f"Who is the CEO of Globex{i}?", f"Bob{i}"),),
        )
        for i in range(3)
    ]
    same, other = same_fact_pairs(cases), other_fact_pairs(cases)
    assert [p[2] for p in same] == ["Jane1", "Jane2", "Jane0"]  # the next case's answer
    overrides = [*_open_gate(0.1), "conflict.min_cosine=0.99", "conflict.similar_cosine=0.3"]
    overrides.append("conflict.restated_cosine=0.3")
    on = make_memory("on", load_config(backend="lte", overrides=[*overrides, "conflict.restated_cosine=0.3"]))
    counts = count(on, same, same=True)
    assert (counts.pairs, counts.later_wins, counts.superseded) == (3, 3, 0)  # no probe: overridden at ask
    assert counts.overridden == 3
    kept = count(on, other, same=False)
    assert (kept.first_used, kept.superseded, kept.overridden) == (3, 0, 0)
    off = make_memory(
        "off", load_config(backend="lte", overrides=[*overrides, "conflict.restated_cosine=null"])
    )
    assert count(off, same, same=True).later_wins == 0  # both admitted: the earlier still answers
