"""The stored values (EditRecord, SearchHit, HistoryEvent) and the validation every record passes first."""

from __future__ import annotations

import math
import re
import time
import unicodedata
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Literal, cast, get_args

from memory_store.errors import InvalidArgumentError, InvalidEditError, InvalidTransitionError

__all__ = [
    "MAX_NAMESPACE_CHARS",
    "MAX_TEXT_CHARS",
    "MIN_ID_PREFIX",
    "STATUSES",
    "EditRecord",
    "EventKind",
    "HistoryEvent",
    "SearchHit",
    "Status",
    "check_filter",
    "check_text",
    "is_edit_id",
    "namespace_filter",
    "new_edit_id",
    "positive_int",
    "remove_unstorable",
    "transition",
    "validate_namespace",
    "validate_new",
    "validate_record",
]

Status = Literal["active", "superseded", "retracted"]
EventKind = Literal["add", "supersede", "retract", "restore"]
STATUSES: tuple[Status, ...] = get_args(Status)
MAX_TEXT_CHARS = 10_000
MAX_NAMESPACE_CHARS = 200
_MAX_EDIT_ID_CHARS = 64

# C0 controls except \t and \n, DEL, C1 controls, lone surrogates (which SQLite cannot store as UTF-8),
# and the invisible format characters that make stored text read otherwise than it is shown: bidi
# marks, embeddings, overrides and isolates (U+061C, U+200E-F, U+202A-E, U+2066-9), zero-width space,
# word joiner and invisible operators (U+200B, U+2060-4), BOM (U+FEFF), soft hyphen (U+00AD), the
# interlinear annotation marks (U+FFF9-B) and the tag characters (U+E0000-7F, "ASCII smuggling"). The
# zero-width (non-)joiners U+200C-D stay allowed: Persian, Indic scripts and emoji sequences need them.
_FORBIDDEN = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\xad\u061c\u200b\u200e\u200f\u202a-\u202e\u2060-\u2064"
    "\u2066-\u2069\ufeff\ufff9-\ufffb\ud800-\udfff\U000e0000-\U000e007f]"
)
_EDIT_ID = re.compile(r"[A-Za-z0-9_.:-]+")


# The shortest id prefix recall accepts as a handle (`recall forget 3f2a`, `:forget 3f2a`): shorter ones
# match too many edits to be safe.
MIN_ID_PREFIX = 4


def new_edit_id() -> str:
    """A fresh edit id: uuid4 as 32 lowercase hex digits, never derived from the content."""
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
class EditRecord:
    """One stored edit: `prompt` (usually a question) answered by `target`, plus its bookkeeping."""

    prompt: str
    target: str
    subject: str | None = None
    statement: str = ""  # full fact sentence (recall fills it: "Q? A")
    namespace: str = "default"
    edit_id: str = field(default_factory=new_edit_id)
    created_at: float = field(default_factory=time.time)
    status: Status = "active"
    supersedes: str | None = None  # edit_id this one replaced
    meta: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict with every field (meta copied into a plain dict)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["meta"] = dict(self.meta)
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> EditRecord:
        """The inverse of `to_dict`; missing optional keys take their defaults, unknown keys are an error."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise InvalidEditError(
                f"EditRecord.from_dict expected keys among {sorted(names)}, received unknown keys "
                f"{unknown!r}; drop them or store them under 'meta'"
            )
        missing = [name for name in ("prompt", "target") if name not in d]
        if missing:
            raise InvalidEditError(
                f"EditRecord.from_dict expected keys 'prompt' and 'target', received a dict without "
                f"{missing!r}"
            )
        kwargs = dict(d)
        if "meta" in kwargs and isinstance(kwargs["meta"], Mapping):
            kwargs["meta"] = dict(kwargs["meta"])
        return cls(**kwargs)


@dataclass(frozen=True, slots=True)
class SearchHit:
    """One search result: `score` is the raw inner product (higher is closer); `rank` is 0-based."""

    record: EditRecord
    score: float
    rank: int


@dataclass(frozen=True, slots=True)
class HistoryEvent:
    """One status change of an edit; `other_id` names the edit on the other side of a supersede."""

    edit_id: str
    kind: EventKind
    at: float
    reason: str = ""
    other_id: str | None = None


# What each status-changing call allows: the status it sets, and the statuses it may start from.
_TRANSITIONS: dict[str, tuple[Status, tuple[Status, ...]]] = {
    "retract": ("retracted", ("active", "superseded")),
    "restore": ("active", ("retracted", "superseded")),
    "supersede": ("superseded", ("active",)),
}


def transition(record: EditRecord, operation: str) -> Status:
    """The status `operation` gives `record`; InvalidTransitionError when its current status forbids it."""
    target, allowed = _TRANSITIONS[operation]
    if record.status not in allowed:
        raise InvalidTransitionError(
            f"{operation}({record.edit_id!r}) expected an edit whose status is one of {allowed}, received "
            f"status {record.status!r}; see history({record.edit_id!r}) for what happened to it"
        )
    return target


def _shown(value: object) -> str:
    """repr of a received value, shortened so a 10,000-character text does not flood the message."""
    text = repr(value)
    return (
        text
        if len(text) <= 80
        else f"{text[:60]}...{text[-12:]} ({len(value) if isinstance(value, str) else '?'} chars)"
    )


def check_text(name: str, value: object, *, max_chars: int, required: bool) -> None:
    """Raise InvalidEditError unless `value` is a str within `max_chars`, free of control and invisible
    format characters, and (when `required`) not empty or whitespace."""
    if not isinstance(value, str):
        raise InvalidEditError(f"{name} expected a str, received {type(value).__name__} {_shown(value)}")
    if required and not value.strip():
        raise InvalidEditError(
            f"{name} expected non-empty text, received {_shown(value)}; pass the text this edit is about"
        )
    if len(value) > max_chars:
        raise InvalidEditError(
            f"{name} expected at most {max_chars} characters, received {len(value)} ({_shown(value)}); "
            "shorten it or open the store with a larger max_text_chars"
        )
    bad = _FORBIDDEN.search(value)
    if bad is not None:
        raise InvalidEditError(
            f"{name} expected text without control or invisible format characters (only \\n and \\t are "
            f"allowed), received {bad.group()!r} at index {bad.start()} in {_shown(value)}; remove it"
        )


def validate_namespace(namespace: object) -> str:
    """Return `namespace` if it is a non-empty str of <= 200 chars without control characters, in its
    one written form: lowercase (NFKC casefolded), no tab or newline, no space at either end nor two
    in a row. "DEFAULT", "default " and a full-width "ｄｅｆａｕｌｔ" would print like "default" and
    be another namespace: they are refused, with the name to use."""
    check_text("namespace", namespace, max_chars=MAX_NAMESPACE_CHARS, required=True)
    name = cast(str, namespace)
    if "\n" in name or "\t" in name:
        raise InvalidEditError(f"namespace expected a name without tabs or newlines, received {name!r}")
    canonical = " ".join(unicodedata.normalize("NFKC", name).casefold().split())
    if name != canonical:
        raise InvalidEditError(
            f"namespace expected one written form (lowercase, no space at the ends or twice), received "
            f"{name!r}; use {canonical!r}"
        )
    return name


def namespace_filter(namespace: str | Sequence[str] | None) -> list[str] | None:
    """search()'s namespace argument as a list of valid names (None stays None: every namespace)."""
    if namespace is None:
        return None
    names = [namespace] if isinstance(namespace, str) else list(namespace)
    if not names:
        raise InvalidArgumentError(
            "namespace expected a name, a non-empty sequence of names or None, received []"
        )
    return [validate_namespace(name) for name in names]


def remove_unstorable(text: str) -> str:
    """`text` without the characters `check_text` refuses (controls but \\t and \\n, invisible format
    characters, lone surrogates): for text from elsewhere, such as a benchmark's records."""
    return _FORBIDDEN.sub("", text)


def is_edit_id(value: object) -> bool:
    """True for a str an edit can have as its id (what lookups accept before they reach SQLite)."""
    return isinstance(value, str) and 0 < len(value) <= _MAX_EDIT_ID_CHARS and bool(_EDIT_ID.fullmatch(value))


def _validate_edit_id(name: str, value: object) -> None:
    if not is_edit_id(value):
        raise InvalidEditError(
            f"{name} expected 1-{_MAX_EDIT_ID_CHARS} characters of [A-Za-z0-9_.:-] (new_edit_id() gives "
            f"uuid4 hex), received {_shown(value)}"
        )


def validate_record(record: EditRecord, *, max_text_chars: int = MAX_TEXT_CHARS) -> None:
    """Raise InvalidEditError naming the first field of `record` that cannot be stored as it is.

    Public because recall validates before it spends time encoding the descriptor.
    """
    if not isinstance(record, EditRecord):
        raise InvalidEditError(f"expected an EditRecord, received {type(record).__name__} {_shown(record)}")
    check_text("prompt", record.prompt, max_chars=max_text_chars, required=True)
    check_text("target", record.target, max_chars=max_text_chars, required=True)
    check_text("statement", record.statement, max_chars=max_text_chars, required=False)
    if record.subject is not None:
        check_text("subject", record.subject, max_chars=max_text_chars, required=False)
    validate_namespace(record.namespace)
    _validate_edit_id("edit_id", record.edit_id)
    if record.supersedes is not None:
        _validate_edit_id("supersedes", record.supersedes)
    created = record.created_at
    if isinstance(created, bool) or not isinstance(created, (int, float)) or not math.isfinite(created):
        raise InvalidEditError(
            f"created_at expected a finite float (time.time()), received {_shown(created)}"
        )
    if record.status not in STATUSES:
        raise InvalidEditError(f"status expected one of {STATUSES}, received {_shown(record.status)}")
    if not isinstance(record.meta, Mapping):
        raise InvalidEditError(
            f"meta expected a mapping of str to str, received {type(record.meta).__name__} "
            f"{_shown(record.meta)}"
        )
    for key, value in record.meta.items():
        if not isinstance(key, str) or not key.strip():
            raise InvalidEditError(f"meta keys expected non-empty str, received {_shown(key)}")
        check_text(f"meta[{key!r}]", key, max_chars=MAX_NAMESPACE_CHARS, required=True)
        check_text(f"meta[{key!r}]", value, max_chars=max_text_chars, required=False)


def validate_new(record: EditRecord, max_text_chars: int) -> None:
    """`validate_record`, and a new edit must be active (add it, then retract it)."""
    validate_record(record, max_text_chars=max_text_chars)
    if record.status != "active":
        raise InvalidEditError(
            f"a new edit expected status 'active', received {record.status!r}; add it, then retract() it"
        )


def check_filter(namespace: str | None, status: Status | None) -> None:
    """The namespace and status filters of list() and count() (None = any)."""
    if namespace is not None:
        validate_namespace(namespace)
    if status is not None and status not in STATUSES:
        raise InvalidArgumentError(f"status expected one of {STATUSES} or None, received {status!r}")


def positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidArgumentError(f"{name} expected a positive int, received {value!r}")
    return value
