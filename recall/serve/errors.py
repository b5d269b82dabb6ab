"""Every failure as a JSON body `{"error": {"message", "type", "code"}}` with an HTTP status, as the
OpenAI API returns them: bad input is 4xx with the Python API's own message, never a traceback."""

from __future__ import annotations

import logging
from typing import Any

from memory_store import (
    EditNotFoundError,
    InvalidTransitionError,
    ReadOnlyStoreError,
    StorageError,
    StoreClosedError,
    StoreError,
)
from recall.errors import ConflictError, RecallError, UnsupportedOperationError
from recall.serve.tenants import AccessError

logger = logging.getLogger(__name__)

# Most specific first: the first class an error is an instance of decides. Only errors recall raises
# itself are mapped; anything else (a ValueError from deep inside torch) is a 500.
STATUS: tuple[tuple[type[BaseException], int, str], ...] = (
    (EditNotFoundError, 404, "not_found_error"),
    (ConflictError, 409, "conflict_error"),
    (InvalidTransitionError, 409, "conflict_error"),
    (UnsupportedOperationError, 422, "unsupported_operation_error"),
    (ReadOnlyStoreError, 403, "read_only_error"),
    (StoreClosedError, 503, "unavailable_error"),
    (StorageError, 507, "storage_error"),
    (ValueError, 400, "invalid_request_error"),  # InvalidEditError, InvalidQueryError, ConfigError, ...
    (StoreError, 500, "server_error"),
    (RecallError, 500, "server_error"),
)


class ApiError(Exception):
    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message

    def body(self) -> dict[str, Any]:
        return {"message": self.message, "type": self.kind, "param": None, "code": self.status}

    @classmethod
    def of(cls, exc: BaseException) -> ApiError:
        """`exc` as an ApiError; an error recall did not raise itself is logged with its traceback and
        answered with a generic 500."""
        if isinstance(exc, ApiError):
            return exc
        if isinstance(exc, AccessError):
            return cls(
                exc.status, "authentication_error" if exc.status == 401 else "permission_error", str(exc)
            )
        for error_class, status, kind in STATUS:
            if isinstance(exc, error_class) and isinstance(exc, RecallError | StoreError):
                if status >= 500:
                    logger.error("request failed: %s", exc)
                return cls(status, kind, str(exc))
        logger.exception("request failed", exc_info=exc)
        return cls(
            500, "server_error", f"internal error ({type(exc).__name__}); the server log has the details"
        )
