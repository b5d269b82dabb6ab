"""The ask flow's input checks: a question gets the same validation as an edit's text (a str, not
empty, no control or format characters, at most store.max_text_chars), and a question plus its answer
must fit in the model's context, so no call can run for minutes or exhaust memory on a huge question.
And the answer's length: the caller's, else long enough for the longest admitted edit's target."""

from __future__ import annotations

from collections.abc import Sequence

from memory_store import InvalidEditError, SearchHit, check_text, validate_namespace
from recall.errors import InvalidQueryError
from recall.lm.loading import LanguageModel
from recall.lm.special import find_special, special_message

# The context length when the model's config does not say it.
FALLBACK_CONTEXT = 2048
# Tokens an answer may take beyond its edit's target: an end of turn, a closing word or two.
END_ROOM = 8


def context_length(lm: LanguageModel) -> int:
    """How many positions the model reads: its config's max_position_embeddings (8192 for SmolLM2)."""
    value = getattr(lm.model.config, "max_position_embeddings", None)
    return int(value) if isinstance(value, int) and value > 0 else FALLBACK_CONTEXT


def check_answer_length(max_new_tokens: object) -> int | None:
    """`max_new_tokens` as given: None (the config's default) or an int >= 1."""
    if max_new_tokens is None:
        return None
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise InvalidQueryError(
            "max_new_tokens expected an int >= 1 (or None for model.max_new_tokens), "
            f"received {max_new_tokens!r}"
        )
    return max_new_tokens


def check_query(
    lm: LanguageModel,
    query: object,
    namespace: object,
    *,
    max_chars: int,
    new_tokens: int,
    name: str = "query",
) -> str:
    """`query`, checked: InvalidQueryError names what is wrong (type, characters, length) and the fix.
    `new_tokens` is the answer's length: the question's tokens plus it must fit the model's context."""
    try:
        check_text(name, query, max_chars=max_chars, required=True)
        validate_namespace(namespace)
    except InvalidEditError as error:
        raise InvalidQueryError(str(error).replace("this edit is about", "to ask")) from None
    text = str(query)
    token = find_special(lm, text)
    if token is not None:
        raise InvalidQueryError(special_message(name, token))
    tokens = len(lm.tokenizer(text, add_special_tokens=False).input_ids)
    room = context_length(lm)
    if tokens + new_tokens > room:
        raise InvalidQueryError(
            f"{name} is {tokens} tokens and the answer may take {new_tokens}: more than the {room} positions "
            f"model {lm.model_id!r} reads; shorten the {name} or ask for fewer max_new_tokens"
        )
    return text


class QueryCheck:
    """The checks of one memory's ask flow (its model, text limit and default answer length)."""

    def __init__(self, lm: LanguageModel, max_chars: int, default_length: int) -> None:
        self.lm, self.max_chars, self.default_length = lm, max_chars, default_length

    def query(self, query: object, namespace: object, new_tokens: int = 0, name: str = "query") -> str:
        return check_query(
            self.lm, query, namespace, max_chars=self.max_chars, new_tokens=new_tokens, name=name
        )

    def ask(self, query: object, namespace: object, max_new_tokens: object) -> tuple[str, int | None]:
        """(query, the caller's answer length or None) for `ask`; the query must fit the context with
        the caller's length, or the default one."""
        explicit = check_answer_length(max_new_tokens)
        return self.query(query, namespace, explicit or self.default_length), explicit

    def answer_length(self, query: str, explicit: int | None, admitted: Sequence[SearchHit]) -> int:
        """The caller's length; else the default, raised to let the longest admitted edit's target come
        back whole (its tokens + END_ROOM), within what the context leaves after the question."""
        if explicit is not None:
            return explicit
        if not admitted:
            return self.default_length  # the usual ask: nothing to tokenize
        longest = max((len(self._tokens(h.record.target)) + END_ROOM for h in admitted), default=0)
        room = context_length(self.lm) - len(self._tokens(query))
        return max(self.default_length, min(longest, room))

    def _tokens(self, text: str) -> list[int]:
        return list(self.lm.tokenizer(text, add_special_tokens=False).input_ids)

    def pairs(self, pairs: Sequence[tuple[object, object]], namespace: object) -> list[tuple[str, str]]:
        """(query, target) pairs for `score_many`: both texts, and each pair fits the context."""
        checked = []
        for query, target in pairs:
            target = self.query(target, namespace, name="target")
            answer = len(self._tokens(target))
            checked.append((self.query(query, namespace, answer), target))
        return checked


def check_flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise InvalidQueryError(f"{name} expected True or False, received {value!r}")
    return value
