"""The FastAPI application: the OpenAI-compatible and memory routes, `/health`, `/metrics`, API keys,
errors as JSON, and a shutdown that finishes the edits in progress before the memory closes."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException

from memory_store import StoreError
from recall import __version__
from recall.errors import RecallError
from recall.serve import memory_routes, openai_routes
from recall.serve.errors import ApiError
from recall.serve.service import MemoryService
from recall.serve.tenants import AccessError, Tenants

OPEN_PATHS = ("/health", "/metrics")  # no key needed: they name no namespace's content


def _error(error: ApiError) -> JSONResponse:
    return JSONResponse({"error": error.body()}, status_code=error.status)


def _validation_message(exc: RequestValidationError) -> str:
    """Pydantic's errors in one line: where (body.messages.0.role) and what."""
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()))
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def create_app(service: MemoryService, tenants: Tenants) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        service.close()  # uvicorn stopped taking requests and finished those in flight

    app = FastAPI(title="recall", version=__version__, lifespan=lifespan)
    app.state.service = service
    app.include_router(openai_routes.router)
    app.include_router(memory_routes.router)

    @app.middleware("http")
    async def keys_and_timing(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        start = time.perf_counter()
        if request.url.path in OPEN_PATHS:
            response = await call_next(request)
        else:
            try:
                request.state.tenant = tenants.resolve(request.headers.get("authorization"))
            except AccessError as exc:
                response = _error(ApiError.of(exc))
            else:
                response = await call_next(request)
        route = request.scope.get("route")
        name = getattr(route, "path", "unmatched")
        service.metrics.request(name, response.status_code, time.perf_counter() - start)
        return response

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc)

    @app.exception_handler(AccessError)
    async def access_error(request: Request, exc: AccessError) -> JSONResponse:
        return _error(ApiError.of(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(ApiError(400, "invalid_request_error", _validation_message(exc)))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return _error(ApiError(exc.status_code, kind, str(exc.detail)))

    @app.exception_handler(RecallError)
    @app.exception_handler(StoreError)
    async def refused(request: Request, exc: Exception) -> JSONResponse:
        return _error(ApiError.of(exc))

    @app.exception_handler(Exception)  # anything else: a 500 whose details go to the log only
    async def failure(request: Request, exc: Exception) -> JSONResponse:
        return _error(ApiError.of(exc))

    @app.get("/health")
    async def health() -> dict[str, Any]:
        memory = service.memory
        return {
            "status": "closing" if service.closed else "ok",
            "model": service.model_name,
            "backend": memory.backend.name,
            "active_edits": memory.count(),
            "keys": len(tenants),
            "version": __version__,
        }

    @app.get("/metrics")
    async def metrics() -> PlainTextResponse:
        text = service.metrics.render(service.memory.count())
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")

    return app
