"""The identifiers of a question (numbers, codes, names) and whether two questions name different ones.

A sentence encoder scores questions that differ only by an identifier as the same question ("room 101"
and "room 102" 0.953 with MiniLM, "SKU-1234" and "SKU-1235" 0.979), so the cosine alone would let one
fact supersede another. Two questions that name different identifiers are never the same question.
"""

from __future__ import annotations

import re
import unicodedata

# A word: letters and digits, joined by inner hyphens, dots, slashes or underscores ("SKU-1234", "3.5",
# "A/B", "v2_final"); "Acme's" gives "Acme" (the possessive is not part of the name).
WORD = re.compile(r"\w+(?:[-./_]\w+)*")


def identifiers(question: str) -> tuple[tuple[str, ...], frozenset[str]]:
    """(codes, names) of `question`, casefolded: codes hold a digit ("101", "sku-1234", "3.5"), in their
    order ("room 12 on floor 3" is not "room 3 on floor 12"); names start with a capital letter anywhere
    but at the start of the question ("Acme", "CEO"), in any order (rewording moves them)."""
    text = unicodedata.normalize("NFKC", question)
    codes: list[str] = []
    names: set[str] = set()
    for index, match in enumerate(WORD.finditer(text)):
        word = match.group()
        if any(c.isdigit() for c in word):
            codes.append(word.casefold())
        elif index > 0 and word[0].isupper():
            names.add(word.casefold())
    return tuple(codes), frozenset(names)


def name_other_things(a: str, b: str) -> bool:
    """True when questions `a` and `b` cannot be the same question: their codes differ (a number or code
    added, dropped, changed or moved), or each names something the other does not (a name changed). A
    name only one side has is allowed: rewording adds some ("the CEO of Acme" and "who runs Acme").
    Words are compared casefolded, so case alone never separates two questions."""
    codes_a, names_a = identifiers(a)
    codes_b, names_b = identifiers(b)
    if codes_a != codes_b:
        return True
    words_a, words_b = _words(a), _words(b)
    return bool(names_a - words_b) and bool(names_b - words_a)


def words(text: str) -> list[str]:
    """`text`'s words (WORD), casefolded, in order."""
    return [m.group().casefold() for m in WORD.finditer(unicodedata.normalize("NFKC", text))]


def _words(text: str) -> frozenset[str]:
    return frozenset(words(text))
