"""The OpenAI-compatible endpoints: `GET /v1/models`, `POST /v1/chat/completions` and
`POST /v1/completions`, whole or streamed as server-sent events, each answer with a `recall` object
(which edits shaped it). The question is the last user message (or the prompt); recall answers
questions, so earlier turns of a chat do not reach the model (the `recall` object counts them)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from recall.serve.errors import ApiError
from recall.serve.schemas import ChatRequest, CompletionRequest, OpenAIRequest
from recall.serve.service import MemoryService, Reply, service_of
from recall.serve.tenants import tenant_of
from recall.serve.views import recall_json

router = APIRouter()


class StopCut:
    """Cuts an answer before the first of `stops`, as its pieces arrive: a tail that may begin a stop
    sequence is held back until the next piece tells."""

    def __init__(self, stops: list[str]) -> None:
        self.stops, self.text, self.sent, self.stopped = stops, "", 0, False

    def feed(self, piece: str) -> str:
        if self.stopped:
            return ""
        self.text += piece
        found = [i for i in (self.text.find(s) for s in self.stops) if i >= 0]
        if found:
            self.stopped = True
            end = min(found)
        else:
            hold = max(
                (k for s in self.stops for k in range(1, len(s)) if self.text.endswith(s[:k])), default=0
            )
            end = len(self.text) - hold
        out, self.sent = self.text[self.sent : end], max(self.sent, end)
        return out

    def finish(self) -> str:
        out = "" if self.stopped else self.text[self.sent :]
        self.sent = len(self.text)
        return out


def _question(body: ChatRequest | CompletionRequest) -> tuple[str, int]:
    """The question and how many earlier messages were left out."""
    if isinstance(body, CompletionRequest):
        prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
        if len(prompts) != 1:
            raise ApiError(
                400, "invalid_request_error", "prompt expected one text (a batch is not supported)"
            )
        if body.echo or body.suffix:
            raise ApiError(400, "invalid_request_error", "echo and suffix are not supported")
        return prompts[0], 0
    if not body.messages or body.messages[-1].role != "user":
        raise ApiError(400, "invalid_request_error", "messages expected to end with a user message")
    text = body.messages[-1].text()
    if text is None:
        raise ApiError(400, "invalid_request_error", "the user message expected text parts only")
    return text, len(body.messages) - 1


def _check(service: MemoryService, body: OpenAIRequest) -> None:
    if body.model not in (service.model_name, "recall"):
        raise ApiError(
            404, "not_found_error", f"model {body.model!r} is not served here; use {service.model_name!r}"
        )
    if body.n != 1:
        raise ApiError(400, "invalid_request_error", "n expected 1: greedy decoding gives one answer")


def _usage(reply: Reply) -> dict[str, int]:
    total = reply.prompt_tokens + reply.completion_tokens
    return {
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": reply.completion_tokens,
        "total_tokens": total,
    }


def _sse(data: dict[str, Any] | str) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n"


async def _respond(request: Request, body: ChatRequest | CompletionRequest) -> Any:
    service, tenant = service_of(request.app.state), tenant_of(request.state)
    _check(service, body)
    question, ignored = _question(body)
    namespace, use = tenant.namespace(body.recall.namespace), body.recall.use_memory
    max_tokens = body.answer_tokens()
    service.memory.check.ask(question, namespace, max_tokens)  # a bad request fails before any stream
    service.check_room()
    chat = isinstance(body, ChatRequest)
    head = {
        "id": f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}",
        "created": int(time.time()),
        "model": service.model_name,
    }
    cut = StopCut(body.stops())
    if not body.stream:
        reply = await service.answer(question, namespace, max_tokens, use)
        text = cut.feed(reply.answer.text) + cut.finish()
        finish = "stop" if cut.stopped else reply.finish_reason
        choice: dict[str, Any] = {"index": 0, "finish_reason": finish, "logprobs": None}
        choice |= {"message": {"role": "assistant", "content": text}} if chat else {"text": text}
        return head | {
            "object": "chat.completion" if chat else "text_completion",
            "choices": [choice],
            "usage": _usage(reply),
            "recall": recall_json(reply.answer, namespace, ignored),
        }

    kind = "chat.completion.chunk" if chat else "text_completion"

    def chunk(text: str | None, finish: str | None = None, first: bool = False) -> dict[str, Any]:
        if chat:
            delta = ({"role": "assistant"} if first else {}) | ({"content": text} if text is not None else {})
            piece: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        else:
            piece = {"index": 0, "text": text or "", "finish_reason": finish, "logprobs": None}
        return head | {"object": kind, "choices": [piece]}

    async def events() -> AsyncIterator[str]:
        if chat:
            yield _sse(chunk("", first=True))
        try:
            async for item in service.stream(question, namespace, max_tokens, use):
                if isinstance(item, str):
                    text = cut.feed(item)
                    if text:
                        yield _sse(chunk(text))
                    continue
                tail = cut.finish()
                if tail:
                    yield _sse(chunk(tail))
                last = chunk(None, "stop" if cut.stopped else item.finish_reason)
                yield _sse(last | {"recall": recall_json(item.answer, namespace, ignored)})
                if body.include_usage():
                    yield _sse(head | {"object": kind, "choices": [], "usage": _usage(item)})
        except Exception as exc:  # headers are sent: the error goes in the stream, as OpenAI does
            yield _sse({"error": ApiError.of(exc).body()})
        yield _sse("[DONE]")

    return StreamingResponse(events(), media_type="text/event-stream")


@router.get("/v1/models")
async def models(request: Request) -> dict[str, Any]:
    service = service_of(request.app.state)
    card = {"id": service.model_name, "object": "model", "created": 0, "owned_by": "recall"}
    return {"object": "list", "data": [card | {"backend": service.memory.backend.name}]}


@router.post("/v1/chat/completions")
async def chat_completions(request: Request, body: ChatRequest) -> Any:
    return await _respond(request, body)


@router.post("/v1/completions")
async def completions(request: Request, body: CompletionRequest) -> Any:
    return await _respond(request, body)
