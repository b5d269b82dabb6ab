"""Whose fact an edit is: its subject (given with the edit, else guessed from its question) and whether a
query names it.

A sentence encoder scores "The mother tongue of Thomas Joannes Stieltjes is" close to an edit of
"Danielle Darrieux's mother tongue": the relation dominates the vector and the names barely move it. Names
are what a lexical test sees best, so the gate asks of each hit whether the query names its subject
(recall/retrieval/gate.py), and the conflict check looks for restated edits among those about one subject
(recall/retrieval/conflicts.py).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

from memory_store import EditRecord
from recall.retrieval.identifiers import WORD, words

# Words a subject may hold that say nothing of which entity it is ("the Republic of Ireland").
FILLER = frozenset(
    [
        "a",
        "an",
        "and",
        "at",
        "by",
        "de",
        "del",
        "der",
        "des",
        "di",
        "du",
        "el",
        "for",
        "in",
        "la",
        "le",
        "les",
        "of",
        "on",
        "the",
        "to",
        "van",
        "von",
        "y",
    ]
)
# A subject word this long also matches a query word it begins: inflections and typos of a name
# ("Peoples Drug" in "Peoples Drugs", "Irbit" in "Irbits", "toad" in "toads"; zsRE writes rephrases so).
MIN_PREFIX = 4
# Upper-case words this short inside a question are usually the relation, not the entity ("CEO", "HQ").
MAX_ACRONYM = 4


def subject_words(subject: str) -> tuple[str, ...]:
    """The words of `subject` that tell which entity it is: fillers dropped (all of them kept when the
    subject is only fillers)."""
    every = words(subject)
    named = tuple(w for w in every if w not in FILLER)
    return named or tuple(every)


def edit_subject(record: EditRecord) -> str | None:
    """The subject an edit was given, else the one guessed from its question (None: none found)."""
    if record.subject and record.subject.strip():
        return record.subject
    return guess_subject(record.prompt)


def subject_key(record: EditRecord) -> tuple[str, ...]:
    """The words of the edit's subject (given or guessed), to tell two edits about one subject; () when
    none is known."""
    subject = edit_subject(record)
    return subject_words(subject) if subject else ()


def guess_subject(question: str) -> str | None:
    """The longest run of capitalised words in `question` (the last of equally long runs), fillers
    allowed between two of them: "What university did Watts Humphrey attend?" -> "Watts Humphrey",
    "The CEO of Acme is" -> "Acme". The first word counts only when the next is capitalised too (else
    it is capitalised for being first), and short all-capital words ("CEO") only when nothing else is
    capitalised. None for a question with no capitalised word ("what is the boiling point of water")."""
    text = unicodedata.normalize("NFKC", question)
    found = list(WORD.finditer(text))
    runs: list[list[re.Match[str]]] = []
    run: list[re.Match[str]] = []
    for index, match in enumerate(found):
        word = match.group()
        capital = word[0].isupper() and (
            index > 0 or (index + 1 < len(found) and found[index + 1].group()[0].isupper())
        )
        if capital:
            run.append(match)
        elif run and word.casefold() in FILLER:
            run.append(match)  # kept only if a capitalised word follows
        elif run:
            runs.append(run)
            run = []
    if run:
        runs.append(run)
    candidates = [_trim(r) for r in runs]
    named = [r for r in candidates if r and not all(_acronym(m.group()) for m in r)]
    pool = named or [r for r in candidates if r]
    if not pool:
        return None
    best = max(pool[::-1], key=lambda r: sum(m.group().casefold() not in FILLER for m in r))
    return text[best[0].start() : best[-1].end()]


def _trim(run: Sequence[re.Match[str]]) -> list[re.Match[str]]:
    """`run` without filler words at either end, nor short all-capital words there when it has other
    capitalised words ("CEO of Acme" -> "Acme")."""
    kept = list(run)

    def edge(match: re.Match[str]) -> bool:
        word = match.group()
        named = any(not _acronym(m.group()) and m.group().casefold() not in FILLER for m in kept)
        return word.casefold() in FILLER or (named and _acronym(word))

    while kept and edge(kept[0]):
        kept.pop(0)
    while kept and edge(kept[-1]):
        kept.pop()
    return kept


def _acronym(word: str) -> bool:
    return word.isalpha() and word.isupper() and len(word) <= MAX_ACRONYM


def _matches(subject_word: str, query_word: str) -> bool:
    return query_word == subject_word or (
        len(subject_word) >= MIN_PREFIX and query_word.startswith(subject_word)
    )


def names_subject(query: str, subject: str) -> bool:
    """Whether `query` names `subject`: each of the subject's words (fillers aside) is a word of the
    query, or begins one (words of MIN_PREFIX letters or more). Case, accents' composition and word order
    aside. An alias ("the French actress" for Danielle Darrieux) does not name it."""
    asked = words(query)
    return all(any(_matches(w, q) for q in asked) for w in subject_words(subject))


def names_edit_subject(query: str, record: EditRecord) -> bool:
    """Whether `query` names the subject of `record` (given or guessed); True when none is known."""
    subject = edit_subject(record)
    return subject is None or names_subject(query, subject)
