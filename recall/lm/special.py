"""The model's special tokens ("<|im_start|>", "<|endoftext|>"): text a tokenizer reads as structure,
not as words. recall renders an edit's text and a question inside the chat template, where such a
string would become a real turn ("<|im_start|>system ..."), so text that holds one is refused."""

from __future__ import annotations

from functools import cache

from recall.lm.loading import LanguageModel


def special_strings(lm: LanguageModel) -> tuple[str, ...]:
    """Every special token of `lm`'s tokenizer (its named ones and the added tokens marked special),
    longest first so that the first match found is the whole token."""
    return _special_strings(lm.tokenizer)


@cache
def _special_strings(tokenizer: object) -> tuple[str, ...]:
    named = [str(t) for t in getattr(tokenizer, "all_special_tokens", [])]
    decoder = getattr(tokenizer, "added_tokens_decoder", {})
    added = [str(t.content) for t in decoder.values() if getattr(t, "special", False)]
    return tuple(sorted({t for t in [*named, *added] if t.strip()}, key=lambda t: (-len(t), t)))


def find_special(lm: LanguageModel, text: str) -> str | None:
    """The first of `lm`'s special tokens that `text` holds, else None."""
    return next((token for token in special_strings(lm) if token in text), None)


def special_message(name: str, token: str) -> str:
    return (
        f"{name} holds {token!r}, a special token of the model's tokenizer: inside the chat template it "
        "would read as conversation structure, not as text; remove it or write it another way"
    )
