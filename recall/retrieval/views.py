"""Query views: the texts a question is read as by the gate. A question that ends a longer text
("Regarding vitamin supplements, research shows mixed results. Edwin of Northumbria is affiliated with the
religion") is also read as its last sentence alone: the sentences before it pull a sentence encoder's
vector away from the edit it asks about (CounterFact val, 1000 recipe edits: a rephrase's own edit is
admitted for 90 of 174 such rephrases read whole, 161 read as their last sentence). The gate keeps the view
whose best admitted edit beats its cut-off by most (recall/retrieval/gate.py), so a last sentence that
says less than the whole ("Who is its CEO?") loses to it."""

from __future__ import annotations

import re
from collections.abc import Sequence

# A sentence ends at . or ! (or a line break) followed by space, and the next one starts with a capital
# letter, a digit or a quote; a wrong break costs nothing but a view that loses to the whole question.
# Not at ?: what follows a question is its answer's start ("Which position does X play? They play as"),
# which says nothing without it.
_BREAK = re.compile(r"(?:(?<=[.!])\s+|\s*\n\s*)(?=[\"'“‘(\[]?[^\W_a-z])")
# ...but not after an initial or a title: "Carlos W. Colby", "Mr. Smith Carries On" (zsRE)
_NOT_AN_END = re.compile(
    r"(?:\b[^\W\d_]|\b(?:Mr|Mrs|Ms|Dr|Prof|St|Jr|Sr|Gen|Col|Capt|Lt|Sgt|Rev|Hon|No|vs|etc|Inc|Co|Ltd|Corp))\.$"
)
_LOOK_BACK = 12  # characters before a break that _NOT_AN_END reads (its longest word is 5)
MIN_WORDS = 2  # a last "sentence" of one word ("Thanks.") is no question


def last_sentence(query: str) -> str | None:
    """The last sentence of `query` when it has several, else None."""
    text = query.strip()
    ends = [
        m
        for m in _BREAK.finditer(text)
        if not _NOT_AN_END.search(text[max(0, m.start() - _LOOK_BACK) : m.start()])
    ]
    if not ends:
        return None
    tail = text[ends[-1].end() :].strip()
    return tail if len(tail.split()) >= MIN_WORDS else None


def query_views(query: str, last: bool) -> list[str]:
    """The texts the gate reads `query` as: the query itself first, then (with `last`) its last sentence
    when it has several."""
    tail = last_sentence(query) if last else None
    return [query] if tail is None else [query, tail]


def all_views(queries: Sequence[str], last: bool) -> tuple[list[str], list[range]]:
    """Every view of every query in one list (encoded and searched as one batch), and the rows of each
    query's views in it."""
    texts: list[str] = []
    rows: list[range] = []
    for query in queries:
        views = query_views(query, last)
        rows.append(range(len(texts), len(texts) + len(views)))
        texts += views
    return texts, rows
