"""Where an edit's subject sits in a rendered prompt: the token ROME and MEMIT read keys at and add δ at
(`fact_token = subject_last`, METHODS.md §5.1), found from character offsets rather than by tokenising
prefix, subject and suffix apart (that can split a word differently from the whole prompt)."""

from __future__ import annotations

from collections.abc import Sequence

from memory_store import EditRecord, InvalidEditError
from recall.lm.loading import LanguageModel
from recall.lm.prompts import render
from recall.lm.scoring import prompt_ids


def require_subjects(records: Sequence[EditRecord], backend: str) -> None:
    """Refuse records without a subject that occurs in their prompt, before anything is written."""
    for record in records:
        if not record.subject or not record.subject.strip():
            raise InvalidEditError(
                f"the {backend} backend edits what the model knows about a subject, and this edit has none "
                f"(prompt {record.prompt!r}); give the entity the fact is about: recall edit --subject NAME, "
                "add(..., subject=NAME), or the REPL's :edit"
            )
        if record.subject not in record.prompt:
            raise InvalidEditError(
                f"the subject {record.subject!r} does not occur in the prompt {record.prompt!r}; the "
                f"{backend} backend reads the model at the subject's last token, so it must appear verbatim"
            )


def subject_prompt(
    lm: LanguageModel, message: str, subject: str, *, use_chat_template: bool, after: int = 0
) -> tuple[list[int], int]:
    """(token ids of `message` rendered, index of the last token of the first `subject` in `message` at
    or after character `after`). Raises InvalidEditError when the subject is not there."""
    text = render(lm, message, use_chat_template=use_chat_template)
    start = text.rfind(message)  # the user turn (a system prompt could quote the subject: not there)
    found = message.find(subject, after)
    if start < 0 or found < 0:
        raise InvalidEditError(f"the subject {subject!r} does not occur in {message!r}")
    end = start + found + len(subject)  # one past the subject's last character in `text`
    ids = prompt_ids(lm, text)
    encoding = lm.tokenizer(text, add_special_tokens=not lm.has_chat_template, return_offsets_mapping=True)
    if list(encoding.input_ids) != ids:
        raise InvalidEditError(f"the tokenizer of {lm.model_id} gives no stable offsets for {message!r}")
    last = max(i for i, (a, b) in enumerate(encoding.offset_mapping) if a < end and b > a)
    return ids, last
