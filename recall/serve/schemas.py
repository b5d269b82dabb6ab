"""Request bodies the server accepts, as pydantic models: the OpenAI chat and completion requests (the
fields recall honours; others an OpenAI client may send are accepted and ignored) with recall's own
options in `recall`, and the memory endpoints' edits."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from recall.config import ConflictPolicy


class RecallOptions(BaseModel):
    """The `recall` object of a chat or completion request (the openai client's `extra_body`)."""

    model_config = ConfigDict(extra="forbid")
    namespace: str | None = None  # default: the API key's first namespace ("default" without keys)
    use_memory: bool = True  # false: the base model's answer, every edit ignored


class OpenAIRequest(BaseModel):
    """What chat and completion requests share. Decoding is always greedy: temperature, top_p, seed and
    the penalties are accepted and have no effect (an edited fact should come back the same each time)."""

    model_config = ConfigDict(extra="allow")
    model: str
    max_tokens: int | None = None
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    n: int = 1
    stop: str | list[str] | None = None
    recall: RecallOptions = Field(default_factory=RecallOptions)

    def stops(self) -> list[str]:
        values = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        return [s for s in values if s]

    def include_usage(self) -> bool:
        return bool((self.stream_options or {}).get("include_usage"))


class TextPart(BaseModel):
    type: str
    text: str | None = None


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str
    content: str | list[TextPart] | None = None

    def text(self) -> str | None:
        """The message's text; None if it holds a part that is not text (an image, audio)."""
        if self.content is None or isinstance(self.content, str):
            return self.content or ""
        if any(part.type != "text" or part.text is None for part in self.content):
            return None
        return "".join(part.text or "" for part in self.content)


class ChatRequest(OpenAIRequest):
    messages: list[Message]
    max_completion_tokens: int | None = None

    def answer_tokens(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


class CompletionRequest(OpenAIRequest):
    prompt: str | list[str]
    echo: bool = False
    suffix: str | None = None

    def answer_tokens(self) -> int | None:
        return self.max_tokens


class EditIn(BaseModel):
    """One edit: `prompt` (usually a question) is to be answered with `target`."""

    model_config = ConfigDict(extra="forbid")
    prompt: str
    target: str
    subject: str | None = None
    namespace: str | None = None  # default: the API key's first namespace


class EditsIn(BaseModel):
    """`POST /v1/memory/edits`: one edit (its fields at the top level) or `edits`, a batch added all or
    nothing; `policy` when an active edit answers the same question (default: the memory's)."""

    model_config = ConfigDict(extra="forbid")
    prompt: str | None = None
    target: str | None = None
    subject: str | None = None
    namespace: str | None = None
    edits: list[EditIn] | None = None
    policy: ConflictPolicy | None = None

    def items(self) -> list[EditIn]:
        single = (self.prompt, self.target, self.subject)
        if self.edits is not None:
            if any(v is not None for v in single) or self.namespace is not None:
                raise ValueError("give either one edit (prompt, target, ...) or `edits`, not both")
            if not self.edits:
                raise ValueError("`edits` is empty")
            return self.edits
        if self.prompt is None or self.target is None:
            raise ValueError("an edit needs `prompt` and `target` (or `edits`: a list of them)")
        return [
            EditIn(prompt=self.prompt, target=self.target, subject=self.subject, namespace=self.namespace)
        ]


class RetrieveIn(BaseModel):
    """`POST /v1/memory/retrieve`: the gate's verdicts for a question, without generating."""

    model_config = ConfigDict(extra="forbid")
    query: str
    namespace: str | None = None


Status = Literal["active", "superseded", "retracted", "all"]
