"""`recall serve`: one memory behind an OpenAI-compatible HTTP API, with memory endpoints, API keys
mapped to namespaces, /health and /metrics (recall/serve/app.py)."""

from recall.serve.app import create_app
from recall.serve.service import MemoryService
from recall.serve.tenants import Tenants

__all__ = ["MemoryService", "Tenants", "create_app"]
