"""The memory endpoints under `/v1/memory`: add edits (one or a batch, all or nothing), list, get,
history, forget, restore, conflicts, and the gate's verdicts for a question. Every call works in one
namespace its API key holds (`namespace` in the body or the query string; default: the key's first).
An edit is used by the next request once its POST returns; a failed request changes nothing. An id in
a path may be a unique prefix of 4+ characters, as in the CLI."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from recall.results import Edit, EditResult
from recall.serve.errors import ApiError
from recall.serve.schemas import EditsIn, RetrieveIn, Status
from recall.serve.service import MemoryService, service_of
from recall.serve.tenants import tenant_of
from recall.serve.views import conflict_json, event_json, record_json, result_json, retrieval_json

router = APIRouter(prefix="/v1/memory")


def _context(request: Request, namespace: str | None) -> tuple[MemoryService, str]:
    tenant = tenant_of(request.state)
    service = service_of(request.app.state)
    return service, tenant.namespace(namespace)


def _listing(data: list[dict[str, Any]]) -> dict[str, Any]:
    return {"object": "list", "data": data}


@router.post("/edits", status_code=201)
async def add_edits(request: Request, body: EditsIn) -> dict[str, Any]:
    tenant = tenant_of(request.state)
    try:
        items = body.items()
    except ValueError as exc:
        raise ApiError(400, "invalid_request_error", str(exc)) from None
    edits = [Edit(e.prompt, e.target, e.subject, tenant.namespace(e.namespace)) for e in items]
    service = service_of(request.app.state)
    # One edit is a batch of one: add_many applies the policy to it exactly as add does.
    results = await service.write("add", lambda: service.memory.add_many(edits, policy=body.policy), len)
    return _listing([result_json(r) for r in results])


@router.get("/edits")
async def list_edits(
    request: Request, namespace: str | None = None, status: Status = "active"
) -> dict[str, Any]:
    service, name = _context(request, namespace)
    records = await service.read(lambda: service.memory.list(name, None if status == "all" else status))
    return _listing([record_json(r) for r in records])


@router.get("/edits/{edit_id}")
async def get_edit(request: Request, edit_id: str, namespace: str | None = None) -> dict[str, Any]:
    service, name = _context(request, namespace)
    return record_json(await service.read(lambda: service.memory.find(edit_id, name)))


@router.get("/edits/{edit_id}/history")
async def edit_history(request: Request, edit_id: str, namespace: str | None = None) -> dict[str, Any]:
    service, name = _context(request, namespace)
    memory = service.memory
    events = await service.read(lambda: memory.history(memory.find(edit_id, name).edit_id, name))
    return _listing([event_json(e) for e in events])


@router.delete("/edits/{edit_id}")
async def forget_edit(request: Request, edit_id: str, namespace: str | None = None) -> dict[str, Any]:
    """Forget (retract) the edit: kept in history, restorable, no longer used."""
    service, name = _context(request, namespace)
    memory = service.memory
    record = await service.write(
        "forget", lambda: memory.forget(memory.find(edit_id, name).edit_id, name), lambda _: 1
    )
    return record_json(record)


@router.post("/edits/{edit_id}/restore")
async def restore_edit(request: Request, edit_id: str, namespace: str | None = None) -> dict[str, Any]:
    service, name = _context(request, namespace)
    memory = service.memory

    def restore() -> EditResult:
        return memory.restore(memory.find(edit_id, name).edit_id, name)

    return result_json(await service.write("restore", restore, lambda _: 1))


@router.get("/conflicts")
async def conflicts(request: Request, namespace: str | None = None) -> dict[str, Any]:
    service, name = _context(request, namespace)
    pairs = await service.read(lambda: service.memory.conflicts(name))
    return _listing([conflict_json(p) for p in pairs])


@router.post("/retrieve")
async def retrieve(request: Request, body: RetrieveIn) -> dict[str, Any]:
    """The search and the gate for a question, without generating: what `recall ask --why` shows."""
    service, name = _context(request, body.namespace)
    return retrieval_json(await service.read(lambda: service.memory.retrieve(body.query, name)), name)


@router.get("/namespaces")
async def namespaces(request: Request) -> JSONResponse:
    """The namespaces holding edits that this key may use."""
    tenant = tenant_of(request.state)
    service = service_of(request.app.state)
    names = await service.read(service.memory.namespaces)
    allowed = [n for n in names if tenant.namespaces is None or n in tenant.namespaces]
    return JSONResponse(_listing([{"name": n, "active": service.memory.count(n)} for n in allowed]))
